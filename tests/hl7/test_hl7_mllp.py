"""hl7.mllp framing (pure, fuzzed) and client/server/GP endpoint over real loopback TCP/TLS:
many messages per connection, 1 MB messages, junk, oversize frames, garbage, timeouts, TLS."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import pytest
from chain import until
from hypothesis import given
from hypothesis import strategies as st
from tlsutil import make_test_ca

from hl7.ack import Ack, AckCode, build_ack, encode_ack, parse_ack
from hl7.errors import FrameTooLargeError, MLLPTimeoutError
from hl7.gp_peer import GPEndpoint
from hl7.mllp import MLLPClient, MLLPDecoder, MLLPServer, ReceivedMessage, encode_frame
from hl7.oru import CodedValue, DeviceRef, NumericObservation, PatientRef, build_oru_r01
from tryggheim.errors import ConnectionLost

SB, EB = b"\x0b", b"\x1c\x0d"

# ---------------------------------------------------------------- decoder (pure)


def test_decoder_frames_garbage_and_leniency() -> None:
    decoder = MLLPDecoder()
    data = b"\r\n" + SB + b"one" + EB + b"xx" + SB + b"two\x1c" + b"\n" + SB + b"part" + SB
    assert decoder.feed(data + b"three" + EB) == [b"one", b"two", b"three"]
    # "\r\n" before, "xx" between, "\n" after a 0x1C lacking its CR
    assert decoder.skipped_bytes == 5
    assert decoder.discarded_frames == 1  # "part" was cut off by a new start block
    assert decoder.pending_bytes == 0
    assert not decoder.in_frame
    assert decoder.feed(SB) == []
    assert decoder.in_frame
    assert decoder.feed(b"unfinished") == []
    assert decoder.pending_bytes == len(b"unfinished")


def test_decoder_rejects_oversize_but_keeps_the_good_frames() -> None:
    decoder = MLLPDecoder(max_frame_bytes=10)
    big = b"MSH|^~\\&|" + b"x" * 40
    with pytest.raises(FrameTooLargeError) as info:
        decoder.feed(SB + b"ok1" + EB + SB + big + EB + b"!" + SB + b"ok2" + EB)
    assert info.value.completed == (b"ok1", b"ok2")
    assert info.value.head.startswith(b"MSH|^~\\&|")
    assert info.value.hint
    assert decoder.skipped_bytes == 1  # "!"; the tail of the big frame is not garbage
    assert decoder.discarded_frames == 1
    assert decoder.feed(SB + b"ok3" + EB) == [b"ok3"]
    # growth across many small chunks is caught too
    with pytest.raises(FrameTooLargeError):
        for _ in range(20):
            decoder.feed(SB if _ == 0 else b"y")


def test_an_oversize_frame_is_in_frame_until_its_end() -> None:
    decoder = MLLPDecoder(max_frame_bytes=10)
    with pytest.raises(FrameTooLargeError):
        decoder.feed(SB + b"x" * 11)
    assert decoder.in_frame  # the rest of the big frame is still to be read and dropped
    assert decoder.feed(b"y" * 100 + EB) == []
    assert not decoder.in_frame


def test_encode_frame() -> None:
    assert encode_frame("Ø") == SB + "Ø".encode() + EB
    assert encode_frame(b"\xd8") == SB + b"\xd8" + EB


_message = st.binary(max_size=60).map(lambda b: b.replace(SB, b"").replace(b"\x1c", b""))
_garbage = st.binary(max_size=8).map(lambda b: b.replace(SB, b""))


@given(
    st.lists(st.tuples(_garbage, _message), max_size=6),
    _garbage,
    st.lists(st.integers(min_value=1, max_value=50), max_size=30),
)
def test_any_chunking_yields_the_same_frames(
    frames: list[tuple[bytes, bytes]], trailer: bytes, cuts: list[int]
) -> None:
    stream = b"".join(g + SB + m + EB for g, m in frames) + trailer
    decoder, out, pos = MLLPDecoder(), [], 0
    for cut in [*cuts, len(stream)]:
        out += decoder.feed(stream[pos : pos + cut])
        pos += cut
    out += decoder.feed(stream[pos:])
    assert out == [m for _, m in frames]
    whole = MLLPDecoder()
    assert whole.feed(stream) == out
    assert decoder.skipped_bytes == whole.skipped_bytes


@given(st.lists(st.binary(max_size=40), max_size=20))
def test_arbitrary_bytes_raise_only_the_typed_error(chunks: list[bytes]) -> None:
    decoder = MLLPDecoder(max_frame_bytes=16)
    for chunk in chunks:
        try:
            frames = decoder.feed(chunk)
        except FrameTooLargeError as exc:
            frames = list(exc.completed)
        assert all(len(f) <= 16 for f in frames)
        assert decoder.pending_bytes <= 16


# ---------------------------------------------------------------- loopback I/O

WHEN = dt.datetime(2025, 3, 1, 8, 15, tzinfo=dt.timezone(dt.timedelta(hours=1)))
CUFF = DeviceRef("C0:10:00:00:00:01", CodedValue("528391", "MDC_DEV_SPEC_PROFILE_BPM", "MDC"))


def _oru(control_id: str, note: str = "") -> str:
    systolic = NumericObservation(
        CodedValue("150021", "MDC_PRESS_BLD_NONINV_SYS", "MDC"),
        Decimal("120"),
        CodedValue("266016", "MDC_DIM_MMHG", "MDC"),
        CodedValue("mm[Hg]", "mm[Hg]", "UCUM"),
        WHEN,
    )
    message = build_oru_r01(
        patient=PatientRef("15076500565", "Ødegård", "Kari"),
        observations=[systolic],
        device=CUFF,
        sending_app="TRYGGHEIM",
        sending_facility="K",
        receiving_app="EPJ",
        receiving_facility="L",
        control_id=control_id,
        now=WHEN,
    )
    return message + (f"NTE|1||{note}\r" if note else "")


class Recorder:
    """A handler that keeps what it got (as an application stores the raw message) and
    accepts it."""

    def __init__(self) -> None:
        self.received: list[ReceivedMessage] = []

    async def __call__(self, received: ReceivedMessage) -> bytes:
        self.received.append(received)
        ack = build_ack(received.message, AckCode.AA, "", WHEN, f"A{len(self.received)}")
        return encode_ack(ack, received.message)


async def _exchange_raw(port: int, data: bytes, replies: int) -> list[Ack]:
    """Write ``data`` on a new connection and read ``replies`` ACKs."""
    return [parse_ack(f) for f in await _raw_replies(port, data, replies)]


async def _raw_replies(port: int, data: bytes, replies: int) -> list[bytes]:
    """Write ``data`` on a new connection and read ``replies`` frames, as they came."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        decoder, frames = MLLPDecoder(), list[bytes]()
        async with asyncio.timeout(5):
            while len(frames) < replies:
                chunk = await reader.read(65536)
                assert chunk, "the connection was closed before the answers"
                frames += decoder.feed(chunk)
        return frames
    finally:
        writer.close()
        await writer.wait_closed()


