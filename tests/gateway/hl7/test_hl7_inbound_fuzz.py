"""Hostile frames through a running `tryggheim hl7 listen` process (issue 12): random bytes,
HL7-like text full of delimiters, backslashes and bytes of no charset, repetition and segment
bombs, frames left unfinished, noise outside frames. Whatever one connection sends, a valid
ADT on another connection is still answered AA promptly, and the process stays up."""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hl7.ack import Ack, AckCode, parse_ack
from hl7.mllp import MLLPDecoder, encode_frame
from tryggheim.apps.broker import find_free_port

SB, EB = b"\x0b", b"\x1c\x0d"
#: The valid message's answer may wait for a hostile message before it in processing order
#: (40,000 repetitions: a few tenths of a second); 37.6 s before parsing was linear.
PROMPT_S = 3.0

_counter = itertools.count()


def valid_adt() -> tuple[str, bytes]:
    control_id = f"OK{next(_counter)}"
    return control_id, (
        f"MSH|^~\\&|DIPS|AHUS|TRYGGHEIM|BAERUM|20250301120000+0100||ADT^A08|{control_id}|P|2.5"
        "\rPID|1||15076500565^^^NOR^NNNOR||Ødegård^Kari||19650715|F\r"
    ).encode()


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    database = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('fuzz') / 'records.db'}"
    port = find_free_port()
    command = ["hl7", "listen", "--port", str(port), "--database", database]
    process = subprocess.Popen(
        [sys.executable, "-m", "tryggheim.apps.cli", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().decode().strip().endswith(f":{port}")
        # Register the patient the valid messages update.
        _, first = valid_adt()
        assert exchange(port, first.replace(b"ADT^A08", b"ADT^A01")).code is AckCode.AA
        yield port
        assert process.poll() is None, "the endpoint process died"
    finally:
        process.terminate()
        process.wait(10)


def exchange(port: int, message: bytes, timeout: float = 30) -> Ack:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(encode_frame(message))
        decoder = MLLPDecoder()
        while True:
            chunk = conn.recv(65536)
            assert chunk, "the endpoint closed the connection without an answer"
            if frames := decoder.feed(chunk):
                return parse_ack(frames[0])


_hl7_text = st.text(
    alphabet=st.sampled_from([*"MSHPIDOBXZ|^~\\&\r\n 0123456789.AFXE", "Ø", "\x00"]),
    max_size=400,
).map(lambda t: ("MSH|^~\\&|" + t).encode("utf-8"))
_non_utf8 = st.binary(min_size=1, max_size=40).map(
    lambda b: b"MSH|^~\\&|S\xd8R|" + b.replace(b"\r", b"") + b"|C|D|20250301||ADT^A08|X\xff|P|2.5"
)
_repetitions = st.integers(1_000, 40_000).map(
    lambda n: (
        f"MSH|^~\\&|BOMB|AHUS|T|B|20250301120000+0100||ADT^A08|R{n}|P|2.5\r"
        f"PID|1||15076500565^^^NOR^NNNOR||{'N^K~' * n}\r"
    ).encode()
)
_segments = st.integers(1_000, 20_000).map(
    lambda n: (
        f"MSH|^~\\&|BOMB|AHUS|T|B|20250301120000+0100||ADT^A08|S{n}|P|2.5\r" + "ZZZ|a\r" * n
    ).encode()
)
#: What one hostile connection writes: framed (or not), finished (or not).
_hostile = st.one_of(
    st.binary(max_size=2000).map(lambda b: SB + b + EB),
    _hl7_text.map(lambda b: SB + b + EB),
    _non_utf8.map(lambda b: SB + b + EB),
    _repetitions.map(lambda b: SB + b + EB),
    _segments.map(lambda b: SB + b + EB),
    st.one_of(_hl7_text, _repetitions).map(lambda b: SB + b[: len(b) // 2]),  # left unfinished
    st.binary(max_size=2000).map(lambda b: b.replace(SB, b"")),  # noise, never a frame
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(hostile=_hostile)
def test_hostile_frames_never_delay_a_valid_message_on_another_connection(
    endpoint: int, hostile: bytes
) -> None:
    with socket.create_connection(("127.0.0.1", endpoint), timeout=30) as attacker:
        attacker.sendall(hostile)
        control_id, message = valid_adt()
        start = time.monotonic()
        ack = exchange(endpoint, message)
        waited = time.monotonic() - start
    assert (ack.code, ack.acked_control_id) == (AckCode.AA, control_id)
    assert waited < PROMPT_S, f"the valid message waited {waited:.2f} s"
