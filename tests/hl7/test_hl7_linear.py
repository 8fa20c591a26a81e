"""HL7 parsing is linear in the input: a frame of 40,000 repetitions (~240 KB) is parsed and
decoded in well under a second, and 4 times the repetitions take about 4 times as long, not 16.
Issue 12 finding 2: every repetition used to re-split its field (37.6 s for 40,000)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from hl7.inbound import decode_inbound
from hl7.message import decode_message

_MSH = "MSH|^~\\&|DIPS|AHUS|TRYGGHEIM|BAERUM|20250301120000+0100||{type}|C{n}|P|2.5\r"


def _adt_many_names(n: int) -> bytes:
    names = "~".join(f"N{i % 10}^K" for i in range(n))
    return (
        _MSH.format(type="ADT^A01", n=n)
        + "EVN|A01|20250301115930+0100\r"
        + f"PID|1||15076500565^^^FNR^NNNOR||{names}||19650715|F\r"
    ).encode()


def _adt_many_identifiers(n: int) -> bytes:
    ids = "~".join(f"{i % 100}^^^H" for i in range(n))
    return (
        _MSH.format(type="ADT^A08", n=n) + f"PID|1||{ids}~15076500565^^^FNR^NNNOR||Nordmann^Kari\r"
    ).encode()


def _adt_many_addresses(n: int) -> bytes:
    addresses = "~".join(f"G{i % 10}^^B" for i in range(n))
    return (
        _MSH.format(type="ADT^A08", n=n)
        + f"PID|1||15076500565^^^FNR^NNNOR||Nordmann^Kari||||||{addresses}\r"
    ).encode()


def _oru_many_devices(n: int) -> bytes:
    devices = "~".join(f"d{i % 10}^X" for i in range(n))
    return (
        _MSH.format(type="ORU^R01^ORU_R01", n=n)
        + "PID|1||15076500565^^^FNR^NNNOR||Nordmann^Kari\r"
        + "OBR|1|||182777000^monitoring^SCT|||20250301120000+0100\r"
        + "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.0.1.1|97|262688^MDC_DIM_PERCENT^MDC"
        + f"||||||||||||{devices}\r"
    ).encode()


def _seconds(data: bytes) -> float:
    """CPU seconds: the machine running the tests may be busy with other work."""
    start = time.process_time()
    decode_inbound(decode_message(data))
    return time.process_time() - start


@pytest.mark.parametrize(
    "build",
    [_adt_many_names, _adt_many_identifiers, _adt_many_addresses, _oru_many_devices],
)
def test_40000_repetitions_decode_in_well_under_a_second(
    build: Callable[[int], bytes],
) -> None:
    small, large = build(10_000), build(40_000)
    _seconds(small)  # warm up
    small_s = min(_seconds(small) for _ in range(3))
    large_s = min(_seconds(large) for _ in range(3))
    assert large_s < 1.0, f"{len(large)} bytes took {large_s:.2f} s"
    # Linear: 4x the input takes about 4x the time (quadratic would be 16x).
    assert large_s < 8 * small_s + 0.02, f"10k: {small_s:.3f} s, 40k: {large_s:.3f} s"
