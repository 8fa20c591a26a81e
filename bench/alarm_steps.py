"""What the record store's transactions and a nurse's step on an alarm cost the platform, in
process, on a SQLite record store of ``--homes`` homes (issue 18: the alarm-latency load acts
on an alarm four times a sample, and those steps were a sixth of the platform's CPU).

- ``transaction_us``: a transaction that reads one row (``RecordStore.session``), CPU µs;
- ``statement_us``: one more ``SELECT`` inside a transaction;
- ``step_us``: one step (acknowledge, start, resolve, close) as the API's route does it,
  without HTTP and sign-in: the alarm's patient looked up for the access check, the step
  (``AlarmService.act``, whose change the live publisher shows for an open stream), the audit
  entry, and the alarm as the answer shows it (``shown_alarms``).

Every home has a patient (default care plan), a pulse oximeter and the sensor map its edge
sends, so that showing an alarm looks up a real device. A cycle commits a low SpO2 (an alarm
raised), takes the alarm through the four steps (each cycle's alarm is checked to be closed),
and commits a normal SpO2, so that the home's next low raises a new one. CPU is this
process's (the event loop and aiosqlite's threads), by ``time.process_time``.

    .venv/bin/python bench/alarm_steps.py [--homes 1000] [--transactions 2000] [--cycles 100]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from ingest import KINDS, SPO2, SPO2_LIMIT, SPO2_NORMAL, write_registry
from ingest_stages import HOME_SENSORS
from sqlalchemy import select

from gateway.alarms.book import AlarmBook
from gateway.alarms.service import AlarmService
from gateway.live.events import EventBus
from gateway.live.publisher import LivePublisher, shown_alarms
from gateway.records.models import DEFAULT_TENANT
from gateway.records.store import CommitResult, RecordStore
from gateway.registry.provision import load_registry, provision
from gateway.registry.service import Registry
from tryggheim.domain import Observation
from tryggheim.wire import GatewayStatusReport, ObservationBatch

STEPS = ("acknowledge", "start", "resolve", "close")
NURSE = "user:1"


async def measure(homes: int, transactions: int, cycles: int, work: Path) -> dict[str, object]:
    store = RecordStore(
        f"sqlite+aiosqlite:///{work / 'records.db'}", alarms=AlarmBook(), export_pending=False
    )
    events = EventBus()
    registry = Registry(store)
    store.unit_of_work.handler = LivePublisher(events, registry)
    alarms = AlarmService(store)
    try:
        await store.migrate()
        gateways = [f"gw-{n:05d}" for n in range(homes)]
        await provision(store, load_registry(write_registry(work / "registry.toml", gateways)))
        now = datetime.now(UTC)
        await store.commit_batches(  # the sensor maps their edges send
            [],
            now,
            statuses=[GatewayStatusReport(g, True, 0, sensors=HOME_SENSORS) for g in gateways],
        )
        gc.collect()
        gc.freeze()

        async def read_one_row() -> None:
            async with store.session() as s:
                await s.execute(select(1))

        transaction_us = await _cpu_us(read_one_row, transactions)
        async with store.session() as s:
            statement_us = await _cpu_us(lambda: s.execute(select(1)), transactions)

        device, _, code, unit = KINDS[SPO2]

        async def commit_spo2(gateway: str, seq: int, value: Decimal, at: datetime) -> CommitResult:
            observation = Observation(
                gateway_id=gateway,
                device_id=device,
                source="ble:2A5E",
                code=code,
                value=value,
                unit=unit,
                time=at,
                seq=seq,
            )
            return await store.commit_batches(
                [ObservationBatch(gateway, (observation,))], datetime.now(UTC)
            )

        async with events.subscription():  # an open stream: the publisher shows each change
            step_s, steps, closed = 0.0, 0, 0
            for cycle in range(cycles):
                gateway = gateways[cycle % homes]
                at = now + timedelta(minutes=cycle)
                result = await commit_spo2(gateway, cycle * 2 + 1, SPO2_LIMIT - 4, at)
                (alarm_id,) = {a.id for a in result.alarms}
                for step in STEPS:
                    started = time.process_time()
                    patient = await registry.alarm_patient(alarm_id)
                    assert patient is not None
                    row = await alarms.act(alarm_id, step, NURSE, datetime.now(UTC), note="Bench.")
                    await store.audit(
                        actor=NURSE,
                        tenant_id=DEFAULT_TENANT,
                        action=f"{step}_alarm",
                        patient_ids=[patient.id],
                        purpose="care",
                        client=None,
                        now=datetime.now(UTC),
                    )
                    await shown_alarms(registry, DEFAULT_TENANT, [row])
                    step_s += time.process_time() - started
                    steps += 1
                closed += (await alarms.get(alarm_id)).state == "closed"
                # Normal again, so that the home's next low raises a new alarm.
                await commit_spo2(gateway, cycle * 2 + 2, SPO2_NORMAL, at + timedelta(seconds=1))
        return {
            "transaction_us": round(transaction_us, 1),
            "statement_us": round(statement_us, 1),
            "step_us": round(step_s / steps * 1e6, 1),
            "steps": steps,
            "alarms_closed": closed,
        }
    finally:
        await store.close()


async def _cpu_us(call: Callable[[], Awaitable[object]], count: int) -> float:
    """µs of this process's CPU per ``call``, over ``count`` calls after 50 to warm up."""
    for _ in range(50):
        await call()
    started = time.process_time()
    for _ in range(count):
        await call()
    return (time.process_time() - started) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--homes", type=int, default=1000)
    parser.add_argument("--transactions", type=int, default=2000)
    parser.add_argument("--cycles", type=int, default=100, help="alarms taken through 4 steps")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tryggheim-bench-steps-") as work:
        result = asyncio.run(measure(args.homes, args.transactions, args.cycles, Path(work)))
    print(
        json.dumps({"bench": "alarm_steps", "homes": args.homes, "cycles": args.cycles, **result})
    )
    if result["alarms_closed"] != args.cycles:
        sys.exit(1)


if __name__ == "__main__":
    main()
