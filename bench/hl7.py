"""HL7 v2 throughput (issue 6, part 8): the platform's MLLP endpoint, the sender, the durable
outbound queue after a GP outage, and hl7apy's parse rate as the baseline, in one run.

- **inbound**: ``tryggheim hl7 listen`` (its own process, SQLite record store) takes messages
  over ``--connections`` persistent MLLP connections, each sending its next message when the
  previous one's ACK is in (MLLP has no pipelining). Two paths (see gateway/hl7/inbound/service.py):

  - ``ack``: the store-and-ACK path. ADT^A08 updates of already registered patients (one per
    connection) with MSH-15 ``AL``, MSH-16 ``NE`` (accept acknowledgement only): each is
    stored raw (group commit) and answered CA; the endpoint's processor applies them
    afterwards. After the last CA the clock runs on until every one of them is processed
    (``processed_s``, from the first message sent), read from the record store;
  - ``full``: ORU^R01 (IHE PCD-01, 4 observations: systolic, diastolic, mean, pulse) for known
    patients, sent in original mode (MSH-15/16 empty): each is stored, becomes 4 observations
    (``commit_batches``, alarm evaluation) and only then is answered AA.

  With ``--ack-sweep`` (default 1, 8 and 16) the ``ack`` path is measured again with those
  numbers of connections, each against a fresh endpoint (``inbound_ack_by_connections``):
  group commit stores everything waiting on all connections in one transaction, so the rate
  depends on how many senders there are.

- **outbound**: :func:`hl7.oru.build_oru_r01` then :meth:`hl7.mllp.MLLPClient.send` to the GP
  endpoint (``tryggheim hl7 gp-peer``, its own process) over one connection, one at a time.
- **backlog**: ``--backlog`` measurement sessions (4 observations each, for ``--patients``
  patients whose GP is one endpoint) are committed (``RecordStore.commit_batches``) and made into
  ORU^R01 rows of the durable queue (``Hl7Outbound.compose``, table ``hl7_messages``) while the
  GP endpoint is down; ``Hl7Outbound.run`` (the platform's loop) runs for ``--down-s`` against
  the dead port, then the GP endpoint starts on that port and the clock runs until every message
  is acknowledged. ``Hl7Settings.retry_after_s`` is ``--retry-after-s`` (the platform's default is
  15 s), so the time includes the wait for the next attempt. ``--backlog-via client`` drains
  prebuilt messages with a bare MLLPClient instead (for when the queue's code is unusable).
- **baseline**: ``hl7apy.parser.parse_message`` on the same ORU^R01 text, for
  ``--baseline-s`` seconds, and our own parser (:func:`hl7.message.decode_message`, and
  :func:`hl7.inbound.decode_inbound` that also reads every field the platform uses) likewise.

CPU-seconds are those of the endpoint's or GP's process (``endpoint_cpu_s``, ``gp_cpu_s``; for
``ack`` up to the last CA, and ``processed_cpu_s`` up to the last one processed) and
of this process, which runs the load generator, the sender or the outbound queue
(``bench_cpu_s``, ``sender_cpu_s``, ``queue_cpu_s``). Goals (issue 6): inbound ``ack`` >= 2,000
messages/s, the 10,000-message backlog drained in <= 60 s. Prints one JSON line; exits 1 when a
message was not acknowledged, the drain did not finish within ``--drain-limit-s`` or a count
does not add up. The run takes as long as the slowest part needs: with the platform of
2026-11-22 about 5 minutes, 4 of them the backlog's drain.

    .venv/bin/python bench/hl7.py [--parts baseline,inbound,outbound,backlog]
        [--connections 4] [--ack-sweep 1,8,16] [--ack-messages 4000] [--full-messages 1000]
        [--outbound-messages 4000] [--backlog 10000] [--patients 50] [--down-s 3]
        [--retry-after-s 1] [--drain-limit-s 900] [--process-limit-s 300] [--baseline-s 2]
        [--backlog-via queue|client]
"""