async def _until_closed(
    reader: asyncio.StreamReader, timeout: float = 5
) -> tuple[list[Ack], float]:
    """Every ACK the server writes until it closes the connection, and how long that took."""
    decoder, frames = MLLPDecoder(), list[bytes]()
    start = asyncio.get_running_loop().time()
    async with asyncio.timeout(timeout):
        while data := await reader.read(65536):
            frames += decoder.feed(data)
    return [parse_ack(f) for f in frames], asyncio.get_running_loop().time() - start


async def test_client_and_gp_endpoint(tmp_path: Path) -> None:
    log_file = tmp_path / "gp.hl7"
    async with GPEndpoint(log_path=log_file) as gp, MLLPClient("127.0.0.1", gp.port) as client:
        acks = [await client.send(_oru(f"TRY{i}"), timeout=5) for i in range(3)]
        # PCD-01 asks for enhanced acknowledgement (MSH-15 AL): positive ACK is CA
        assert [(a.code, a.acked_control_id) for a in acks] == [
            (AckCode.CA, "TRY0"), (AckCode.CA, "TRY1"), (AckCode.CA, "TRY2"),
        ]  # fmt: skip
        resend = await client.send(_oru("TRY1"), timeout=5)
        assert resend == acks[1]  # the original ACK, own MSH-10 included
        original_mode = "MSH|^~\\&|A|B|C|D|||ORU^R01|OM1|P|2.6\rPID|1\r"
        assert (await client.send(original_mode, timeout=5)).code is AckCode.AA
    assert gp.duplicates == 1
    assert gp.received == [_oru("TRY0"), _oru("TRY1"), _oru("TRY2"), original_mode]
    logged = log_file.read_bytes()
    assert logged.count(b"\rPID|1||15076500565") == 3
    assert logged.startswith(_oru("TRY0").encode() + b"\n")
    assert "Ødegård".encode() in logged


