"""What the home gateway reports about itself: in the retained ``status`` message to the
platform, and to a technician on the box (``tryggheim edge status``). The message's format is
the kernel's (:class:`tryggheim.wire.EdgeStatus`); here is how the edge fills it in."""

from __future__ import annotations

import os
import time
from pathlib import Path

from edge.config import EdgeSettings
from edge.outbox import Outbox
from tryggheim.wire import EdgeAlarm, EdgeStatus

#: Share of the outbox quota at which the status raises its warning.
DEFAULT_WARN_FRACTION = 0.8


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