# ruff: noqa: E402 - sys.path is put right before the project's imports (see below).

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's directory is on sys.path, and there "hl7" is this file
# (bench/hl7.py), not the package: import the package without it, then put it back for
# bench_common.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
import hl7  # noqa: F401

sys.path.append(str(_HERE))

import argparse
import asyncio
import contextlib
import json
import re
import resource
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from bench_common import tree_usage
from hl7apy.parser import parse_message as hl7apy_parse_message

from gateway.hl7.outbound.compose import measurement_session
from gateway.records.store import RecordStore
from gateway.registry.provision import DeviceEntry, PatientEntry, Registry, provision
from gateway.settings import Hl7Settings
from hl7.inbound import decode_inbound
from hl7.message import decode_message
from hl7.mllp import MLLPClient
from hl7.oru import PatientRef, build_oru_r01
from tryggheim.apps.broker import find_free_port
from tryggheim.codes import DeviceProfile
from tryggheim.domain import Observation, TimeSource
from tryggheim.wire import ObservationBatch

INBOUND_ACK_GOAL = 2000
BACKLOG_GOAL_S = 60
ACK_TIMEOUT_S = 30.0
START_TIMEOUT_S = 60.0
PARTS = ("baseline", "inbound", "outbound", "backlog")
SESSION = (
    ("MDC_PRESS_BLD_NONINV_SYS", "mm[Hg]", 100),
    ("MDC_PRESS_BLD_NONINV_DIA", "mm[Hg]", 60),
    ("MDC_PRESS_BLD_NONINV_MEAN", "mm[Hg]", 75),
    ("MDC_PULS_RATE_NON_INV", "{beat}/min", 55),
)
"""A blood-pressure session: code, unit and a base value (kept inside every default alarm
threshold, so that no alarm work is added)."""
FIRST_SESSION = datetime(2026, 11, 1, 7, 0, tzinfo=UTC)
LISTENING = re.compile(rb"listening on \S+:(\d+)")


# --- messages ---


def national_id(n: int) -> str:
    return f"150765{n:05d}"


def cuff(n: int) -> str:
    return f"C0:10:00:00:{n >> 8 & 0xFF:02X}:{n & 0xFF:02X}"


def session(gateway: str, device: str, at: datetime, k: int, seq: int) -> list[Observation]:
    """The 4 observations of one cuff reading; values vary with ``k``, seqs from ``seq``."""
    return [
        Observation(
            gateway_id=gateway,
            device_id=device,
            source="ble:2A35",
            code=code,
            value=Decimal(base + k % 20),
            unit=unit,
            time=at,
            time_source=TimeSource.DEVICE,
            seq=seq + i,
        )
        for i, (code, unit, base) in enumerate(SESSION)
    ]


def oru(patient: int, k: int, control_id: str) -> str:
    """ORU^R01 of the ``k``-th session of ``patient``, as the platform sends it."""
    at = FIRST_SESSION + timedelta(minutes=k)
    device, metrics = measurement_session(
        session("gw-bench", cuff(patient), at, k, 1), cuff(patient), DeviceProfile.BLOOD_PRESSURE
    )
    return build_oru_r01(
        patient=PatientRef(national_id(patient), "Ødegård", f"Kari {patient}"),
        observations=metrics,
        device=device,
        sending_app="TRYGGHEIM",
        sending_facility="Bergen kommune",
        receiving_app="EPJ",
        receiving_facility="Fjellsiden lk",
        control_id=control_id,
        now=at + timedelta(minutes=1),
    )


def adt(event: str, patient: int, control_id: str, given: str, *, accept: bool = False) -> str:
    """``accept``: MSH-15 AL, MSH-16 NE (the store-and-ACK path), else original mode."""
    modes = "AL|NE" if accept else "|"
    return (
        "MSH|^~\\&|DIPS|AHUS|TRYGGHEIM|BAERUM|20261101120000+0100||"
        f"ADT^{event}^ADT_A01|{control_id}|P|2.5|||{modes}|NOR|UNICODE UTF-8\r"
        f"EVN|{event}|20261101115930+0100\r"
        f"PID|1||{national_id(patient)}^^^NOR^NNNOR||Ødegård^{given}||19650715|F\r"
    )