async def test_gp_rejects_other_messages() -> None:
    async with GPEndpoint() as gp, MLLPClient("127.0.0.1", gp.port) as client:
        ack = await client.send("MSH|^~\\&|A|B|C|D|||ADT^A04|X1|P|2.6\rPID|1\r", timeout=5)
        assert ack.code is AckCode.AR
        assert "ADT^A04" in ack.text
        assert ack.errors[0].code == "200"
        (no_id,) = await _exchange_raw(gp.port, encode_frame("MSH|^~\\&|A|B|C|D|||ORU^R01\r"), 1)
        assert (no_id.code, no_id.acked_control_id, no_id.errors[0].code) == (AckCode.AR, "", "101")
    assert gp.received == []
    assert gp.rejected == 2


async def test_hundred_messages_on_one_connection() -> None:
    recorder = Recorder()
    async with MLLPServer(recorder) as server:
        async with MLLPClient("127.0.0.1", server.port) as client:
            for i in range(50):
                assert (await client.send(_oru(f"S{i}"), timeout=5)).accepted
        # pipelined: all frames in one write, the ACKs come back in order
        acks = await _exchange_raw(
            server.port, b"".join(encode_frame(_oru(f"P{i}")) for i in range(50)), 50
        )
        assert [a.acked_control_id for a in acks] == [f"P{i}" for i in range(50)]
        assert (server.stats.connections, server.stats.frames) == (2, 100)
    assert [r.message.control_id for r in recorder.received[:3]] == ["S0", "S1", "S2"]
    assert recorder.received[0].raw == _oru("S0").encode()


async def test_one_megabyte_message() -> None:
    recorder = Recorder()
    big = _oru("BIG", note="x" * 1024 * 1024)
    async with MLLPServer(recorder) as server, MLLPClient("127.0.0.1", server.port) as client:
        assert (await client.send(big, timeout=10)).accepted
        assert (await client.send(_oru("AFTER"), timeout=5)).accepted
    assert recorder.received[0].raw == big.encode()
    assert len(recorder.received[0].raw) > 1024 * 1024


async def test_junk_before_the_start_block_is_skipped() -> None:
    recorder = Recorder()
    async with MLLPServer(recorder) as server:
        junk = b"GET / HTTP/1.1\r\n\r\n\x00\xff"
        (ack,) = await _exchange_raw(server.port, junk + encode_frame(_oru("J1")), 1)
        assert (ack.code, ack.acked_control_id) == (AckCode.CA, "J1")
        assert server.stats.skipped_bytes == len(junk)


async def test_latin1_message_reaches_the_handler_decoded() -> None:
    recorder = Recorder()
    text = "MSH|^~\\&|GW|X|TRY|K|20250301||ADT^A08|L1|P|2.3||||||8859/1\nPID|1||||Ødegård^Kari\n"
    async with MLLPServer(recorder) as server:
        (ack,) = await _exchange_raw(server.port, encode_frame(text.encode("latin-1")), 1)
        assert ack.code is AckCode.AA
    (received,) = recorder.received
    assert received.raw == text.encode("latin-1")
    pid = received.message.first("PID")
    assert pid is not None
    assert pid.value(5) == "Ødegård"


async def test_oversize_frame_is_refused_then_the_connection_closed() -> None:
    recorder = Recorder()
    async with MLLPServer(recorder, max_frame_bytes=4096) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(encode_frame(_oru("OK1")) + encode_frame(_oru("BIG1", note="x" * 10_000)))
        await writer.drain()
        acks, _ = await _until_closed(reader)
        writer.close()
        assert [(a.code, a.acked_control_id) for a in acks] == [
            (AckCode.CA, "OK1"), (AckCode.CR, "BIG1"),
        ]  # fmt: skip
        assert "larger than 4096 bytes" in acks[1].text
        # the server serves the next connection
        (ack,) = await _exchange_raw(server.port, encode_frame(_oru("OK2")), 1)
        assert ack.accepted
        assert (server.stats.oversize, server.stats.rejected) == (1, 1)
    assert [r.message.control_id for r in recorder.received] == ["OK1", "OK2"]


