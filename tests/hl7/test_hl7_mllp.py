"""hl7.mllp framing (pure, fuzzed) and client/server/GP endpoint over real loopback TCP/TLS."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from hl7.ack import AckCode, parse_ack
from hl7.errors import FrameDecodeError, FrameTooLargeError, MLLPTimeoutError
from hl7.gp_peer import GPEndpoint
from hl7.mllp import MLLPClient, MLLPDecoder, MLLPServer, decode_frame, encode_frame
from hl7.oru import DeviceRef, PatientRef, build_oru_r01
from tryggheim.codes import DeviceProfile
from tryggheim.domain import Observation
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
    assert decoder.feed(SB + b"unfinished") == []
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


def test_decode_frame() -> None:
    assert decode_frame("Ødegård".encode()) == "Ødegård"
    with pytest.raises(FrameDecodeError) as info:
        decode_frame(b"MSH|\xff")
    assert info.value.position == 4


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
CUFF = DeviceRef("C0:10:00:00:00:01", DeviceProfile.BLOOD_PRESSURE)


def _oru(control_id: str) -> str:
    systolic = Observation(
        "gw", CUFF.device_id, "ble:2A35", "MDC_PRESS_BLD_NONINV_SYS", Decimal("120"), "mm[Hg]", WHEN
    )
    return build_oru_r01(
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


async def _exchange_raw(port: int, data: bytes, replies: int) -> list[str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        decoder, frames = MLLPDecoder(), list[bytes]()
        async with asyncio.timeout(5):
            while len(frames) < replies:
                frames += decoder.feed(await reader.read(65536))
        return [decode_frame(f) for f in frames]
    finally:
        writer.close()
        await writer.wait_closed()


async def test_client_and_gp_endpoint(tmp_path: Path) -> None:
    log_file = tmp_path / "gp.hl7"
    async with GPEndpoint(log_path=log_file) as gp, MLLPClient("127.0.0.1", gp.port) as client:
        acks = [await client.send(_oru(f"TRY{i}"), timeout=5) for i in range(3)]
        # PCD-01 asks for enhanced acknowledgement (MSH-15 AL): positive ACK is CA
        assert [(a.code, a.acked_control_id) for a in acks] == [
            (AckCode.CA, "TRY0"), (AckCode.CA, "TRY1"), (AckCode.CA, "TRY2"),
        ]  # fmt: skip
        resend = await client.send(_oru("TRY1"), timeout=5)
        assert resend.accepted
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
        (raw,) = await _exchange_raw(gp.port, encode_frame("MSH|^~\\&|A|B|C|D|||ORU^R01\r"), 1)
        no_id = parse_ack(raw)
        assert (no_id.code, no_id.acked_control_id, no_id.errors[0].code) == (AckCode.AR, "", "101")
    assert gp.received == []
    assert gp.rejected == 2


async def test_server_rejects_garbage_and_keeps_serving() -> None:
    async with GPEndpoint(max_frame_bytes=4096) as gp:
        frames = (
            encode_frame("MSH|^~\\&|A|B|C|D|||ORU^R01|BAD1|P|2.6\rthis is no segment\r")
            + SB + b"total garbage" + EB
            + SB + b"MSH|^~\\&|A|B|C|D|||ORU^R01|BAD2|P|2.6\rPID|\xff\xfe" + EB
            + SB + b"MSH|^~\\&|A|B|C|D|||ORU^R01|BIG1|P|2.6\rNTE|" + b"x" * 5000 + EB
            + b"noise"
            + encode_frame(_oru("GOOD1"))
        )  # fmt: skip
        replies = [parse_ack(r) for r in await _exchange_raw(gp.port, frames, 4)]
        by_id = {a.acked_control_id: a.code for a in replies}
        assert by_id == {
            "BAD1": AckCode.AR, "BAD2": AckCode.AR, "BIG1": AckCode.AR, "GOOD1": AckCode.CA,
        }  # fmt: skip
        # the same server still answers a new connection
        async with MLLPClient("127.0.0.1", gp.port) as client:
            assert (await client.send(_oru("GOOD2"), timeout=5)).accepted
        stats = gp.server.stats
    assert (stats.rejected, stats.unanswerable, stats.oversize) == (3, 1, 1)
    assert stats.skipped_bytes == len(b"noise")
    assert gp.received == [_oru("GOOD1"), _oru("GOOD2")]


async def test_handler_failure_is_answered_with_ae() -> None:
    async def broken(message: str, peer: str) -> str:
        raise RuntimeError("bug")

    async with MLLPServer(broken) as server, MLLPClient("127.0.0.1", server.port) as client:
        ack = await client.send(_oru("E1"), timeout=5)
        assert (ack.code, ack.errors[0].code) == (AckCode.CE, "207")
        assert server.stats.handler_errors == 1


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
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


async def test_tls(tmp_path: Path) -> None:
    server_ctx, client_ctx = _tls_contexts(tmp_path)
    async with (
        GPEndpoint(ssl=server_ctx) as gp,
        MLLPClient("127.0.0.1", gp.port, ssl=client_ctx, server_hostname="localhost") as client,
    ):
        assert (await client.send(_oru("TLS1"), timeout=5)).accepted
    assert gp.received == [_oru("TLS1")]


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