def original_mode(message: str) -> str:
    """``message`` with MSH-15 and MSH-16 emptied: answered AA/AE/AR after processing."""
    msh, rest = message.split("\r", 1)
    fields = msh.split("|")
    fields[14:16] = ["", ""]  # fields[n - 1] is MSH-n: MSH-1 is the separator itself
    return "|".join(fields) + "\r" + rest


# --- child processes ---


@contextlib.asynccontextmanager
async def tryggheim_server(work: Path, name: str, *args: str) -> AsyncIterator[tuple[int, int]]:
    """A ``tryggheim`` command that prints "... listening on HOST:PORT": (pid, port). Its
    stderr goes to ``work/NAME.log``."""
    with (work / f"{name}.log").open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tryggheim.apps.cli",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_S)
        match = LISTENING.search(line)
        if match is None:
            log_text = (work / f"{name}.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{name} did not start: {line!r}\n{log_text}")
        yield process.pid, int(match.group(1))
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- inbound ---


@dataclass
class Sent:
    codes: Counter[str]
    latencies_ms: list[float]
    elapsed_s: float
    bench_cpu_s: float
    endpoint_cpu_s: float


async def send_all(
    port: int, per_connection: Sequence[Sequence[str]], endpoint_pid: int | None = None
) -> Sent:
    """Each list over its own connection, one message after the other's ACK, all lists at
    once. Connections are opened before the clock starts."""
    codes: Counter[str] = Counter()
    latencies: list[float] = []

    async def one(client: MLLPClient, messages: Sequence[str]) -> None:
        for message in messages:
            started = time.perf_counter()
            ack = await client.send(message, timeout=ACK_TIMEOUT_S)
            latencies.append((time.perf_counter() - started) * 1000)
            codes[ack.code.value] += 1

    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(MLLPClient("127.0.0.1", port)) for _ in per_connection
        ]
        cpu_endpoint = tree_usage(endpoint_pid).cpu_s if endpoint_pid else 0.0
        cpu_self = own_cpu_s()
        started = time.perf_counter()
        await asyncio.gather(*(one(c, m) for c, m in zip(clients, per_connection, strict=True)))
        elapsed = time.perf_counter() - started
        return Sent(
            codes,
            latencies,
            elapsed,
            own_cpu_s() - cpu_self,
            (tree_usage(endpoint_pid).cpu_s - cpu_endpoint) if endpoint_pid else 0.0,
        )


def split(messages: Sequence[str], parts: int) -> list[list[str]]:
    return [list(messages[i::parts]) for i in range(parts)]


@dataclass
class Processed:
    wait_s: float
    """From the last ACK until the last row was processed."""
    states: dict[str, int]
    endpoint_cpu_s: float
    """Of the wait."""


async def wait_processed(
    database: Path, prefix: str, expected: int, pid: int, limit_s: float
) -> Processed:
    """Poll the record store until ``expected`` rows whose MSH-10 starts with ``prefix`` are
    processed (state no longer ``received``), or ``limit_s`` passed."""
    cpu_endpoint = tree_usage(pid).cpu_s
    started = time.perf_counter()
    deadline = started + limit_s
    query = "SELECT state, count(*) FROM hl7_inbound WHERE control_id LIKE ? GROUP BY state"
    while True:
        with contextlib.closing(sqlite3.connect(database)) as db:
            states = dict(db.execute(query, (f"{prefix}%",)).fetchall())
        done = sum(n for state, n in states.items() if state != "received")
        if done >= expected or time.perf_counter() > deadline:
            break
        await asyncio.sleep(0.02)
    return Processed(time.perf_counter() - started, states, tree_usage(pid).cpu_s - cpu_endpoint)


