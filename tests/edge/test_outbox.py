"""The durable outbox: seq numbering, survival across reopen, deletion only on commit."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from edge.outbox import Outbox
from tryggheim.domain import Observation, TimeSource


def _obs(code: str = "MDC_PRESS_BLD_NONINV_SYS", value: str = "120") -> Observation:
    unit = "1" if code.startswith("TRY_") else "mm[Hg]"
    return Observation(
        gateway_id="",
        device_id="C0:10:00:00:00:01",
        source="ble:2A35",
        code=code,
        value=Decimal(value),
        unit=unit,
        time=datetime(2026, 11, 22, 7, 30, tzinfo=UTC),
    )


def test_seq_is_assigned_strictly_increasing_and_never_reused(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "gw-1")
    first = box.append([_obs(), _obs(value="80")])
    assert [o.seq for o in first] == [1, 2]
    assert all(o.gateway_id == "gw-1" for o in first)
    box.commit_upto(2)
    assert box.depth() == 0
    (third,) = box.append([_obs(value="121")])
    assert third.seq == 3
    box.close()


def test_everything_survives_a_reopen_and_only_committed_rows_go(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "gw-1")
    stored = box.append([_obs(value=str(v)) for v in range(100, 110)])
    box.commit_upto(4)
    box.close()

    box = Outbox(tmp_path / "o.db", "gw-1")
    assert box.committed_seq == 4
    assert box.depth() == 6
    pending = box.pending(after_seq=0, limit=100, urgent=False)
    assert pending == stored[4:]
    box.close()


def test_urgent_events_are_kept_apart_for_sending_first(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "gw-1")
    box.append([_obs(), _obs("TRY_EVT_FALL", "1"), _obs(value="130")])
    urgent = box.pending(after_seq=0, limit=10, urgent=True)
    normal = box.pending(after_seq=0, limit=10, urgent=False)
    assert [o.seq for o in urgent] == [2]
    assert [o.seq for o in normal] == [1, 3]
    assert box.pending(after_seq=0, limit=10, urgent=True, skip=frozenset({2})) == []
    box.close()


def test_a_stale_ack_never_moves_the_commit_point_back(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "gw-1")
    box.append([_obs() for _ in range(5)])
    box.commit_upto(5)
    box.commit_upto(2)
    assert box.committed_seq == 5
    box.close()


def test_a_reading_the_device_sends_again_is_stored_once(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "gw-1")
    first = box.append([_obs(value="120"), _obs("MDC_PRESS_BLD_NONINV_DIA", "80")])
    box.commit_upto(2)
    box.close()
    # After a reboot and a reconnect the cuff resends the same reading, plus a new one.
    box = Outbox(tmp_path / "o.db", "gw-1")
    again = box.append(
        [_obs(value="120"), _obs("MDC_PRESS_BLD_NONINV_DIA", "80"), _obs(value="131")]
    )
    assert [o.value for o in first] == [Decimal(120), Decimal(80)]
    assert [(o.seq, o.value) for o in again] == [(3, Decimal(131))]
    assert box.duplicates_dropped == 2
    box.close()


def test_equal_readings_without_a_device_clock_are_both_kept(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "gw-1")
    unclocked = replace(_obs(), time_source=TimeSource.GATEWAY)
    assert len(box.append([unclocked, unclocked])) == 2
    box.close()
