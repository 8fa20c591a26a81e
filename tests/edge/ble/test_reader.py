"""BleReader end to end on the real bumble stack with a cuff: simulated cuff → virtual radio →
bumble backend → bleak → decode → normalise → callback. In-process and across processes (TCP
HCI). Other device kinds and misbehaviours: test_reader_devices.py."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from ble.reader_harness import Sink, device
from edge.ble.backends.bumble import bumble_backend
from edge.ble.reader import BleReader, _Session
from firmware_sim.ble.bp_monitor import CuffReading, CuffStatus, SimulatedBloodPressureMonitor
from firmware_sim.ble.radio import VirtualRadio
from tryggheim.codes import DeviceKind
from tryggheim.domain import Observation, TimeSource

OSLO = ZoneInfo("Europe/Oslo")
CUFF = "C0:10:00:00:00:01"
READINGS = [
    CuffReading(Decimal(128), Decimal(82), Decimal(97), Decimal(66), datetime(2025, 3, 1, 8, 15)),
    CuffReading(
        Decimal(141),
        Decimal(91),
        Decimal(108),
        Decimal(88),
        datetime(2025, 3, 1, 20, 40),
        CuffStatus.IRREGULAR_PULSE,
    ),
    CuffReading(Decimal(119), Decimal(77), Decimal(91), Decimal(61), None),
]


def sessions(observations: list[Observation]) -> dict[object, dict[str, Decimal]]:
    by_session: dict[object, dict[str, Decimal]] = {}
    for o in observations:
        by_session.setdefault(o.session_key, {})[o.code] = o.value
    return by_session


async def test_reader_gets_every_reading_exactly_once_across_reconnects() -> None:
    outbox = Sink()

    async with (
        VirtualRadio() as radio,
        SimulatedBloodPressureMonitor(radio, CUFF, advertising_window=30) as cuff,
    ):
        # two measurements while no gateway is listening: they wait in the cuff's memory
        await cuff.measure(READINGS[0])
        await cuff.measure(READINGS[1])
        await asyncio.sleep(0.2)
        assert cuff.readings_delivered == 0

        async with (
            bumble_backend(radio.open_central_transport()) as backend,
            BleReader(
                devices=[device(CUFF.lower(), DeviceKind.BLOOD_PRESSURE)],
                gateway_id="gw-1",
                tz=OSLO,
                on_observations=outbox,
                scanner_backend=backend.scanner_type,
                client_backend=backend.client_type,
            ) as reader,
        ):
            await outbox.wait_for(8)
            # the cuff hangs up after delivering; the third reading needs a new connection
            async with asyncio.timeout(5):
                await cuff.wait_until_disconnected()
            await cuff.measure(READINGS[2])
            await outbox.wait_for(12)
            await cuff.wait_until_delivered()
            await reader.drain()
            await asyncio.sleep(0.3)  # nothing more may arrive

            assert reader.connections == 2
            assert reader.decode_errors == 0
            assert reader.measurements == 3

    assert len(outbox.readings) == 12
    assert len({o.id for o in outbox.readings}) == 12
    assert all(o.device_id == CUFF and o.gateway_id == "gw-1" for o in outbox.readings)
    assert all(o.source == "ble:2A35" and o.seq is None for o in outbox.readings)
    by_session = sessions(outbox.readings)
    assert len(by_session) == 3
    assert list(by_session.values()) == [
        {
            "MDC_PRESS_BLD_NONINV_SYS": r.systolic,
            "MDC_PRESS_BLD_NONINV_DIA": r.diastolic,
            "MDC_PRESS_BLD_NONINV_MEAN": r.mean_arterial_pressure,
            "MDC_PULS_RATE_NON_INV": r.pulse,
        }
        for r in READINGS
    ]
    first = outbox.readings[0]
    assert first.time == datetime(2025, 3, 1, 8, 15, tzinfo=OSLO)
    assert first.time_source is TimeSource.DEVICE
    assert first.unit == "mm[Hg]"
    assert outbox.readings[4].flags == ("irregular_pulse", "device_user_1")
    assert outbox.readings[-1].time_source is TimeSource.GATEWAY  # the third reading had no clock


async def test_reader_ignores_devices_not_on_the_allow_list() -> None:
    outbox = Sink()

    async with (
        VirtualRadio() as radio,
        SimulatedBloodPressureMonitor(radio, CUFF) as cuff,
        bumble_backend(radio.open_central_transport()) as backend,
        BleReader(
            devices=[device("C0:10:00:00:00:02", DeviceKind.BLOOD_PRESSURE)],
            gateway_id="gw-1",
            tz=OSLO,
            on_observations=outbox,
            scanner_backend=backend.scanner_type,
            client_backend=backend.client_type,
        ) as reader,
    ):
        await cuff.measure(READINGS[0])
        await asyncio.sleep(0.5)
        assert reader.connections == 0
        assert cuff.connections == 0
    assert outbox.readings == []


async def test_reader_reads_a_cuff_in_another_process_over_tcp() -> None:
    outbox = Sink()

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "firmware_sim.ble",
        "--address",
        CUFF,
        "--reading",
        "128/82/97/66@2025-03-01T08:15:00",
        "--reading",
        "131/85/100/70@2025-03-01T08:17:00",
        "--until-stdin-closes",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stdin is not None
    try:
        async with asyncio.timeout(8):
            transport = (await process.stdout.readline()).decode().strip()
        assert transport.startswith("tcp-client:127.0.0.1:")
        async with (
            bumble_backend(transport) as backend,
            BleReader(
                devices=[device(CUFF, DeviceKind.BLOOD_PRESSURE)],
                gateway_id="gw-tcp",
                tz=OSLO,
                on_observations=outbox,
                scanner_backend=backend.scanner_type,
                client_backend=backend.client_type,
            ),
        ):
            await outbox.wait_for(8)
        process.stdin.close()  # the simulator stops when its stdin closes
        async with asyncio.timeout(8):
            summary = (await process.stdout.readline()).decode().strip()
            assert await process.wait() == 0
        assert summary == "produced=2 delivered=2"
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    counts = Counter(o.code for o in outbox.readings)
    assert counts == Counter(
        {
            "MDC_PRESS_BLD_NONINV_SYS": 2,
            "MDC_PRESS_BLD_NONINV_DIA": 2,
            "MDC_PRESS_BLD_NONINV_MEAN": 2,
            "MDC_PULS_RATE_NON_INV": 2,
        }
    )
    assert sorted(o.value for o in outbox.readings if o.code == "MDC_PRESS_BLD_NONINV_SYS") == [
        Decimal(128),
        Decimal(131),
    ]


async def test_malformed_indication_is_counted_and_reading_goes_on() -> None:
    outbox = Sink()
    async with (
        VirtualRadio() as radio,
        SimulatedBloodPressureMonitor(radio, CUFF) as cuff,
        bumble_backend(radio.open_central_transport()) as backend,
        BleReader(
            devices=[device(CUFF, DeviceKind.BLOOD_PRESSURE)],
            gateway_id="gw-1",
            tz=OSLO,
            on_observations=outbox,
            scanner_backend=backend.scanner_type,
            client_backend=backend.client_type,
        ) as reader,
    ):
        await cuff.measure(b"\x1e\x80\x00\x52")  # firmware bug: cut-off packet
        await cuff.measure(READINGS[0])
        await outbox.wait_for(4)
        await cuff.wait_until_delivered()
        assert reader.decode_errors == 1
        assert reader.adjustments.to_json() == {"ble": {"malformed": 1}}
        assert reader.measurements == 1
    assert [o.value for o in outbox.readings] == [
        Decimal(128),
        Decimal(82),
        Decimal(97),
        Decimal(66),
    ]


def test_glucose_context_pairs_with_its_record_by_sequence_number() -> None:
    """The pairing rule on its own (no radio needed: the values as the link delivers them):
    a context waits for nothing, a record announcing one waits for it, and a context of
    another record neither pairs nor drops the waiting record."""
    meter = "C0:40:00:00:00:03"
    reader = BleReader(
        devices=[device(meter, DeviceKind.GLUCOSE_METER)],
        gateway_id="gw-1",
        tz=OSLO,
        on_observations=Sink(),
        clock=lambda: datetime(2025, 3, 4, 7, 0, tzinfo=ZoneInfo("UTC")),
    )
    session = _Session(reader, reader.devices[meter])
    for uuid16, hex_value in [
        (0x2A34, "02 0700 01"),  # context of record 7, which never came
        (0x2A18, "16 0800 e907 03 04 08 0f 00 38c0 12"),  # record 8: context follows
        (0x2A34, "02 0900 01"),  # context of record 9: not this one
        (0x2A34, "02 0800 03"),  # record 8's context: fasting
    ]:
        session._on_value(uuid16, None, bytearray.fromhex(hex_value))
    handover = reader._queue.get_nowait()
    assert reader._queue.empty()
    (o,) = handover.observations
    assert (o.code, o.flags) == (
        "MDC_CONC_GLU_CAPILLARY_PLASMA",
        ("sample_location_finger", "meal_fasting"),
    )
    assert reader.adjustments.to_json() == {"ble": {"context_without_reading": 2}}