def result_of(sent: Sent, messages: int, what: str) -> dict[str, Any]:
    latencies = sorted(sent.latencies_ms)
    return {
        "what": what,
        "messages": messages,
        "acks": dict(sent.codes),
        "accepted": sent.codes["AA"] + sent.codes["CA"],
        "elapsed_s": round(sent.elapsed_s, 3),
        "msgs_per_s": round(messages / sent.elapsed_s, 1),
        "latency_ms": {
            "p50": round(statistics.median(latencies), 2),
            "p99": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2),
        },
        "endpoint_cpu_s": round(sent.endpoint_cpu_s, 2),
        "endpoint_cpu_ms_per_msg": round(sent.endpoint_cpu_s * 1000 / messages, 3),
        "bench_cpu_s": round(sent.bench_cpu_s, 2),
    }


async def inbound(
    work: Path, connections: int, ack_messages: int, full_messages: int, process_limit_s: float
) -> dict[str, Any]:
    database = work / "inbound.db"
    url = f"sqlite+aiosqlite:///{database}"
    async with tryggheim_server(
        work, "hl7-listen", "hl7", "listen", "--port", "0", "--database", url
    ) as (pid, port):
        # Not timed: register the patients (one per connection), warm the endpoint up.
        registered = await send_all(
            port, [[adt("A01", p, f"REG{p}", "Kari")] for p in range(connections)]
        )
        warmup = [[original_mode(oru(p, 0, f"WARM{p}"))] for p in range(connections)]
        await send_all(port, warmup)

        updates = [
            adt("A08", n % connections, f"A08-{n:07d}", f"Kari {n}", accept=True)
            for n in range(ack_messages)
        ]
        # Message n goes over connection n % connections: each connection has its patient.
        ack = await send_all(port, split(updates, connections), pid)
        processed = await wait_processed(database, "A08-", ack_messages, pid, process_limit_s)
        readings = [
            original_mode(oru(n % connections, 1 + n // connections, f"ORU-{n:07d}"))
            for n in range(full_messages)
        ]
        full = await send_all(port, split(readings, connections), pid)

    with contextlib.closing(sqlite3.connect(database)) as db:
        stored = db.execute("SELECT count(*) FROM hl7_inbound").fetchone()[0]
        observations = db.execute("SELECT count(*) FROM observations").fetchone()[0]
    expected_rows = 2 * connections + ack_messages + full_messages
    checks = {
        "registered": registered.codes["AA"] == connections,
        "stored_raw": stored == expected_rows,
        "processed": processed.states == {"accepted": ack_messages},
        "observations": observations == len(SESSION) * (connections + full_messages),
    }
    processed_s = ack.elapsed_s + processed.wait_s
    processed_cpu_s = ack.endpoint_cpu_s + processed.endpoint_cpu_s
    return {
        "connections": connections,
        "ack": result_of(
            ack,
            ack_messages,
            "ADT^A08 update of a known patient, MSH-15 AL / MSH-16 NE: stored, answered CA, "
            "processed afterwards",
        )
        | {
            "processed": sum(n for state, n in processed.states.items() if state != "received"),
            "processed_states": processed.states,
            "processed_s": round(processed_s, 3),
            "processed_msgs_per_s": round(ack_messages / processed_s, 1),
            "processed_cpu_s": round(processed_cpu_s, 2),
            "processed_cpu_ms_per_msg": round(processed_cpu_s * 1000 / ack_messages, 3),
        },
        "full": result_of(
            full, full_messages, "ORU^R01, 4 observations, known patient, original mode (AA)"
        ),
        "stored_raw": stored,
        "observations_stored": observations,
        "ok": all(checks.values())
        and ack.codes["CA"] == ack_messages
        and full.codes["AA"] == full_messages,
        "checks": checks,
    }


# --- outbound: build + send + ACK ---


async def outbound(work: Path, messages: int) -> dict[str, Any]:
    async with (
        tryggheim_server(work, "gp-peer", "hl7", "gp-peer", "--port", "0") as (pid, port),
        MLLPClient("127.0.0.1", port) as client,
    ):
        await client.send(oru(0, 0, "WARMUP"), timeout=ACK_TIMEOUT_S)
        codes: Counter[str] = Counter()
        build_s = 0.0
        cpu_gp = tree_usage(pid).cpu_s
        cpu_self = own_cpu_s()
        started = time.perf_counter()
        for n in range(messages):
            built = time.perf_counter()
            text = oru(n % 50, 1 + n, f"OUT-{n:07d}")
            build_s += time.perf_counter() - built
            codes[(await client.send(text, timeout=ACK_TIMEOUT_S)).code.value] += 1
        elapsed = time.perf_counter() - started
        cpu_self = own_cpu_s() - cpu_self
        cpu_gp = tree_usage(pid).cpu_s - cpu_gp
    return {
        "messages": messages,
        "acks": dict(codes),
        "elapsed_s": round(elapsed, 3),
        "msgs_per_s": round(messages / elapsed, 1),
        "build_us_per_msg": round(build_s * 1e6 / messages, 1),
        "sender_cpu_s": round(cpu_self, 2),
        "gp_cpu_s": round(cpu_gp, 2),
        "ok": codes["AA"] + codes["CA"] == messages,
    }


# --- backlog after a GP outage ---


async def fill_queue(store: RecordStore, gp_port: int, backlog: int, patients: int) -> None:
    """``backlog`` sessions for ``patients`` patients, committed as the ingest does, ingested an
    hour ago (so they are settled)."""
    await provision(
        store,
        Registry(
            patients=[
                PatientEntry(
                    national_id=national_id(p),
                    family_name="Ødegård",
                    given_name=f"Kari {p}",
                    gp_name="Fjellsiden lk",
                    gp_hl7_host="127.0.0.1",
                    gp_hl7_port=gp_port,
                    devices=[
                        DeviceEntry(
                            device_id=cuff(p), gateway_id=f"gw-{p:04d}", kind="blood_pressure"
                        )
                    ],
                )
                for p in range(patients)
            ]
        ),
    )
    ingested = datetime.now(UTC) - timedelta(hours=1)
    batches: list[ObservationBatch] = []
    for n in range(backlog):
        p, k = n % patients, n // patients
        at = FIRST_SESSION + timedelta(minutes=k)
        gateway = f"gw-{p:04d}"
        batches.append(
            ObservationBatch(gateway, tuple(session(gateway, cuff(p), at, k, 1 + k * len(SESSION))))
        )
        if len(batches) == 500 or n == backlog - 1:
            await store.commit_batches(batches, ingested)
            batches = []


async def backlog_via_queue(
    work: Path,
    backlog: int,
    patients: int,
    down_s: float,
    retry_after_s: float,
    drain_limit_s: float,
) -> dict[str, Any]:
    # Imported here: ``--backlog-via client`` must work while the queue's code is being changed.
    from gateway.hl7.outbound.service import Hl7Outbound

    store = RecordStore(f"sqlite+aiosqlite:///{work / 'backlog.db'}")
    await store.migrate()
    gp_port = find_free_port()
    settings = Hl7Settings(retry_after_s=retry_after_s, ack_timeout_s=10.0)
    queue = Hl7Outbound(settings, store)
    try:
        started = time.perf_counter()
        await fill_queue(store, gp_port, backlog, patients)
        committed_s = time.perf_counter() - started
        started = time.perf_counter()
        composed = await queue.compose()
        compose_s = time.perf_counter() - started

        runner = asyncio.create_task(queue.run(), name="hl7-outbound")
        try:
            await asyncio.sleep(down_s)  # the GP is down: attempts fail, backoff grows
            attempts_while_down = queue.stats.sent
            async with tryggheim_server(
                work, "gp-backlog", "hl7", "gp-peer", "--port", str(gp_port)
            ) as (gp_pid, _):
                cpu_self = own_cpu_s()
                cpu_gp = tree_usage(gp_pid).cpu_s
                up = time.perf_counter()
                first_ack: float | None = None
                deadline = up + drain_limit_s
                while queue.stats.acked < composed and time.perf_counter() < deadline:
                    if first_ack is None and queue.stats.acked:
                        first_ack = time.perf_counter()
                    await asyncio.sleep(0.05)
                drained = time.perf_counter()
                acked = queue.stats.acked
                cpu_self = own_cpu_s() - cpu_self
                cpu_gp = tree_usage(gp_pid).cpu_s - cpu_gp
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
    finally:
        await store.close()
    with contextlib.closing(sqlite3.connect(work / "backlog.db")) as db:
        states = dict(db.execute("SELECT state, count(*) FROM hl7_messages GROUP BY state"))
    first = first_ack if first_ack is not None else drained
    complete = acked == composed
    return {
        "via": "gateway.hl7.outbound.service.Hl7Outbound (compose, run)",
        "messages": composed,
        "patients": patients,
        "commit_s": round(committed_s, 2),
        "compose_s": round(compose_s, 2),
        "down_s": down_s,
        "attempts_while_down": attempts_while_down,
        "retry_after_s": retry_after_s,
        "complete": complete,
        "acked": acked,
        "drain_s": round(drained - up, 2) if complete else None,
        "first_ack_after_s": round(first - up, 2),
        "send_s": round(drained - first, 2),
        "send_msgs_per_s": round(acked / max(drained - first, 1e-9), 1),
        "queue_cpu_s": round(cpu_self, 2),
        "gp_cpu_s": round(cpu_gp, 2),
        "states": states,
        "ok": complete and composed == backlog and states == {"acked": backlog},
    }


async def backlog_via_client(
    work: Path, backlog: int, patients: int, down_s: float
) -> dict[str, Any]:
    """Fallback: prebuilt messages drained by a bare MLLPClient (no record store)."""
    messages = [oru(n % patients, 1 + n // patients, f"BL-{n:07d}") for n in range(backlog)]
    gp_port = find_free_port()
    await asyncio.sleep(down_s)
    async with tryggheim_server(work, "gp-backlog", "hl7", "gp-peer", "--port", str(gp_port)) as (
        gp_pid,
        _,
    ):
        up = time.perf_counter()
        sent = await send_all(gp_port, [messages], gp_pid)
        drain_s = time.perf_counter() - up
    accepted = sent.codes["AA"] + sent.codes["CA"]
    return {
        "via": "hl7.mllp.MLLPClient (prebuilt messages; the durable queue is not used)",
        "messages": backlog,
        "drain_s": round(drain_s, 2),
        "send_msgs_per_s": round(backlog / sent.elapsed_s, 1),
        "gp_cpu_s": round(sent.endpoint_cpu_s, 2),
        "acks": dict(sent.codes),
        "ok": accepted == backlog,
    }


# --- baseline: parse rates ---


def rate(parse: Callable[[], object], seconds: float) -> dict[str, float]:
    parse()  # warm caches (hl7apy loads its structure definitions on first use)
    count = 0
    started = time.perf_counter()
    deadline = started + seconds
    while (now := time.perf_counter()) < deadline or count == 0:
        parse()
        count += 1
    elapsed = now - started
    return {
        "messages": count,
        "elapsed_s": round(elapsed, 3),
        "msgs_per_s": round(count / elapsed, 1),
    }


def baseline(seconds: float) -> dict[str, Any]:
    text = oru(1, 1, "BASELINE")
    raw = text.encode()
    return {
        "message": "ORU^R01 v2.6 as the platform sends it (4 observations, 9 segments)",
        "hl7apy_parse_message": rate(lambda: hl7apy_parse_message(text), seconds),
        "ours_decode_message": rate(lambda: decode_message(raw), seconds),
        "ours_decode_inbound": rate(lambda: decode_inbound(decode_message(raw)), seconds),
    }


# --- main ---


async def main(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="tryggheim-bench-hl7-"))
    try:
        result: dict[str, Any] = {
            "bench": "hl7",
            "inbound_ack_goal": INBOUND_ACK_GOAL,
            "backlog_goal_s": BACKLOG_GOAL_S,
        }
        parts = args.parts
        if "baseline" in parts:
            result["baseline"] = baseline(args.baseline_s)
        if "inbound" in parts:
            result["inbound"] = await inbound(
                work, args.connections, args.ack_messages, args.full_messages, args.process_limit_s
            )
            # The store-and-ACK rate at other numbers of concurrent senders: a fresh endpoint
            # each (the full part there is a single message).
            sweep = {}
            for connections in args.ack_sweep:
                run = work / f"ack-{connections}"
                run.mkdir()
                alone = await inbound(run, connections, args.ack_messages, 1, args.process_limit_s)
                sweep[str(connections)] = alone["ack"] | {"ok": alone["ok"]}
            result["inbound_ack_by_connections"] = sweep
        if "outbound" in parts:
            result["outbound"] = await outbound(work, args.outbound_messages)
        if "backlog" in parts and args.backlog_via == "queue":
            result["backlog"] = await backlog_via_queue(
                work,
                args.backlog,
                args.patients,
                args.down_s,
                args.retry_after_s,
                args.drain_limit_s,
            )
        elif "backlog" in parts:
            result["backlog"] = await backlog_via_client(
                work, args.backlog, args.patients, args.down_s
            )
        goals = {}
        if "inbound" in result:
            ack_rate = result["inbound"]["ack"]["msgs_per_s"]
            goals["inbound_ack_msgs_per_s"] = ack_rate >= INBOUND_ACK_GOAL
            goals["inbound_ack_msgs_per_s_by_connections"] = {
                connections: run["msgs_per_s"] >= INBOUND_ACK_GOAL
                for connections, run in result["inbound_ack_by_connections"].items()
            }
        if "backlog" in result:
            drain_s = result["backlog"]["drain_s"]
            goals["backlog_drain_s"] = drain_s is not None and drain_s <= BACKLOG_GOAL_S
        result["goals_met"] = goals
        result["ok"] = all(
            result[part]["ok"] for part in ("inbound", "outbound", "backlog") if part in result
        ) and all(run["ok"] for run in result.get("inbound_ack_by_connections", {}).values())
        return result
    finally:
        if args.keep:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument(
        "--ack-sweep",
        type=lambda text: [int(n) for n in text.split(",") if n],
        default=[1, 8, 16],
        help="also measure the store-and-ACK path with these numbers of connections "
        "(comma-separated; empty: none)",
    )
    parser.add_argument("--ack-messages", type=int, default=4000, help="ADT^A08 sent inbound")
    parser.add_argument("--full-messages", type=int, default=1000, help="ORU^R01 sent inbound")
    parser.add_argument("--outbound-messages", type=int, default=4000)
    parser.add_argument("--backlog", type=int, default=10000)
    parser.add_argument("--patients", type=int, default=50, help="whose sessions form the backlog")
    parser.add_argument("--down-s", type=float, default=3.0, help="GP down this long")
    parser.add_argument("--retry-after-s", type=float, default=1.0)
    parser.add_argument(
        "--drain-limit-s",
        type=float,
        default=900.0,
        help="stop the backlog drain after this long (reported as incomplete)",
    )
    parser.add_argument(
        "--process-limit-s",
        type=float,
        default=300.0,
        help="stop waiting for the inbound ack messages to be processed after this long",
    )
    parser.add_argument("--baseline-s", type=float, default=2.0, help="per parser")
    parser.add_argument("--backlog-via", choices=("queue", "client"), default="queue")
    parser.add_argument(
        "--parts",
        type=lambda text: set(text.split(",")),
        default=set(PARTS),
        help=f"comma-separated, of {','.join(PARTS)} (default: all)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    if (
        min(args.connections, args.ack_messages, args.full_messages, args.patients, *args.ack_sweep)
        < 1
    ):
        parser.error("counts must be at least 1")
    if min(args.outbound_messages, args.backlog) < 1:
        parser.error("counts must be at least 1")
    if not args.parts <= set(PARTS):
        parser.error(f"--parts: unknown {sorted(args.parts - set(PARTS))}")
    return args


if __name__ == "__main__":
    outcome = asyncio.run(main(parse_args()))
    print(json.dumps(outcome, ensure_ascii=False))
    sys.exit(0 if outcome["ok"] else 1)
