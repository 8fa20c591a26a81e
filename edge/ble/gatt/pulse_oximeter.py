"""Pure decoders of the Bluetooth PLX Spot-Check Measurement (GATT 0x2A5E) and PLX Continuous
Measurement (0x2A5F) characteristics of the Pulse Oximeter Service.

0x2A5E layout (PLXS 1.0, little-endian)::

    flags                     u8   bit0 timestamp, bit1 measurement status, bit2 device and
                                   sensor status, bit3 pulse amplitude index present,
                                   bit4 device clock is not set
    SpO2, PR                  SFLOAT, SFLOAT   (% and beats/min)
    timestamp                 GATT Date Time, 7 bytes                      (if bit0)
    measurement status        u16                                          (if bit1)
    device and sensor status  u24                                          (if bit2)
    pulse amplitude index     SFLOAT, %                                    (if bit3)

0x2A5F layout::

    flags                     u8   bit0 SpO2PR-Fast, bit1 SpO2PR-Slow, bit2 measurement
                                   status, bit3 device and sensor status, bit4 PAI present
    SpO2PR-Normal             SFLOAT, SFLOAT
    SpO2PR-Fast               SFLOAT, SFLOAT                               (if bit0)
    SpO2PR-Slow               SFLOAT, SFLOAT                               (if bit1)
    measurement status        u16                                          (if bit2)
    device and sensor status  u24                                          (if bit3)
    pulse amplitude index     SFLOAT                                       (if bit4)

Reserved status bits are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import IntFlag

from edge.ble.gatt.fields import Reader, Sfloat

SPOT_CHECK_NAME = "0x2A5E PLX Spot-Check Measurement"
CONTINUOUS_NAME = "0x2A5F PLX Continuous Measurement"


class SpotCheckFlags(IntFlag):
    TIMESTAMP_PRESENT = 0x01
    MEASUREMENT_STATUS_PRESENT = 0x02
    DEVICE_AND_SENSOR_STATUS_PRESENT = 0x04
    PULSE_AMPLITUDE_INDEX_PRESENT = 0x08
    DEVICE_CLOCK_NOT_SET = 0x10


class ContinuousFlags(IntFlag):
    SPO2PR_FAST_PRESENT = 0x01
    SPO2PR_SLOW_PRESENT = 0x02
    MEASUREMENT_STATUS_PRESENT = 0x04
    DEVICE_AND_SENSOR_STATUS_PRESENT = 0x08
    PULSE_AMPLITUDE_INDEX_PRESENT = 0x10


class MeasurementStatus(IntFlag):
    """Measurement status (bits 0-4 reserved)."""

    MEASUREMENT_ONGOING = 1 << 5
    EARLY_ESTIMATED_DATA = 1 << 6
    VALIDATED_DATA = 1 << 7
    FULLY_QUALIFIED_DATA = 1 << 8
    DATA_FROM_MEASUREMENT_STORAGE = 1 << 9
    DATA_FOR_DEMONSTRATION = 1 << 10
    DATA_FOR_TESTING = 1 << 11
    CALIBRATION_ONGOING = 1 << 12
    MEASUREMENT_UNAVAILABLE = 1 << 13
    QUESTIONABLE_MEASUREMENT_DETECTED = 1 << 14
    INVALID_MEASUREMENT_DETECTED = 1 << 15


class DeviceAndSensorStatus(IntFlag):
    """Device and sensor status (24 bits; bits 16-23 reserved)."""

    EXTENDED_DISPLAY_UPDATE_ONGOING = 1 << 0
    EQUIPMENT_MALFUNCTION_DETECTED = 1 << 1
    SIGNAL_PROCESSING_IRREGULARITY_DETECTED = 1 << 2
    INADEQUATE_SIGNAL_DETECTED = 1 << 3
    POOR_SIGNAL_DETECTED = 1 << 4
    LOW_PERFUSION_DETECTED = 1 << 5
    ERRATIC_SIGNAL_DETECTED = 1 << 6
    NONPULSATILE_SIGNAL_DETECTED = 1 << 7
    QUESTIONABLE_PULSE_DETECTED = 1 << 8
    SIGNAL_ANALYSIS_ONGOING = 1 << 9
    SENSOR_INTERFERENCE_DETECTED = 1 << 10
    SENSOR_UNCONNECTED_TO_USER = 1 << 11
    UNKNOWN_SENSOR_CONNECTED = 1 << 12
    SENSOR_DISPLACED = 1 << 13
    SENSOR_MALFUNCTIONING = 1 << 14
    SENSOR_DISCONNECTED = 1 << 15


_MEASUREMENT_STATUS_BITS = 0xFFE0
_DEVICE_STATUS_BITS = 0xFFFF


@dataclass(frozen=True, slots=True)
class SpO2PR:
    """One SpO2 / pulse-rate pair."""

    spo2: Sfloat
    """Oxygen saturation, %."""
    pr: Sfloat
    """Pulse rate, beats per minute."""


@dataclass(frozen=True, slots=True)
class PlxSpotCheckMeasurement:
    spo2pr: SpO2PR
    timestamp: datetime | None = None
    """Device wall-clock time as sent; ``None`` if absent or not known (year/month/day 0).
    When :attr:`device_clock_not_set` is true the value is the device's made-up time and must
    not date the reading (normalisation uses the gateway's time then)."""
    measurement_status: MeasurementStatus | None = None
    device_and_sensor_status: DeviceAndSensorStatus | None = None
    pulse_amplitude_index: Sfloat | None = None
    device_clock_not_set: bool = False


@dataclass(frozen=True, slots=True)
class PlxContinuousMeasurement:
    spo2pr_normal: SpO2PR
    spo2pr_fast: SpO2PR | None = None
    spo2pr_slow: SpO2PR | None = None
    measurement_status: MeasurementStatus | None = None
    device_and_sensor_status: DeviceAndSensorStatus | None = None
    pulse_amplitude_index: Sfloat | None = None


def _spo2pr(reader: Reader, name: str) -> SpO2PR:
    return SpO2PR(reader.sfloat(f"{name}.spo2"), reader.sfloat(f"{name}.pr"))


def _statuses(
    reader: Reader, measurement: bool, device: bool
) -> tuple[MeasurementStatus | None, DeviceAndSensorStatus | None]:
    ms = (
        MeasurementStatus(reader.u16("measurement_status") & _MEASUREMENT_STATUS_BITS)
        if measurement
        else None
    )
    ds = (
        DeviceAndSensorStatus(reader.u24("device_and_sensor_status") & _DEVICE_STATUS_BITS)
        if device
        else None
    )
    return ms, ds


def _pai(reader: Reader, present: bool) -> Sfloat | None:
    return reader.sfloat("pulse_amplitude_index") if present else None


def decode_plx_spot_check_measurement(data: bytes) -> PlxSpotCheckMeasurement:
    """Decode one 0x2A5E value; raises :class:`~tryggheim.errors.DecodeError` naming the field
    that is cut short (e.g. ``spo2pr.pr``), or an impossible timestamp."""
    reader = Reader(SPOT_CHECK_NAME, data)
    flags = SpotCheckFlags(reader.u8("flags") & 0x1F)
    spo2pr = _spo2pr(reader, "spo2pr")
    timestamp = reader.date_time("timestamp") if SpotCheckFlags.TIMESTAMP_PRESENT in flags else None
    ms, ds = _statuses(
        reader,
        SpotCheckFlags.MEASUREMENT_STATUS_PRESENT in flags,
        SpotCheckFlags.DEVICE_AND_SENSOR_STATUS_PRESENT in flags,
    )
    return PlxSpotCheckMeasurement(
        spo2pr=spo2pr,
        timestamp=timestamp,
        measurement_status=ms,
        device_and_sensor_status=ds,
        pulse_amplitude_index=_pai(reader, SpotCheckFlags.PULSE_AMPLITUDE_INDEX_PRESENT in flags),
        device_clock_not_set=SpotCheckFlags.DEVICE_CLOCK_NOT_SET in flags,
    )


def decode_plx_continuous_measurement(data: bytes) -> PlxContinuousMeasurement:
    """Decode one 0x2A5F value; raises :class:`~tryggheim.errors.DecodeError` naming the field
    that is cut short (e.g. ``spo2pr_fast.spo2``)."""
    reader = Reader(CONTINUOUS_NAME, data)
    flags = ContinuousFlags(reader.u8("flags") & 0x1F)
    normal = _spo2pr(reader, "spo2pr_normal")
    fast = _spo2pr(reader, "spo2pr_fast") if ContinuousFlags.SPO2PR_FAST_PRESENT in flags else None
    slow = _spo2pr(reader, "spo2pr_slow") if ContinuousFlags.SPO2PR_SLOW_PRESENT in flags else None
    ms, ds = _statuses(
        reader,
        ContinuousFlags.MEASUREMENT_STATUS_PRESENT in flags,
        ContinuousFlags.DEVICE_AND_SENSOR_STATUS_PRESENT in flags,
    )
    return PlxContinuousMeasurement(
        spo2pr_normal=normal,
        spo2pr_fast=fast,
        spo2pr_slow=slow,
        measurement_status=ms,
        device_and_sensor_status=ds,
        pulse_amplitude_index=_pai(reader, ContinuousFlags.PULSE_AMPLITUDE_INDEX_PRESENT in flags),
    )