async def test_unparseable_with_msh_is_refused_and_the_connection_kept() -> None:
    recorder = Recorder()
    async with MLLPServer(recorder) as server:
        frames = (
            encode_frame("MSH|^~\\&|A|B|C|D|||ORU^R01|BAD1|P|2.6\rthis is no segment\r")
            + SB + b"MSH|^~\\&|A|B|C|D|||ORU^R01|BAD2|P|2.6||||||UNICODE UTF-8\rPID|\xff" + EB
            + SB + b"MSH|^~\\&|A|B|C|D|||ORU^R01|BAD3|P|2.6||||||EBCDIC\rPID|1" + EB
            + encode_frame(_oru("GOOD1"))
        )  # fmt: skip
        acks = await _exchange_raw(server.port, frames, 4)
        assert [
            (a.code, a.acked_control_id, a.errors[0].code if a.errors else "") for a in acks
        ] == [
            (AckCode.AR, "BAD1", "100"),
            (AckCode.AR, "BAD2", "102"),
            (AckCode.AR, "BAD3", "103"),
            (AckCode.CA, "GOOD1", ""),
        ]
        assert (server.stats.rejected, server.stats.connections) == (3, 1)
    assert [r.message.control_id for r in recorder.received] == ["GOOD1"]


async def test_garbage_without_msh_closes_the_connection_only() -> None:
    recorder = Recorder()
    async with MLLPServer(recorder) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(encode_frame(_oru("G1")) + SB + b"total garbage" + EB)
        writer.write(encode_frame(_oru("G2")))  # after the garbage: not processed
        await writer.drain()
        acks, _ = await _until_closed(reader)
        writer.close()
        assert [a.acked_control_id for a in acks] == ["G1"]
        async with MLLPClient("127.0.0.1", server.port) as client:
            assert (await client.send(_oru("G3"), timeout=5)).accepted
        assert server.stats.unanswerable == 1
    assert [r.message.control_id for r in recorder.received] == ["G1", "G3"]


async def test_read_timeout_closes_a_stalled_frame() -> None:
    async with MLLPServer(Recorder(), read_timeout=0.2, idle_timeout=30) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(SB + _oru("STALL").encode()[:100])
        acks, waited = await _until_closed(reader)
        writer.close()
        assert acks == []
        assert 0.15 < waited < 2
        assert (server.stats.read_timeouts, server.stats.idle_timeouts) == (1, 0)


async def test_idle_timeout_closes_a_silent_connection() -> None:
    async with MLLPServer(Recorder(), read_timeout=30, idle_timeout=0.2) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        # one message, then silence: the connection stays open only as long as allowed
        writer.write(encode_frame(_oru("I1")))
        acks, waited = await _until_closed(reader)
        writer.close()
        assert [a.acked_control_id for a in acks] == ["I1"]
        assert 0.15 < waited < 2
        assert (server.stats.read_timeouts, server.stats.idle_timeouts) == (0, 1)


async def test_the_ack_is_written_only_after_the_handler_returns() -> None:
    stored = asyncio.Event()
    release = asyncio.Event()

    async def storing(received: ReceivedMessage) -> bytes:
        await release.wait()  # e.g. the database commit of the raw message
        stored.set()
        return build_ack(received.message, AckCode.AA, "", WHEN, "A1").encode()

    async with MLLPServer(storing) as server, MLLPClient("127.0.0.1", server.port) as client:
        send = asyncio.create_task(client.send(_oru("W1"), timeout=5))
        await asyncio.sleep(0.1)
        assert not send.done()
        release.set()
        assert (await send).accepted
        assert stored.is_set()


async def test_handler_failure_is_answered_with_ae() -> None:
    async def broken(received: ReceivedMessage) -> bytes:
        raise RuntimeError("bug")

    async with MLLPServer(broken) as server, MLLPClient("127.0.0.1", server.port) as client:
        ack = await client.send(_oru("E1"), timeout=5)
        assert (ack.code, ack.errors[0].code) == (AckCode.CE, "207")
        ack = await client.send(_oru("E2"), timeout=5)  # same connection, still served
        assert ack.acked_control_id == "E2"
        assert server.stats.handler_errors == 2


