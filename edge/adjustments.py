"""What the edge's entry points (BLE, Zigbee2MQTT) did not pass on exactly as they received it.

The rule (ARCHITECTURE.md, "Keep what can be understood"): a reading is kept whenever any of it
can be understood; every value that is dropped or altered on the way is logged and counted
here with its reason. The counts travel to the platform in the gateway's ``status`` message
(``input_adjustments``, docs/wire.md), which exposes them in ``/metrics``.
"""

from __future__ import annotations

import logging
from collections import Counter
from enum import StrEnum

from tryggheim.wire import adjustments_to_json

log = logging.getLogger(__name__)


class Source(StrEnum):
    BLE = "ble"
    ZIGBEE2MQTT = "zigbee2mqtt"


class Reason(StrEnum):
    """Why a value was not passed on as received (docs/edge-config.md lists them)."""

    MALFORMED = "malformed"
    """Bytes that are not the format (a cut-short GATT value, a payload that is not JSON): the
    whole value or message is dropped."""
    SPECIAL_VALUE = "special_value"
    """An IEEE 11073 NaN/NRes/±INF sent instead of a number: no number stored, the reading's
    other values carry the flag ``<field>_<special>``."""
    RESERVED_VALUE = "reserved_value"
    """An enumeration value the specification reserves: kept raw as a flag."""
    CONTROL_SOLUTION = "control_solution"
    """A glucose reading of control solution: stored as the device event
    ``TRY_DEV_GLUCOSE_CONTROL_CHECK``, not as the patient's glucose."""
    CONTEXT_WITHOUT_READING = "context_without_reading"
    """A glucose context (0x2A34) whose reading (same sequence number) never came: dropped."""
    READING_WITHOUT_CONTEXT = "reading_without_context"
    """A glucose reading announced its context, which never came: stored without it."""
    WRONG_TYPE = "wrong_type"
    """A Zigbee2MQTT value of the wrong JSON type (a number where true/false belongs): that
    value is dropped, the rest of the message kept."""
    UNKNOWN_KEY = "unknown_key"
    """A Zigbee2MQTT key the platform does not interpret: kept as the flag
    ``unknown_key_<key>``."""
    UNKNOWN_STATE = "unknown_state"
    """An ``action``/``status`` value the sensor's mapping does not know: kept as the flag
    ``<key>_<value>``."""
    UNMAPPED_SENSOR = "unmapped_sensor"
    """A message from a sensor that is not in the sensor map: dropped."""

    @property
    def drops(self) -> bool:
        return self in _DROPS


_DROPS = frozenset(
    {
        Reason.MALFORMED,
        Reason.SPECIAL_VALUE,
        Reason.CONTEXT_WITHOUT_READING,
        Reason.WRONG_TYPE,
        Reason.UNMAPPED_SENSOR,
    }
)


class InputAdjustments:
    """Counts per (entry point, reason) since the agent started; one per agent, shared by its
    BLE reader and sensor listener."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[Source, Reason]] = Counter()

    def count(self, source: Source, reason: Reason, detail: str) -> None:
        self.counts[(source, reason)] += 1
        level = logging.WARNING if reason.drops else logging.INFO
        log.log(
            level, "%s: %s (%s): %s", source, reason, "dropped" if reason.drops else "kept", detail
        )

    def by_reason(self) -> dict[tuple[str, str], int]:
        """(entry point, reason) → count, as the status message carries them."""
        return {(source.value, reason.value): n for (source, reason), n in self.counts.items()}

    def to_json(self) -> dict[str, dict[str, int]]:
        """``{"ble": {"special_value": 2}, ...}`` (the status message's ``input_adjustments``)."""
        return adjustments_to_json(self.by_reason())
