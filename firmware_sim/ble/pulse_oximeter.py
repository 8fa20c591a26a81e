"""A simulated pulse oximeter: Pulse Oximeter 0x1822 (0x2A5E PLX Spot-Check Measurement,
INDICATE; 0x2A5F PLX Continuous Measurement, NOTIFY; 0x2A60 PLX Features, READ).

Spot-check readings are store-and-forward like the cuff's (:mod:`firmware_sim.ble.peripheral`).
The continuous measurement is live: while a central is connected and subscribed to 0x2A5F the
oximeter notifies :attr:`SimulatedPulseOximeter.continuous` every ``continuous_interval``
seconds; nothing is stored. It stays connected after a spot-check (the finger is still in).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Unpack

from bumble import gatt
from bumble.device import Connection

from firmware_sim.ble.encode import (
    SfloatInput,
    encode_plx_continuous,
    encode_plx_features,
    encode_plx_spot_check,
)
from firmware_sim.ble.peripheral import (
    PeripheralOptions,
    SimulatedPeripheral,
    pushed_characteristic,
    read_only_characteristic,
)
from firmware_sim.ble.radio import VirtualRadio

PULSE_OXIMETER_SERVICE = "1822"
PLX_SPOT_CHECK = "2A5E"
PLX_CONTINUOUS = "2A5F"
PLX_FEATURES = "2A60"
#: GAP appearance "Pulse Oximeter: Fingertip".
APPEARANCE_FINGERTIP_OXIMETER = 0x0C41
#: 0x2A60 supported features: measurement status (bit 0), device and sensor status (bit 1),
#: spot-check timestamp (bit 3), pulse amplitude index (bit 6).
FEATURE_TIMESTAMP = 0x0008
FEATURE_PULSE_AMPLITUDE_INDEX = 0x0040
#: Measurement status bits it can report: measurement ongoing, early estimate, validated,
#: fully qualified, from measurement storage.
MEASUREMENT_STATUS_SUPPORT = 0x003E
#: Device and sensor status bits it can report: extended display update, equipment
#: malfunction, signal processing irregularity, inadequate signal, poor signal, low
#: perfusion, erratic signal, non-pulsatile signal, questionable pulse, sensor displaced.
DEVICE_STATUS_SUPPORT = 0x0003FF


@dataclass(frozen=True, slots=True)
class SpotCheckReading:
    spo2: SfloatInput
    """Percent."""
    pulse_rate: SfloatInput
    """Beats per minute."""
    timestamp: datetime | None = None
    """Naive time of the oximeter's clock; ``None``: stamped by its clock, or sent without."""
    measurement_status: int | None = None
    device_status: int | None = None
    pulse_amplitude_index: SfloatInput | None = None


@dataclass(frozen=True, slots=True)
class ContinuousReading:
    spo2: SfloatInput
    pulse_rate: SfloatInput
    fast: tuple[SfloatInput, SfloatInput] | None = None
    slow: tuple[SfloatInput, SfloatInput] | None = None
    measurement_status: int | None = None
    device_status: int | None = None
    pulse_amplitude_index: SfloatInput | None = None

    def encode(self) -> bytes:
        return encode_plx_continuous(
            spo2=self.spo2,
            pulse_rate=self.pulse_rate,
            fast=self.fast,
            slow=self.slow,
            measurement_status=self.measurement_status,
            device_status=self.device_status,
            pulse_amplitude_index=self.pulse_amplitude_index,
        )


class SimulatedPulseOximeter(SimulatedPeripheral[SpotCheckReading]):
    SERVICE_UUID = PULSE_OXIMETER_SERVICE
    APPEARANCE = APPEARANCE_FINGERTIP_OXIMETER
    DEFAULT_NAME = "Tryggheim PLX"
    DEFAULT_MODEL = "TH-PLX-1"

    def __init__(
        self,
        radio: VirtualRadio,
        address: str,
        *,
        continuous: ContinuousReading | None = None,
        continuous_interval: float = 1.0,
        **options: Unpack[PeripheralOptions],
    ) -> None:
        """``continuous`` is what the sensor reads now (``None``: no finger, nothing is
        streamed); change the attribute to change the stream."""
        options.setdefault("disconnect_after_delivery", False)
        super().__init__(radio, address, **options)
        self.continuous = continuous
        self.continuous_interval = continuous_interval
        self.continuous_sent = 0
        self._spot_check = pushed_characteristic(
            PLX_SPOT_CHECK, gatt.Characteristic.Properties.INDICATE
        )
        self._continuous = pushed_characteristic(
            PLX_CONTINUOUS, gatt.Characteristic.Properties.NOTIFY
        )
        self._delivery = self._spot_check
        self._streaming: Connection | None = None

    @property
    def features(self) -> bytes:
        """The 0x2A60 value."""
        return encode_plx_features(
            FEATURE_PULSE_AMPLITUDE_INDEX | (FEATURE_TIMESTAMP if self.clock is not None else 0),
            measurement_status_support=MEASUREMENT_STATUS_SUPPORT,
            device_status_support=DEVICE_STATUS_SUPPORT,
        )

    def _services(self) -> list[gatt.Service]:
        return [
            gatt.Service(
                PULSE_OXIMETER_SERVICE,
                [
                    self._spot_check,
                    self._continuous,
                    read_only_characteristic(PLX_FEATURES, self.features),
                ],
            )
        ]

    def _encode(self, reading: SpotCheckReading) -> bytes:
        return encode_plx_spot_check(
            spo2=reading.spo2,
            pulse_rate=reading.pulse_rate,
            timestamp=reading.timestamp,
            measurement_status=reading.measurement_status,
            device_status=reading.device_status,
            pulse_amplitude_index=reading.pulse_amplitude_index,
        )

    def _on_subscribed(
        self, connection: Connection, characteristic: gatt.Characteristic[Any]
    ) -> None:
        if characteristic is self._continuous:
            if self._streaming is not connection:  # a second CCCD write must not add a stream
                self._streaming = connection
                self._spawn(self._stream(connection))
        else:
            super()._on_subscribed(connection, characteristic)

    async def _stream(self, connection: Connection) -> None:
        """Notify the live value until the link drops or the central unsubscribes."""
        try:
            while self._connection is connection and self._subscribed(connection, self._continuous):
                if self.continuous is not None:
                    await self.device.notify_subscriber(
                        connection, self._continuous, self.continuous.encode()
                    )
                    self.continuous_sent += 1
                await asyncio.sleep(self.continuous_interval)
        finally:
            if self._streaming is connection:
                self._streaming = None
