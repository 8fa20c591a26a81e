"""What the home gateway reports about itself: in the retained ``status`` message to the
platform, and to a technician on the box (``tryggheim edge status``)."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from edge.config import EdgeSettings
from edge.outbox import Outbox

#: Share of the outbox quota at which the status raises its warning.
DEFAULT_WARN_FRACTION = 0.8


class EdgeAlarm(StrEnum):
    OUTBOX_NEARLY_FULL = "outbox_nearly_full"
    """The outbox passed the warning fraction of its disk quota: the uplink has been down long."""
    OUTBOX_FULL = "outbox_full"
    """Over quota: home telemetry (room climate, link quality) is no longer stored."""
    URGENT_WAITING = "urgent_events_waiting"
    """A fall, panic, smoke or water-leak event is not yet committed by the platform."""
    OBSERVATIONS_REJECTED = "observations_rejected"
    """The platform refused observations for good (a rejected ack); they are kept aside."""


@dataclass(frozen=True, slots=True)
class EdgeStatus:
    gateway_id: str
    state: str
    """``online``, or ``offline`` (the MQTT will) or ``unknown`` (read from disk)."""
    outbox_depth: int
    urgent_waiting: int
    committed_seq: int
    last_seq: int
    last_commit_at: float | None
    outbox_bytes: int
    outbox_fill: float
    telemetry_refused: int
    rejected: int
    """Observations the platform refused for good, kept aside in the outbox."""
    epoch: str
    alarms: tuple[EdgeAlarm, ...]
    time: float

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["alarms"] = [a.value for a in self.alarms]
        return {"v": 1, **body}


def status_file(settings: EdgeSettings) -> Path:
    """Where the running agent keeps its last status, beside the outbox."""
    return settings.outbox_path.parent / "status.json"


def write_atomically(path: Path, text: str) -> None:
    """A reader sees the old file or the new one, never half of one."""
    temporary = path.with_suffix(".tmp")
    with temporary.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        # Durable before the rename: after a power cut the file is the old or the new one.
        os.fsync(f.fileno())
    temporary.replace(path)


def edge_status(outbox: Outbox, gateway_id: str, *, state: str, warn_fraction: float) -> EdgeStatus:
    fill = outbox.fill()
    urgent = outbox.urgent_depth()
    alarms: list[EdgeAlarm] = []
    if fill >= 1.0:
        alarms.append(EdgeAlarm.OUTBOX_FULL)
    elif fill >= warn_fraction:
        alarms.append(EdgeAlarm.OUTBOX_NEARLY_FULL)
    if urgent:
        alarms.append(EdgeAlarm.URGENT_WAITING)
    rejected = outbox.rejected_count()
    if rejected:
        alarms.append(EdgeAlarm.OBSERVATIONS_REJECTED)
    return EdgeStatus(
        gateway_id=gateway_id,
        state=state,
        outbox_depth=outbox.depth(),
        urgent_waiting=urgent,
        committed_seq=outbox.committed_seq,
        last_seq=outbox.last_seq,
        last_commit_at=outbox.committed_at,
        outbox_bytes=outbox.size_bytes(),
        outbox_fill=round(fill, 4),
        telemetry_refused=outbox.telemetry_refused,
        rejected=rejected,
        epoch=outbox.epoch,
        alarms=tuple(alarms),
        time=time.time(),
    )
