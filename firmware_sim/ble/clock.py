"""A device's own real-time clock, which is set by hand (or by a gateway) and drifts.

Health devices stamp readings with their own clock, in naive local time. Those clocks are set
once, at the factory or by the patient, and then run fast or slow by tens of ppm; over months
the error grows to minutes. A gateway is expected to notice and write the correct time
(0x2A2B Current Time). This clock models exactly that: ``now()`` is the time at which it was
last set, plus the elapsed *true* time scaled by ``1 + drift``.

The true time comes from ``reference`` (default: the host's local time), so a time-compressed
scenario can drive every device clock from one simulated time source.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta


class DeviceClock:
    def __init__(
        self,
        *,
        offset: timedelta = timedelta(0),
        drift: float = 0.0,
        reference: Callable[[], datetime] = datetime.now,
    ) -> None:
        """``offset``: how wrong the clock is now; ``drift``: the error it gains per second of
        true time (``20e-6`` = 20 ppm fast, negative = slow; tests use large values);
        ``reference``: the true naive local time."""
        self.drift = drift
        self._reference = reference
        self._set_at = reference()
        self._value_at_set = self._set_at + offset

    def now(self) -> datetime:
        elapsed = self._reference() - self._set_at
        return self._value_at_set + elapsed * (1.0 + self.drift)

    def error(self) -> timedelta:
        """How far the clock is ahead of true time (negative: behind)."""
        return self.now() - self._reference()

    def set(self, value: datetime) -> None:
        """Set the clock (patient's buttons, or a central writing Current Time); it goes on
        drifting from there."""
        self._set_at = self._reference()
        self._value_at_set = value
