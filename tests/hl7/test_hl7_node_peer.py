"""HL7 v2 over MLLP with an implementation that is not ours (issue 6, part 7).

The peer is the npm packages node-hl7-server and node-hl7-client, pinned in
tests/hl7/node_peer/package.json (+ package-lock.json) and installed on first use into
``~/.cache/tryggheim-tests/hl7-node-peer`` (``$XDG_CACHE_HOME`` is honoured); once it is there
no network is needed. tests/hl7/node_peer/server.js and client.js are the two small programs
the tests run under node.

- our :class:`~hl7.mllp.MLLPClient` sends an ORU^R01 (:func:`hl7.oru.build_oru_r01`) and an ADT
  to node-hl7-server, over one connection: both AA, and node received our frames byte for byte;
- node-hl7-client sends an ADT^A01 and an ORU^R01 that its own builder made (MSH-7, MSH-10 its
  choice) to the platform's endpoint (:func:`gateway.hl7.inbound.service.serve_hl7`): both AA, the
  patient Ødegård is registered, the observations stored, and ``hl7_inbound.raw`` holds exactly
  what node sent;
- tests/hl7/captured/ holds what the peer put on the wire (its frames and its ACKs, framing
  included). Tests replay them to our endpoint and parse them with :func:`hl7.ack.parse_ack`
  *without* node, and the live tests check that the pinned peer still writes the same bytes
  (MSH-7 and MSH-10, which change every run, aside). ``TRYGGHEIM_HL7_RECAPTURE=1`` makes the
  live tests write the files anew.

A TCP proxy between the two sides records the bytes each way, so what is compared is what
crossed the wire, not what either library says it sent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from npm_cache import cache_dir, npm_installed
from proxy import LoopbackProxy
from servers import require_binary
from sqlalchemy import select

from gateway.hl7.inbound.service import serve_hl7
from gateway.hl7.outbound.compose import measurement_session
from gateway.records.models import Hl7Inbound, ObservationRow, Patient
from gateway.records.store import RecordStore
from gateway.settings import Hl7ListenSettings
from hl7.ack import AckCode, parse_ack
from hl7.mllp import END_BLOCK, START_BLOCK, MLLPClient, MLLPDecoder, MLLPServer, encode_frame
from hl7.oru import PatientRef, build_oru_r01
from tryggheim.codes import DeviceProfile
from tryggheim.domain import Observation

HERE = Path(__file__).resolve().parent
PEER_SOURCE = HERE / "node_peer"
CAPTURED = HERE / "captured"
RECAPTURE = os.environ.get("TRYGGHEIM_HL7_RECAPTURE") == "1"
TIMEOUT_S = 15.0

KARI = PatientRef("15076500565", "Ødegård", "Kari", date(1965, 7, 15))
CUFF = "C0:10:00:00:00:01"
OSLO_WINTER = timezone(timedelta(hours=1))
MEASURED = datetime(2025, 3, 1, 8, 15, tzinfo=OSLO_WINTER)
# What node-hl7-client's builder is asked to send (client.js builds the message around it).
NODE_PATIENT = {
    "national_id": KARI.national_id,
    "family": KARI.family_name,
    "given": KARI.given_name,
    "birth_date": "19650715",
    "sex": "F",
}
MMHG = "266016^MDC_DIM_MMHG^MDC"
NODE_OBSERVATIONS = [
    {"code": "150021^MDC_PRESS_BLD_NONINV_SYS^MDC", "value": "120", "unit": MMHG},
    {"code": "150022^MDC_PRESS_BLD_NONINV_DIA^MDC", "value": "80", "unit": MMHG},
    {"code": "150023^MDC_PRESS_BLD_NONINV_MEAN^MDC", "value": "93", "unit": MMHG},
    {
        "code": "149546^MDC_PULS_RATE_NON_INV^MDC",
        "value": "64",
        "unit": "264864^MDC_DIM_BEAT_PER_MIN^MDC",
    },
]
NODE_ADT = {"type": "ADT^A01", "patient": NODE_PATIENT}
NODE_ORU = {
    "type": "ORU^R01",
    "patient": NODE_PATIENT,
    "device": "C01000FFFE000001",
    "observations": [{**obs, "time": "20250301081500+0100"} for obs in NODE_OBSERVATIONS],
}
# Our ADT to the node server: UTF-8 with a Norwegian name, each segment ended by CR.
OUR_ADT = (
    "MSH|^~\\&|TRYGGHEIM|Bergen kommune|EPJ|Fjellsiden lk|20250301120000+0100||ADT^A08^ADT_A01|"
    "TRYADT0001|P|2.5|||||NOR|UNICODE UTF-8\r"
    "EVN|A08|20250301115930+0100\r"
    "PID|1||15076500565^^^NOR^NNNOR||Ødegård^Kari||19650715|F\r"
)


# --- the peer: installed once, run as child processes ---


@dataclass(frozen=True)
class NodePeer:
    node: str
    modules: Path
    """The ``node_modules`` directory the scripts load the packages from."""
    versions: dict[str, str]

    def env(self) -> dict[str, str]:
        return {**os.environ, "NODE_PATH": str(self.modules)}


@pytest.fixture(scope="session")
def node_peer() -> NodePeer:
    node = require_binary("node")
    modules = npm_installed(PEER_SOURCE, cache_dir("hl7-node-peer"))
    versions = {
        name: json.loads((modules / name / "package.json").read_text())["version"]
        for name in ("node-hl7-client", "node-hl7-server")
    }
    return NodePeer(node, modules, versions)


@dataclass
class NodeServer:
    """server.js running: its port, and the events it printed so far."""

    process: asyncio.subprocess.Process
    port: int
    events: list[dict[str, Any]] = field(default_factory=list)
    updated: asyncio.Event = field(default_factory=asyncio.Event)

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(TIMEOUT_S):
            while not condition():
                self.updated.clear()
                await self.updated.wait()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]

    def wire(self, connection: int) -> bytes:
        return b"".join(
            _b64(e["data_b64"]) for e in self.of("wire") if e["connection"] == connection
        )


def _b64(text: str) -> bytes:
    return base64.b64decode(text)


@pytest.fixture
async def node_server(node_peer: NodePeer) -> AsyncIterator[NodeServer]:
    process = await asyncio.create_subprocess_exec(
        node_peer.node,
        str(PEER_SOURCE / "server.js"),
        "--port",
        "0",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=node_peer.env(),
    )
    assert process.stdout is not None and process.stdin is not None
    stdout = process.stdout

    async def follow(server: NodeServer) -> None:
        while line := await stdout.readline():
            server.events.append(json.loads(line))
            server.updated.set()

    reader: asyncio.Task[None] | None = None
    try:
        first = json.loads(await asyncio.wait_for(stdout.readline(), TIMEOUT_S))
        assert first["event"] == "listening", first
        server = NodeServer(process, first["port"])
        reader = asyncio.create_task(follow(server))
        yield server
        process.stdin.close()  # server.js stops when its stdin ends
        await asyncio.wait_for(process.wait(), TIMEOUT_S)
        await asyncio.wait_for(reader, TIMEOUT_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        if reader is not None and not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def run_node_client(node_peer: NodePeer, port: int, *messages: str) -> list[dict[str, Any]]:
    process = await asyncio.create_subprocess_exec(
        node_peer.node,
        str(PEER_SOURCE / "client.js"),
        "--port",
        str(port),
        *messages,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=node_peer.env(),
    )
    out, err = await asyncio.wait_for(process.communicate(), 2 * TIMEOUT_S)
    assert process.returncode == 0, (out.decode(), err.decode())
    return [json.loads(line) for line in out.decode().splitlines()]


# --- a recording TCP proxy: what crossed the wire, each way ---


class RecordingProxy(LoopbackProxy):
    """Forwards each accepted connection to ``127.0.0.1:target_port`` and keeps every byte:
    ``upstream[n]`` from the n-th client, ``downstream[n]`` to it (recorded before forwarding)."""

    def __init__(self, target_port: int) -> None:
        super().__init__("127.0.0.1", target_port)
        self.upstream: list[bytearray] = []
        self.downstream: list[bytearray] = []

    def _opened(self, connection: int) -> None:
        self.upstream.append(bytearray())
        self.downstream.append(bytearray())

    def _passes(self, connection: int, upstream: bool, data: bytes) -> bool:
        (self.upstream if upstream else self.downstream)[connection] += data
        return True


def frames(wire: bytes) -> list[bytes]:
    """The MLLP frames of a recorded byte stream, framing bytes included; fails on any byte
    outside a frame (a peer that framed wrongly)."""
    result: list[bytes] = []
    rest = wire
    while rest:
        assert rest[0] == START_BLOCK, f"bytes outside a frame: {rest[:40]!r}"
        end = rest.find(bytes((END_BLOCK, 0x0D)))
        assert end > 0, f"unfinished frame: {rest[:40]!r}"
        result.append(rest[: end + 2])
        rest = rest[end + 2 :]
    return result


def content(frame: bytes) -> bytes:
    (message,) = MLLPDecoder().feed(frame)
    return message


def normalised(frame: bytes) -> bytes:
    """``frame`` with MSH-7 (time) and MSH-10 (control id) blanked: what is left is the same
    every time a pinned peer writes the same message."""
    head, sep, rest = frame.partition(b"\r")
    fields = head.split(b"|")
    for number in (7, 10):  # MSH-1 is the separator itself: MSH-n is fields[n - 1]
        fields[number - 1] = b"*"
    return b"|".join(fields) + sep + rest


def msh(frame_or_text: bytes, number: int) -> str:
    head = content(frame_or_text) if frame_or_text[:1] == bytes((START_BLOCK,)) else frame_or_text
    return head.split(b"\r", 1)[0].split(b"|")[number - 1].decode()


def check_capture(name: str, frame: bytes) -> None:
    """Write ``frame`` as tests/hl7/captured/NAME (recapture mode), else check that the
    committed capture is what the peer writes today (MSH-7 and MSH-10 aside)."""
    path = CAPTURED / name
    if RECAPTURE:
        path.write_bytes(frame)
    assert path.exists(), f"{path} is missing: run with TRYGGHEIM_HL7_RECAPTURE=1 to capture it"
    assert normalised(frame) == normalised(path.read_bytes()), name


# --- our endpoint ---


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[RecordStore]:
    store = RecordStore(f"sqlite+aiosqlite:///{tmp_path / 'records.db'}")
    await store.migrate()
    yield store
    await store.close()


@contextlib.asynccontextmanager
async def endpoint(store: RecordStore) -> AsyncIterator[int]:
    listening: asyncio.Future[MLLPServer] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve_hl7(store, Hl7ListenSettings(port=0), started=listening.set_result)
    )
    try:
        server = await asyncio.wait_for(listening, TIMEOUT_S)
        yield server.port
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def inbound_rows(store: RecordStore) -> list[Hl7Inbound]:
    async with store.session() as s:
        return list(await s.scalars(select(Hl7Inbound).order_by(Hl7Inbound.id)))


async def patient_and_values(store: RecordStore) -> tuple[Patient, list[str]]:
    async with store.session() as s:
        patient = await s.scalar(select(Patient).where(Patient.national_id == KARI.national_id))
        assert patient is not None, "the ADT did not register the patient"
        values = list(
            await s.scalars(
                select(ObservationRow.value)
                .where(ObservationRow.patient_id == patient.id)
                .order_by(ObservationRow.seq)
            )
        )
    return patient, values


def our_oru(control_id: str) -> str:
    def obs(code: str, value: str, unit: str) -> Observation:
        return Observation("gw-1", CUFF, "ble:2A35", code, Decimal(value), unit, MEASURED)

    device, metrics = measurement_session(
        [
            obs("MDC_PRESS_BLD_NONINV_SYS", "120", "mm[Hg]"),
            obs("MDC_PRESS_BLD_NONINV_DIA", "80", "mm[Hg]"),
            obs("MDC_PRESS_BLD_NONINV_MEAN", "93", "mm[Hg]"),
            obs("MDC_PULS_RATE_NON_INV", "64", "{beat}/min"),
        ],
        CUFF,
        DeviceProfile.BLOOD_PRESSURE,
    )
    return build_oru_r01(
        patient=KARI,
        observations=metrics,
        device=device,
        sending_app="TRYGGHEIM",
        sending_facility="Bergen kommune",
        receiving_app="EPJ",
        receiving_facility="Fjellsiden lk",
        control_id=control_id,
        now=MEASURED + timedelta(minutes=1),
    )


# --- live: both ways with node ---


def test_the_pinned_peer_is_what_runs(node_peer: NodePeer) -> None:
    pinned = json.loads((PEER_SOURCE / "package.json").read_text())["dependencies"]
    assert node_peer.versions == pinned


async def test_our_client_to_node_server(node_server: NodeServer) -> None:
    oru = our_oru("TRYORU0001")
    async with (
        RecordingProxy(node_server.port) as proxy,
        MLLPClient("127.0.0.1", proxy.port) as client,
    ):
        oru_ack = await client.send(oru, timeout=TIMEOUT_S)
        adt_ack = await client.send(OUR_ADT, timeout=TIMEOUT_S)
    # The peer answers AA (it has no enhanced mode: our ORU's MSH-15 AL would get CA from a
    # receiver that has), names our MSH-10 in MSA-2 and uses the literal "ACK" as its MSH-10.
    assert (oru_ack.code, oru_ack.acked_control_id, oru_ack.control_id) == (
        AckCode.AA,
        "TRYORU0001",
        "ACK",
    )
    assert (adt_ack.code, adt_ack.acked_control_id) == (AckCode.AA, "TRYADT0001")

    # Node received our frames byte for byte (its socket, as node-hl7-server read it) ...
    ours = encode_frame(oru) + encode_frame(OUR_ADT)
    assert bytes(proxy.upstream[0]) == ours
    # (node prints what it got after writing the ACK: wait for its report of the last one)
    await node_server.until(
        lambda: any(m["control_id"] == "TRYADT0001" for m in node_server.of("message"))
    )
    assert node_server.wire(1) == ours
    # ... and handed the ORU to its handler as we wrote it, our final segment CR included;
    # its parsed Message prints the segments without that last CR.
    first = node_server.of("message")[0]
    assert first["raw"].encode() == oru.encode()
    assert first["parsed"] == oru.rstrip("\r")
    assert {m["parsed"] for m in node_server.of("message")} == {
        oru.rstrip("\r"),
        OUR_ADT.rstrip("\r"),
    }

    # What node answered on the wire. node-hl7-server 2.5.0 never empties its per-connection
    # buffer: the second message on a connection makes it handle (and ACK) the first again.
    # Our client skips an ACK that names another MSH-10 (logged), so both sends still got
    # their own.
    acks = frames(bytes(proxy.downstream[0]))
    assert [(a.code, a.acked_control_id) for a in map(parse_ack, map(content, acks))] == [
        (AckCode.AA, "TRYORU0001"),
        (AckCode.AA, "TRYORU0001"),
        (AckCode.AA, "TRYADT0001"),
    ]
    check_capture("node_server_ack_oru_r01.mllp", acks[0])
    check_capture("node_server_ack_adt_a08.mllp", acks[2])


async def test_node_client_to_our_endpoint(node_peer: NodePeer, sqlite_store: RecordStore) -> None:
    async with endpoint(sqlite_store) as port, RecordingProxy(port) as proxy:
        events = await run_node_client(
            node_peer,
            proxy.port,
            "build:" + json.dumps(NODE_ADT),
            "build:" + json.dumps(NODE_ORU),
        )
    sent = [e["message"] for e in events if e["event"] == "sent"]
    acks = [parse_ack(e["ack"]) for e in events if e["event"] == "ack"]
    assert events[-1] == {"event": "done"}
    assert len(sent) == len(acks) == 2
    control_ids = [msh(text.encode(), 10) for text in sent]
    # node's MSH has no MSH-15/16: original acknowledgement mode, so AA (not CA).
    assert [(a.code, a.acked_control_id) for a in acks] == [
        (AckCode.AA, control_ids[0]),
        (AckCode.AA, control_ids[1]),
    ]

    # On the wire: exactly one standard frame per message, the message text as node printed
    # it, UTF-8, segments separated by CR with none after the last.
    # node-hl7-client 3.2.0 connects once on createConnection() and, when sendMessage() comes
    # before that connection is up (as in its README), once more, and sends on the second; the
    # first stays open and silent until the client exits. Our endpoint takes both.
    (used,) = [n for n, data in enumerate(proxy.upstream) if data]
    assert not any(proxy.upstream[n] for n in range(len(proxy.upstream)) if n != used)
    wire = frames(bytes(proxy.upstream[used]))
    assert wire == [encode_frame(text) for text in sent]
    assert all(not content(frame).endswith(b"\r") for frame in wire)
    assert "Ødegård".encode() in wire[0]

    # Stored raw before it was answered: exactly the bytes node framed.
    rows = await inbound_rows(sqlite_store)
    assert [row.raw for row in rows] == [content(frame) for frame in wire]
    assert [(row.control_id, row.state, row.ack_code) for row in rows] == [
        (control_ids[0], "accepted", "AA"),
        (control_ids[1], "accepted", "AA"),
    ]
    patient, values = await patient_and_values(sqlite_store)
    assert (patient.family_name, patient.given_name, patient.sex) == ("Ødegård", "Kari", "F")
    assert values == ["120", "80", "93", "64"]

    check_capture("node_client_adt_a01.mllp", wire[0])
    check_capture("node_client_oru_r01.mllp", wire[1])


# --- captured: what the peer wrote, replayed without node ---


def captured(name: str) -> bytes:
    return (CAPTURED / name).read_bytes()


async def replay(port: int, frame: bytes) -> bytes:
    """Write a captured frame as it is, byte for byte; the raw reply frame."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(frame)
        await writer.drain()
        received = b""
        async with asyncio.timeout(TIMEOUT_S):
            while not received.endswith(bytes((END_BLOCK, 0x0D))):
                chunk = await reader.read(65536)
                assert chunk, "the endpoint closed the connection without an answer"
                received += chunk
        return received
    finally:
        writer.close()