async def test_random_bytes_never_stop_the_server() -> None:
    rng = random.Random(7)
    alphabet = b"MSH|^~\\&\r\n\x0b\x1c\x00\xffPIDOBX12"
    async with MLLPServer(Recorder(), read_timeout=0.3, idle_timeout=0.3) as server:
        for _ in range(40):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(bytes(rng.choice(alphabet) for _ in range(rng.randrange(400))))
            await writer.drain()
            await _until_closed(reader)
            writer.close()
        async with MLLPClient("127.0.0.1", server.port) as client:
            assert (await client.send(_oru("ALIVE"), timeout=5)).accepted
        assert server.stats.internal_errors == 0
        assert server.stats.connections == 41


@asynccontextmanager
async def _raw_server(
    on_connect: Callable[[int, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[int]:
    count = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        count += 1
        try:
            await on_connect(count, reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def test_client_times_out_against_a_silent_server() -> None:
    async def silent(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass

    async with _raw_server(silent) as port, MLLPClient("127.0.0.1", port) as client:
        with pytest.raises(MLLPTimeoutError) as info:
            await client.send(_oru("T1"), timeout=0.2)
        assert info.value.control_id == "T1"
        assert not client.connected  # the next send starts on a fresh connection


async def test_client_reports_loss_and_reconnects() -> None:
    async def flaky(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = MLLPDecoder()
        while data := await reader.read(65536):
            for _frame in decoder.feed(data):
                if n == 1:
                    return  # first connection: drop without answering
                writer.write(
                    encode_frame("MSH|^~\\&|||||||ACK|Z|P|2.6\rMSA|AA|STALE\r")
                    + encode_frame("MSH|^~\\&|||||||ACK|Z|P|2.6\rMSA|AA|R1\r")
                )

    async with _raw_server(flaky) as port, MLLPClient("127.0.0.1", port) as client:
        with pytest.raises(ConnectionLost):
            await client.send(_oru("R1"), timeout=5)
        ack = await client.send(_oru("R1"), timeout=5)  # reconnects; skips the stale ACK
        assert (ack.code, ack.acked_control_id) == (AckCode.AA, "R1")


async def test_connect_refused_is_connection_lost() -> None:
    async with _raw_server(lambda *a: asyncio.sleep(0)) as port:
        pass  # the port is now closed
    with pytest.raises(ConnectionLost):
        async with MLLPClient("127.0.0.1", port):
            pass


def _tls_contexts(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    files = make_test_ca(tmp_path / "tls")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(files.certfile, files.keyfile)
    client = ssl.create_default_context(cafile=str(files.cafile))
    return server, client


async def test_tls(tmp_path: Path) -> None:
    server_ctx, client_ctx = _tls_contexts(tmp_path)
    async with (
        GPEndpoint(ssl=server_ctx) as gp,
        MLLPClient("127.0.0.1", gp.port, ssl=client_ctx, server_hostname="localhost") as client,
    ):
        for i in range(3):
            assert (await client.send(_oru(f"TLS{i}"), timeout=5)).accepted
        # a plain-TCP peer on the TLS port costs its own connection only
        reader, writer = await asyncio.open_connection("127.0.0.1", gp.port)
        writer.write(encode_frame(_oru("PLAIN")))
        await _until_closed(reader)
        writer.close()
        assert (await client.send(_oru("TLS3"), timeout=5)).accepted
    assert gp.received == [_oru(f"TLS{i}") for i in range(4)]


async def test_shutdown_with_connected_idle_client() -> None:
    gp = await GPEndpoint().__aenter__()
    async with MLLPClient("127.0.0.1", gp.port) as client:
        assert (await client.send(_oru("S1"), timeout=5)).accepted
        # the server ends promptly although a client is still connected ...
        async with asyncio.timeout(2):
            await gp.__aexit__(None, None, None)
        # ... and the client notices on its next send
        with pytest.raises(ConnectionLost):
            await client.send(_oru("S2"), timeout=2)


# ---------------------------------------------------------------- bounds (issue 12, finding 8)


async def test_a_frame_trickled_byte_by_byte_is_closed_at_its_deadline() -> None:
    """``read_timeout`` is a deadline for the whole frame, not for each read: a peer sending a
    byte now and then cannot hold a connection (and its buffer) open for ever."""
    async with MLLPServer(Recorder(), read_timeout=0.6, idle_timeout=30) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        start = asyncio.get_running_loop().time()
        closed = asyncio.create_task(_until_closed(reader, timeout=20))
        # 10 s of trickle: a per-read timeout would keep it open to the end; the bound below
        # leaves the loop seconds of slack on a loaded machine.
        for byte in (SB + _oru("SLOW").encode())[:100]:
            if closed.done():
                break
            with contextlib.suppress(ConnectionError):
                writer.write(bytes((byte,)))
                await writer.drain()
            await asyncio.sleep(0.1)
        acks, _ = await closed
        waited = asyncio.get_running_loop().time() - start
        writer.close()
        assert acks == []
        assert 0.5 < waited < 4, f"closed after {waited:.2f} s"
        assert server.stats.read_timeouts == 1


async def test_unfinished_frames_of_all_connections_share_one_memory_bound() -> None:
    """Past ``max_buffered_bytes`` held in unfinished frames across connections, the connection
    that would go over is answered CE (busy: send again later) and closed; the others, and
    new connections, go on."""
    recorder = Recorder()
    async with MLLPServer(
        recorder, max_frame_bytes=9000, max_buffered_bytes=10_000, read_timeout=5
    ) as server:
        first_reader, first = await asyncio.open_connection("127.0.0.1", server.port)
        whole = encode_frame(_oru("HOLD1", note="x" * 7000))
        first.write(whole[:6000])
        await first.drain()
        await until(lambda: server.buffered_bytes > 5000)
        second_reader, second = await asyncio.open_connection("127.0.0.1", server.port)
        second.write(encode_frame(_oru("HOLD2", note="y" * 7000))[:6000])
        await second.drain()
        decoder = MLLPDecoder()
        async with asyncio.timeout(5):
            while not (frames := decoder.feed(await second_reader.read(65536))):
                pass
        acks = [parse_ack(f) for f in frames]
        second.close()
        assert [(a.code, a.acked_control_id, a.errors[0].code) for a in acks] == [
            (AckCode.CE, "HOLD2", "207")
        ]
        assert "send it again" in acks[0].text
        assert server.stats.busy == 1
        first.write(whole[6000:])
        await first.drain()
        decoder = MLLPDecoder()
        async with asyncio.timeout(5):
            while not (frames := decoder.feed(await first_reader.read(65536))):
                pass
        assert parse_ack(frames[0]).acked_control_id == "HOLD1"
        first.close()
        (ack,) = await _exchange_raw(server.port, encode_frame(_oru("AFTER")), 1)
        assert ack.accepted
        assert server.buffered_bytes == 0
    assert [r.message.control_id for r in recorder.received] == ["HOLD1", "AFTER"]


async def test_a_costly_frame_does_not_stall_other_connections() -> None:
    """A 2 MB MSH of a million repetitions (every MSH value is checked before any ACK) takes a
    second or more to parse: it is parsed off the event loop, which keeps serving (a heartbeat
    on it never waits long), and a message on another connection is answered meanwhile."""
    recorder = Recorder()
    costly = encode_frame(_oru("COSTLY").replace("|K|", "|" + "K~" * 1_000_000 + "K|", 1))
    loop = asyncio.get_running_loop()
    gaps: list[float] = []

    async def heartbeat() -> None:
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            gaps.append(loop.time() - before)

    async with MLLPServer(recorder, read_timeout=30) as server:
        beating = asyncio.create_task(heartbeat())
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(costly)
        await writer.drain()
        await until(lambda: server.stats.frames == 1)
        (ack,) = await _exchange_raw(server.port, encode_frame(_oru("QUICK")), 1)
        quick_answered = len(recorder.received)
        decoder = MLLPDecoder()
        async with asyncio.timeout(30):
            while not (frames := decoder.feed(await reader.read(65536))):
                pass
        beating.cancel()
        writer.close()
    assert ack.accepted
    assert parse_ack(frames[0]).acked_control_id == "COSTLY"
    assert quick_answered == 1, "the quick message waited for the costly one"
    assert max(gaps) < 0.3, f"the event loop stalled for {max(gaps):.2f} s"


async def test_a_frame_of_too_many_segments_is_refused_at_once() -> None:
    """300,000 tiny segments (3 MB) would be 300,000 objects, seconds of garbage collection:
    past hl7.message.MAX_SEGMENTS a message is refused (AR, ERR 207) before they are made."""
    recorder = Recorder()
    async with MLLPServer(recorder) as server:
        many = encode_frame(_oru("MANY") + "ZZZ|a|b|c\r" * 300_000)
        ack, after = await _exchange_raw(server.port, many + encode_frame(_oru("NEXT")), 2)
        assert (ack.code, ack.acked_control_id, ack.errors[0].code) == (AckCode.CR, "MANY", "207")
        assert "more than the 10000" in ack.text
        assert (after.code, after.acked_control_id) == (AckCode.CA, "NEXT")
    assert [r.message.control_id for r in recorder.received] == ["NEXT"]


# ------------------------------------------------ answers that name MSH-10 (issue 12, finding 10)


def _segment(reply: bytes, segment_id: bytes) -> bytes:
    return next(s for s in reply.split(b"\r") if s.startswith(segment_id + b"|"))


@pytest.mark.parametrize("control_id", [b"^A", b"F&002773", b"X^Y~Z"])
async def test_msa_2_echoes_a_composite_msh_10_as_sent(control_id: bytes) -> None:
    message = b"MSH|^~\\&|A|B|C|D|20250301120000+0100||ADT^A08|" + control_id + b"|P|2.5\rPID|1"
    async with MLLPServer(Recorder()) as server:
        (reply,) = await _raw_replies(server.port, SB + message + EB, 1)
    assert _segment(reply, b"MSA") == b"MSA|AA|" + control_id


async def test_an_answer_echoes_the_senders_bytes_in_its_charset() -> None:
    """ISO-8859-1 (declared, detected, or the fallback for bytes not in the declared charset) is
    answered in ISO-8859-1: MSH-10 and the sender's names come back as the same bytes."""
    latin = (
        b"MSH|^~\\&|S\xd8R|\xc5S|C|D|20250301120000+0100||ADT^A08|\xd8K1|P|2.5\rPID|1",
        b"MSH|^~\\&|S\xd8R|\xc5S|C|D|20250301120000+0100||ADT^A08|\xd8K2|P|2.5||||||8859/1\rPID|1",
        # declared UTF-8, but not: rejected (AR), and still answered by name
        b"MSH|^~\\&|S\xd8R|\xc5S|C|D|20250301120000+0100||ADT^A08|\xd8K3|P|2.5||||||"
        b"UNICODE UTF-8\rPID|1",
    )
    async with MLLPServer(Recorder()) as server:
        replies = await _raw_replies(server.port, b"".join(SB + m + EB for m in latin), 3)
    for number, reply in enumerate(replies, start=1):
        msh = _segment(reply, b"MSH").split(b"|")
        assert (msh[2], msh[3], msh[17]) == (b"C", b"D", b"8859/1")
        assert (msh[4], msh[5]) == (b"S\xd8R", b"\xc5S")
        assert _segment(reply, b"MSA").split(b"|")[2] == b"\xd8K%d" % number
        assert "\N{REPLACEMENT CHARACTER}" not in reply.decode("latin-1")
    assert _segment(replies[2], b"MSA").startswith(b"MSA|AR|")


async def test_a_lone_backslash_in_msh_is_refused_with_a_nak_not_a_closed_connection() -> None:
    recorder = Recorder()
    broken = b"MSH|^~\\&|A|B\\C|C|D|20250301120000+0100||ADT^A08|BS\\1|P|2.5\rPID|1"
    async with MLLPServer(recorder) as server:
        nak, after = await _raw_replies(
            server.port, SB + broken + EB + encode_frame(_oru("AFTER")), 2
        )
    ack = parse_ack(nak)
    assert (ack.code, ack.errors[0].code, ack.errors[0].location) == (AckCode.AR, "102", "MSH^1^4")
    # the sender's values, read literally: the lone backslash escaped (\E\) in the answer
    assert _segment(nak, b"MSA").startswith(b"MSA|AR|BS\\E\\1|")
    assert ack.acked_control_id == "BS\\1"
    assert _segment(nak, b"MSH").split(b"|")[5] == b"B\\E\\C"
    assert parse_ack(after).acked_control_id == "AFTER"
