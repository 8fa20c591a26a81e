"""A simulated blood-glucose meter: Glucose 0x1808 (0x2A18 Glucose Measurement, NOTIFY;
0x2A34 Glucose Measurement Context, NOTIFY; 0x2A51 Glucose Feature, READ; 0x2A52 Record Access
Control Point, WRITE + INDICATE).

Unlike the cuff it pushes nothing on connect: it keeps every record, numbered by a sequence
number, and the central asks for them through the RACP: "report stored records" (all, ≥ N,
≤ N, within a range, first, last) makes the meter notify those records (each 0x2A18, then its
0x2A34 when it has a context) and then indicate the RACP response (success, or no records
found); "report number of stored records" indicates the count; "abort operation" stops a
report. A record counts as delivered once a report that contained it ended with a confirmed
success response. "Delete stored records" is not supported (opcode not supported).

Misbehaviours: ``disconnect_after_records`` makes the meter drop the link after that many
records of the next report (once); a low battery sets "device battery low" on new records.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Unpack

from bumble import gatt
from bumble.att import ATT_Error
from bumble.device import Connection

from firmware_sim.ble.encode import (
    RACP_FILTER_SEQUENCE_NUMBER,
    GlucoseSensorStatus,
    GlucoseType,
    Meal,
    RacpOpcode,
    RacpOperator,
    RacpResponse,
    SampleLocation,
    encode_glucose_context,
    encode_glucose_measurement,
    encode_racp_number_of_records,
    encode_racp_response_code,
)
from firmware_sim.ble.peripheral import (
    PeripheralOptions,
    SimulatedPeripheral,
    pushed_characteristic,
    read_only_characteristic,
)
from firmware_sim.ble.radio import VirtualRadio

GLUCOSE_SERVICE = "1808"
GLUCOSE_MEASUREMENT = "2A18"
GLUCOSE_MEASUREMENT_CONTEXT = "2A34"
GLUCOSE_FEATURE = "2A51"
RECORD_ACCESS_CONTROL_POINT = "2A52"
#: GAP appearance "Glucose Meter".
APPEARANCE_GLUCOSE_METER = 0x0400
#: 0x2A51: low battery detection, sensor malfunction detection, sample size, strip insertion
#: error, result high-low, general device fault, time fault detection.
FEATURES = 0x0001 | 0x0002 | 0x0004 | 0x0008 | 0x0020 | 0x0100 | 0x0200
#: ATT application errors of the common profile specification.
PROCEDURE_ALREADY_IN_PROGRESS = 0xFE
CCCD_IMPROPERLY_CONFIGURED = 0xFD


@dataclass(frozen=True, slots=True)
class GlucoseContext:
    """The 0x2A34 fields this meter records (the patient presses "before meal" etc.)."""

    meal: Meal | None = None
    carbohydrate: tuple[int, Decimal] | None = None
    """(carbohydrate id, kg)."""
    hba1c: Decimal | None = None


@dataclass(frozen=True, slots=True)
class GlucoseReading:
    """Concentration as the meter shows it: mmol/L, or mg/dL on a meter set to mg/dL."""

    concentration: Decimal
    timestamp: datetime | None = None
    """Naive time of the meter's clock (the record's base time); ``None``: stamped by its
    clock, or zeros if it has none."""
    time_offset_minutes: int | None = None
    glucose_type: GlucoseType = GlucoseType.CAPILLARY_WHOLE_BLOOD
    sample_location: SampleLocation = SampleLocation.FINGER
    sensor_status: GlucoseSensorStatus | None = None
    context: GlucoseContext | None = None


@dataclass(frozen=True, slots=True)
class GlucoseRecord:
    sequence_number: int
    reading: GlucoseReading | bytes


class SimulatedGlucoseMeter(SimulatedPeripheral[GlucoseReading]):
    SERVICE_UUID = GLUCOSE_SERVICE
    APPEARANCE = APPEARANCE_GLUCOSE_METER
    DEFAULT_NAME = "Tryggheim Glucose"
    DEFAULT_MODEL = "TH-GLU-1"

    def __init__(
        self,
        radio: VirtualRadio,
        address: str,
        *,
        mg_dl: bool = False,
        first_sequence_number: int = 1,
        record_interval: float = 0.0,
        disconnect_after_records: int | None = None,
        **options: Unpack[PeripheralOptions],
    ) -> None:
        """``mg_dl``: the meter is set to mg/dL (sends kg/L) instead of mmol/L (mol/L);
        ``record_interval``: pause between records of a report (real meters pace them; it
        also gives an abort something to stop)."""
        options.setdefault("disconnect_after_delivery", False)
        super().__init__(radio, address, **options)
        self.mg_dl = mg_dl
        self.record_interval = record_interval
        self.disconnect_after_records = disconnect_after_records
        self.records: list[GlucoseRecord] = []
        self.records_sent = 0
        self._next_sequence_number = first_sequence_number
        self._delivered_sequence_numbers: set[int] = set()
        self._measurement = pushed_characteristic(
            GLUCOSE_MEASUREMENT, gatt.Characteristic.Properties.NOTIFY
        )
        self._context = pushed_characteristic(
            GLUCOSE_MEASUREMENT_CONTEXT, gatt.Characteristic.Properties.NOTIFY
        )
        self._racp: gatt.Characteristic[bytes] = gatt.Characteristic(
            RECORD_ACCESS_CONTROL_POINT,
            gatt.Characteristic.Properties.WRITE | gatt.Characteristic.Properties.INDICATE,
            gatt.Characteristic.WRITEABLE,
            gatt.CharacteristicValue(write=self._on_racp_write),
        )
        self._procedure: asyncio.Task[None] | None = None
        # True from a request until its response goes out: the central may write the next
        # request as soon as it has the response, before this side has seen the confirmation.
        self._busy = False

    # --- records ---------------------------------------------------------------------------

    def _services(self) -> list[gatt.Service]:
        return [
            gatt.Service(
                GLUCOSE_SERVICE,
                [
                    self._measurement,
                    self._context,
                    read_only_characteristic(GLUCOSE_FEATURE, struct.pack("<H", FEATURES)),
                    self._racp,
                ],
            )
        ]

    def _bonded_characteristics(self) -> list[gatt.Characteristic[bytes]]:
        return [self._measurement, self._context, self._racp]

    def _store(self, reading: GlucoseReading | bytes) -> None:
        if isinstance(reading, GlucoseReading) and self.low_battery:
            status = reading.sensor_status or GlucoseSensorStatus(0)
            reading = replace(
                reading, sensor_status=status | GlucoseSensorStatus.DEVICE_BATTERY_LOW
            )
        # sequence numbers are 16 bits and wrap, as on a real meter
        self.records.append(GlucoseRecord(self._next_sequence_number, reading))
        self._next_sequence_number = (self._next_sequence_number + 1) & 0xFFFF

    def _has_undelivered(self) -> bool:
        return any(r.sequence_number not in self._delivered_sequence_numbers for r in self.records)

    def _encode(self, reading: GlucoseReading) -> bytes:
        # The base pushes readings through _encode; this meter never pushes (no _delivery),
        # it sends records with their sequence numbers through encode_record.
        raise NotImplementedError("glucose records go out through encode_record")

    def encode_record(self, record: GlucoseRecord) -> list[tuple[str, bytes]]:
        """The (characteristic UUID, value) notifications the meter sends for ``record``."""
        reading = record.reading
        if isinstance(reading, bytes):
            return [(GLUCOSE_MEASUREMENT, reading)]
        # the SFLOAT carries mol/L or kg/L: shift the shown value's decimal point, exactly
        concentration = reading.concentration.scaleb(-5 if self.mg_dl else -3)
        values = [
            (
                GLUCOSE_MEASUREMENT,
                encode_glucose_measurement(
                    sequence_number=record.sequence_number,
                    base_time=reading.timestamp,
                    time_offset_minutes=reading.time_offset_minutes,
                    concentration=concentration,
                    mol_per_l=not self.mg_dl,
                    glucose_type=reading.glucose_type,
                    sample_location=reading.sample_location,
                    sensor_status=reading.sensor_status,
                    context_follows=reading.context is not None,
                ),
            )
        ]
        if reading.context is not None:
            values.append(
                (
                    GLUCOSE_MEASUREMENT_CONTEXT,
                    encode_glucose_context(
                        sequence_number=record.sequence_number,
                        meal=reading.context.meal,
                        carbohydrate=reading.context.carbohydrate,
                        hba1c=reading.context.hba1c,
                    ),
                )
            )
        return values

    # --- record access control point ------------------------------------------------------

    def _on_disconnection(self) -> None:
        # a RACP procedure does not outlive its link: the central asks again after reconnecting
        if self._procedure is not None:
            self._procedure.cancel()
        self._busy = False
        super()._on_disconnection()

    def _on_racp_write(self, connection: Connection, value: bytes) -> None:
        """Runs inside the ATT write: errors here become the write's error response; the
        procedure itself runs afterwards, as the write response must come first."""
        if not self._cccd(connection, self._racp) & 0x02:
            raise ATT_Error(CCCD_IMPROPERLY_CONFIGURED)
        opcode = value[0] if value else 0
        if opcode == RacpOpcode.ABORT_OPERATION:
            if self._busy and self._procedure is not None:
                self._procedure.cancel()
            procedure = self._abort(connection)
        elif self._busy:
            raise ATT_Error(PROCEDURE_ALREADY_IN_PROGRESS)
        else:
            procedure = self._run_procedure(connection, bytes(value))
        self._busy = True
        self._procedure = self._spawn(procedure)

    async def _abort(self, connection: Connection) -> None:
        response = encode_racp_response_code(RacpOpcode.ABORT_OPERATION, RacpResponse.SUCCESS)
        await self._respond(connection, response)

    async def _respond(self, connection: Connection, response: bytes) -> bool:
        """Send the procedure's final response: the procedure ends here."""
        self._busy = False
        return await self._send(connection, self._racp, response)

    def _select(self, operator: int, operand: bytes) -> list[GlucoseRecord] | RacpResponse:
        """The records a request names, or the response code that refuses it."""
        if operator == RacpOperator.ALL_RECORDS:
            return list(self.records) if not operand else RacpResponse.INVALID_OPERAND
        if operator == RacpOperator.FIRST_RECORD:
            return self.records[:1]
        if operator == RacpOperator.LAST_RECORD:
            return self.records[-1:]
        if operator not in (
            RacpOperator.LESS_THAN_OR_EQUAL,
            RacpOperator.GREATER_THAN_OR_EQUAL,
            RacpOperator.WITHIN_RANGE,
        ):
            return RacpResponse.INVALID_OPERATOR
        if not operand:
            return RacpResponse.INVALID_OPERAND
        if operand[0] != RACP_FILTER_SEQUENCE_NUMBER:
            return RacpResponse.OPERAND_NOT_SUPPORTED
        bounds = operand[1:]
        expected = 4 if operator == RacpOperator.WITHIN_RANGE else 2
        if len(bounds) != expected:
            return RacpResponse.INVALID_OPERAND
        values = struct.unpack(f"<{expected // 2}H", bounds)
        low, high = {
            RacpOperator.LESS_THAN_OR_EQUAL: (0, values[0]),
            RacpOperator.GREATER_THAN_OR_EQUAL: (values[0], 0xFFFF),
        }.get(RacpOperator(operator), (values[0], values[-1]))
        if low > high:
            return RacpResponse.INVALID_OPERAND
        return [r for r in self.records if low <= r.sequence_number <= high]

    async def _run_procedure(self, connection: Connection, request: bytes) -> None:
        opcode = request[0] if request else 0
        operator = request[1] if len(request) > 1 else RacpOperator.NULL
        if opcode not in (
            RacpOpcode.REPORT_STORED_RECORDS,
            RacpOpcode.REPORT_NUMBER_OF_STORED_RECORDS,
        ):
            await self._respond(
                connection, encode_racp_response_code(opcode, RacpResponse.OPCODE_NOT_SUPPORTED)
            )
            return
        selected = self._select(operator, request[2:])
        if isinstance(selected, RacpResponse):
            await self._respond(connection, encode_racp_response_code(opcode, selected))
        elif opcode == RacpOpcode.REPORT_NUMBER_OF_STORED_RECORDS:
            await self._respond(connection, encode_racp_number_of_records(len(selected)))
        elif not selected:
            await self._respond(
                connection, encode_racp_response_code(opcode, RacpResponse.NO_RECORDS_FOUND)
            )
        else:
            await self._report(connection, selected)

    async def _report(self, connection: Connection, records: list[GlucoseRecord]) -> None:
        characteristics = {
            GLUCOSE_MEASUREMENT: self._measurement,
            GLUCOSE_MEASUREMENT_CONTEXT: self._context,
        }
        for sent, record in enumerate(records):
            if self.disconnect_after_records is not None and sent >= self.disconnect_after_records:
                self.disconnect_after_records = None  # the fault happens once
                await self._disconnect(connection)
                return
            for uuid, value in self.encode_record(record):
                await self.device.notify_subscriber(connection, characteristics[uuid], value)
            self.records_sent += 1
            await asyncio.sleep(self.record_interval)
            if self._connection is not connection:
                return
        response = encode_racp_response_code(RacpOpcode.REPORT_STORED_RECORDS, RacpResponse.SUCCESS)
        if await self._respond(connection, response):
            new = {r.sequence_number for r in records} - self._delivered_sequence_numbers
            self._delivered_sequence_numbers |= new
            await self._count_delivered(len(new))