def test_captured_node_client_messages_show_its_style() -> None:
    adt, oru = captured("node_client_adt_a01.mllp"), captured("node_client_oru_r01.mllp")
    for frame in (adt, oru):
        assert frames(frame) == [frame]  # one standard frame: 0x0B ... 0x1C 0x0D
        message = content(frame)
        assert b"\n" not in message and not message.endswith(b"\r")
        assert len(msh(frame, 10)) == 20 and msh(frame, 10).isalnum()  # random, per message
        assert len(msh(frame, 7)) == 14 and msh(frame, 7).isdigit()  # local time, no offset
        assert msh(frame, 18) == "UNICODE UTF-8"
    assert (msh(adt, 9), msh(adt, 12)) == ("ADT^A01^ADT_A01", "2.5")
    assert (msh(oru, 9), msh(oru, 12)) == ("ORU^R01^ORU_R01", "2.6")
    assert "Ødegård^Kari".encode() in adt


async def test_captured_node_client_messages_replayed_to_our_endpoint(
    store: RecordStore,
) -> None:
    adt, oru = captured("node_client_adt_a01.mllp"), captured("node_client_oru_r01.mllp")
    async with endpoint(store) as port:
        answers = [parse_ack(content(await replay(port, frame))) for frame in (adt, oru)]
        # A resend of the captured bytes gets the stored ACK, and nothing is processed twice.
        again = parse_ack(content(await replay(port, oru)))
    assert [(a.code, a.acked_control_id) for a in answers] == [
        (AckCode.AA, msh(adt, 10)),
        (AckCode.AA, msh(oru, 10)),
    ]
    assert again == answers[1]
    rows = await inbound_rows(store)
    assert [row.raw for row in rows] == [content(adt), content(oru)]
    patient, values = await patient_and_values(store)
    assert (patient.family_name, patient.given_name) == ("Ødegård", "Kari")
    assert values == ["120", "80", "93", "64"]


@pytest.mark.parametrize(
    ("name", "acked", "trigger"),
    [
        ("node_server_ack_oru_r01.mllp", "TRYORU0001", "R01"),
        ("node_server_ack_adt_a08.mllp", "TRYADT0001", "A08"),
    ],
)
def test_captured_node_server_ack_is_read_by_parse_ack(name: str, acked: str, trigger: str) -> None:
    frame = captured(name)
    assert frames(frame) == [frame]
    ack = parse_ack(content(frame))
    assert (ack.code, ack.acked_control_id, ack.control_id, ack.text, ack.errors) == (
        AckCode.AA,
        acked,
        "ACK",
        "",
        (),
    )
    assert ack.code.accepted
    # node-hl7-server's ACK: MSH-9 ACK^<trigger>^ACK_<trigger>, MSH-10 the literal "ACK",
    # MSH-3..6 the sender's swapped, no trailing CR.
    assert msh(frame, 9) == f"ACK^{trigger}^ACK_{trigger}"
    assert (msh(frame, 3), msh(frame, 5)) == ("EPJ", "TRYGGHEIM")
    assert not content(frame).endswith(b"\r")
