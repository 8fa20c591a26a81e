"""The MQTT wire contract between home gateways and the care platform (docs/wire.md).

Pure functions: bytes in, frozen dataclasses out, :class:`PayloadError` naming what is wrong.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from math import isfinite
from typing import Any

from pydantic_core import from_json

from tryggheim import codes
from tryggheim.domain import Observation, TimeSource, prechecked_observation
from tryggheim.errors import ImplausibleValueError, PayloadError, TryggheimError

WIRE_VERSION = 1
TOPIC_ROOT = "tryggheim/v1"
#: A home gateway's id, which is also its broker user name and a topic level: lower-case letters,
#: digits and hyphens, 2 to 63 characters, so it can never contain MQTT wildcards, ``/``, the
#: password file's ``:`` or a line break, nor start like a static user (``_healthcheck``).
GATEWAY_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"
#: The platform's own broker user; the ACL gives it the whole tree.
PLATFORM_BROKER_USER = "platform"


def obs_topic(gateway_id: str) -> str:
    return f"{TOPIC_ROOT}/{gateway_id}/up/obs"


def event_topic(gateway_id: str) -> str:
    return f"{TOPIC_ROOT}/{gateway_id}/up/event"


def reply_topic(gateway_id: str) -> str:
    """Where a gateway answers the commands it receives on ``down/cmd``."""
    return f"{TOPIC_ROOT}/{gateway_id}/up/reply"


def status_topic(gateway_id: str) -> str:
    return f"{TOPIC_ROOT}/{gateway_id}/status"


def ack_topic(gateway_id: str) -> str:
    return f"{TOPIC_ROOT}/{gateway_id}/down/ack"


def cmd_topic(gateway_id: str) -> str:
    return f"{TOPIC_ROOT}/{gateway_id}/down/cmd"


def ingest_share_group(platform_password: str) -> str:
    """The name of the ingest workers' MQTT v5 shared-subscription group, keyed with the
    platform's broker password.

    Mosquitto 2.0's ACL file does not check subscriptions (only what is delivered), so any
    gateway may subscribe to ``$share/<group>/tryggheim/v1/+/up/#``. Had the group a fixed name,
    a gateway could join the ingest workers' group: the broker would hand it every n-th batch of
    every home and then drop it, because the gateway may not read it. Only holders of the
    platform's password can name this group; a gateway that subscribes to any other group
    is alone in it and receives nothing."""
    key = hmac.new(platform_password.encode(), b"tryggheim ingest share group", "sha256")
    return f"ingest-{key.hexdigest()[:24]}"


def ingest_subscription(group: str) -> str:
    """What ingest workers subscribe to (MQTT v5 shared subscription)."""
    return f"$share/{group}/{TOPIC_ROOT}/+/up/#"


def status_subscription(group: str) -> str:
    """Home gateways' status (online/offline, outbox depth), for the gateway-offline alarm.
    Shared subscriptions get no retained messages: a worker sees changes, not the last known
    state."""
    return f"$share/{group}/{TOPIC_ROOT}/+/status"


def gateway_of_topic(topic: str) -> str:
    parts = topic.split("/")
    if len(parts) < 4 or "/".join(parts[:2]) != TOPIC_ROOT or not parts[2]:
        raise PayloadError(topic, "topic is not under tryggheim/v1/{gateway}/")
    return parts[2]


#: The outbox epoch of edges that send none (older than epochs): all of their seqs are one epoch.
LEGACY_EPOCH = ""

# Bounds of every decoded value, checked here and nowhere else: what the record store's columns
# hold (gateway/records/models.py ObservationRow, GatewayProgress) and what one batch may carry. A
# value
# outside them is refused with its reason before it reaches a transaction (docs/wire.md, Bounds).
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
#: The edge's largest ``batch_size``.
MAX_BATCH_OBSERVATIONS = 5000
#: ``seq`` is a signed 64-bit column.
MAX_SEQ = 2**63 - 1
#: Counts in a status (``outbox_depth``) are 32-bit columns.
MAX_COUNT = 2**31 - 1
MAX_ID_CHARS = 36
MAX_NAME_CHARS = 64
"""``gateway_id``, ``device_id``, ``source``: the width of their columns."""
MAX_EPOCH_CHARS = 36
_EPOCH_CHARS = re.compile(r"[A-Za-z0-9-]+")
#: Flags are stored comma-joined in one text column.
MAX_FLAGS = 32
MAX_FLAG_CHARS = 64
MAX_REASON_CHARS = 500
#: (entry point, reason) pairs a status may count in ``input_adjustments``.
MAX_ADJUSTMENTS = 256
#: What a dead letter keeps of what arrived: enough to investigate, and a gateway sending
#: refused messages at full speed cannot fill the record store's disk much faster than the
#: broker lets it send.
MAX_KEPT_BYTES = 64 * 1024
#: Observation times: a device clock outside these years is broken, and a time near year 1 or
#: 9999 cannot even be converted to UTC.
EARLIEST_YEAR = 1970
LATEST_YEAR = 2200


@dataclass(frozen=True, slots=True)
class RejectedItem:
    """An observation of a batch that cannot be taken in, by its ``seq``, with the reason."""

    seq: int
    reason: str
    body: str
    """The observation as it arrived (JSON, cut after :data:`MAX_KEPT_BYTES` characters)."""


@dataclass(frozen=True, slots=True)
class ObservationBatch:
    gateway_id: str
    observations: tuple[Observation, ...]
    epoch: str = LEGACY_EPOCH
    """The edge outbox that numbered these seqs (:data:`LEGACY_EPOCH` when it sent none)."""
    rejected: tuple[RejectedItem, ...] = ()
    """Observations of the message that were refused one by one (the others are taken in)."""


@dataclass(frozen=True, slots=True)
class RejectedRange:
    """Seqs the platform will never store (dead-lettered with ``reason``): the edge keeps them
    aside and stops sending them."""

    first_seq: int
    last_seq: int
    reason: str


@dataclass(frozen=True, slots=True)
class Ack:
    gateway_id: str
    committed_seq: int
    epoch: str = LEGACY_EPOCH
    rejected: tuple[RejectedRange, ...] = ()


def observation_to_dict(obs: Observation) -> dict[str, Any]:
    return {
        "id": obs.id,
        "gateway_id": obs.gateway_id,
        "seq": obs.seq,
        "device_id": obs.device_id,
        "source": obs.source,
        "code": obs.code,
        "mdc": obs.mdc,
        "value": str(obs.value),
        "unit": obs.unit,
        "time": obs.time.isoformat(),
        "time_source": obs.time_source.value,
        "flags": list(obs.flags),
    }


def encode_batch(
    gateway_id: str, observations: Sequence[Observation], epoch: str = LEGACY_EPOCH
) -> bytes:
    body: dict[str, Any] = {"v": WIRE_VERSION, "gateway_id": gateway_id}
    if epoch != LEGACY_EPOCH:
        body["epoch"] = epoch
    body["observations"] = [observation_to_dict(o) for o in observations]
    return json.dumps(body, separators=(",", ":")).encode()


def encode_ack(ack: Ack) -> bytes:
    body: dict[str, Any] = {
        "v": WIRE_VERSION,
        "gateway_id": ack.gateway_id,
        "committed_seq": ack.committed_seq,
    }
    if ack.epoch != LEGACY_EPOCH:
        body["epoch"] = ack.epoch
    if ack.rejected:
        body["rejected"] = [
            {"first_seq": r.first_seq, "last_seq": r.last_seq, "reason": r.reason}
            for r in ack.rejected
        ]
    return json.dumps(body).encode()


def _shown(value: Any) -> str:
    """A value for an error message: never the whole of a hostile one (nor a repr that
    recurses through its nesting)."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:36]}...({len(text)} chars)"


def _load(topic: str, payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError(topic, f"{len(payload)} bytes, more than {MAX_PAYLOAD_BYTES}")
    try:
        # pydantic-core's parser (Rust; the kernel imports pydantic anyway) takes a batch in
        # 60 % of json's time. What it refuses, json reads or refuses as before, with its
        # words: the two differ only in what they accept at the edges (a BOM, lone
        # surrogates), never in what they make of a text both accept.
        body = from_json(payload, cache_strings="keys")
    except ValueError:
        body = _json_load(topic, payload)
    if not isinstance(body, dict):
        raise PayloadError(topic, "top level is not an object")
    if body.get("v") != WIRE_VERSION:
        raise PayloadError(topic, f"unsupported wire version {_shown(body.get('v'))}")
    return body


def _json_load(topic: str, payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        # ValueError also covers an integer of more than 4300 digits.
        raise PayloadError(topic, f"not JSON: {str(exc)[:200]}") from None
    except RecursionError:
        raise PayloadError(topic, "JSON nested deeper than the decoder allows") from None


def _field(topic: str, body: dict[str, Any], key: str, kind: type[Any]) -> Any:
    value = body.get(key)
    # bool is an int in Python; a JSON true is never a valid number here.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise PayloadError(topic, f"{key}: expected {kind.__name__}, got {_shown(value)}")
    return value


def _text(topic: str, body: dict[str, Any], key: str, most: int) -> str:
    value: str = _field(topic, body, key, str)
    if not value or len(value) > most:
        raise PayloadError(topic, f"{key}: expected 1 to {most} characters, got {len(value)}")
    return value


def _count(topic: str, body: dict[str, Any], key: str, least: int, most: int) -> int:
    value: int = _field(topic, body, key, int)
    if not least <= value <= most:
        raise PayloadError(topic, f"{key}: must be in {least}..{most}, got {_shown(value)}")
    return value


def observation_from_dict(topic: str, item: dict[str, Any], gateway_id: str) -> Observation:
    """The observation in ``item``, with its structure checked (the edge reads its own outbox
    with this); :func:`decode_batch` checks the platform's bounds on top."""
    if not isinstance(item, dict):
        raise PayloadError(topic, "observation is not an object")
    raw_value = _field(topic, item, "value", str)
    try:
        value = Decimal(raw_value)
    except InvalidOperation:
        raise PayloadError(topic, f"value: not a decimal: {_shown(raw_value)}") from None
    if not value.is_finite():
        raise PayloadError(topic, f"value: not finite: {_shown(raw_value)}")
    raw_time = _field(topic, item, "time", str)
    try:
        time = datetime.fromisoformat(raw_time)
    except ValueError:
        raise PayloadError(topic, f"time: not ISO 8601: {_shown(raw_time)}") from None
    flags = _field(topic, item, "flags", list)
    if not all(isinstance(f, str) for f in flags):
        raise PayloadError(topic, "flags: expected a list of strings")
    seq = _count(topic, item, "seq", 1, MAX_SEQ)
    if item.get("gateway_id") != gateway_id:
        raise PayloadError(topic, "gateway_id of an observation differs from its batch")
    try:
        time_source = TimeSource(_field(topic, item, "time_source", str))
        return Observation(
            id=_field(topic, item, "id", str),
            gateway_id=gateway_id,
            seq=seq,
            device_id=_field(topic, item, "device_id", str),
            source=_field(topic, item, "source", str),
            code=_field(topic, item, "code", str),
            value=value,
            unit=_field(topic, item, "unit", str),
            time=time,
            time_source=time_source,
            flags=tuple(flags),
        )
    except (TryggheimError, ValueError) as exc:
        raise PayloadError(topic, str(exc)) from None


def _bounded(topic: str, obs: Observation) -> Observation:
    """The platform's bounds on a structurally valid observation: lengths that fit the
    record store's columns, a time that converts to UTC, and a unit and value that are
    plausible for the code. On the hot path: the common case is a few comparisons."""
    if not (
        0 < len(obs.id) <= MAX_ID_CHARS
        and 0 < len(obs.device_id) <= MAX_NAME_CHARS
        and 0 < len(obs.source) <= MAX_NAME_CHARS
    ):
        for key, text, most in (
            ("id", obs.id, MAX_ID_CHARS),
            ("device_id", obs.device_id, MAX_NAME_CHARS),
            ("source", obs.source, MAX_NAME_CHARS),
        ):
            if not 0 < len(text) <= most:
                raise PayloadError(
                    topic, f"{key}: expected 1 to {most} characters, got {len(text)}"
                )
    if len(text := str(obs.value)) > codes.MAX_VALUE_CHARS:
        raise PayloadError(
            topic, f"value: expected 1 to {codes.MAX_VALUE_CHARS} characters, got {len(text)}"
        )
    if obs.flags and (
        len(obs.flags) > MAX_FLAGS or not all(0 < len(f) <= MAX_FLAG_CHARS for f in obs.flags)
    ):
        raise PayloadError(
            topic, f"flags: at most {MAX_FLAGS} flags of 1 to {MAX_FLAG_CHARS} characters"
        )
    # A local year well inside the bounds is inside them in UTC too (offsets are < 1 day).
    if not EARLIEST_YEAR < obs.time.year < LATEST_YEAR:
        try:
            year = obs.time.astimezone(UTC).year
        except OverflowError:
            year = obs.time.year
        if not EARLIEST_YEAR <= year <= LATEST_YEAR:
            raise PayloadError(
                topic, f"time: {obs.time.isoformat()} is not in {EARLIEST_YEAR}..{LATEST_YEAR}"
            )
    try:
        codes.check_plausible(obs.code, obs.unit, obs.value)
    except ImplausibleValueError as exc:
        raise PayloadError(topic, f"{exc.code} in {exc.unit}: {exc.problem}") from None
    return obs


#: A time source by its wire text (``TimeSource(text)`` finds it the slow way).
_TIME_SOURCES = {s.value: s for s in TimeSource}


def _plainly_valid(
    item: Any, gateway_id: str, values: dict[tuple[str, str, str], Decimal]
) -> Observation | None:
    """The observation in ``item`` if :func:`observation_from_dict` and :func:`_bounded` would
    take it in as it is: the same checks, made without building what they need to say why
    (2-3x faster). None sends ``item`` their way, to be taken in or refused with its reason.

    ``values``: the batch's values found plausible so far, by code, unit and text (a batch
    repeats a few of them: 0 and 1 of events, a resting pulse)."""
    # Exact types: JSON gives nothing else, and bool, an int, is never a seq.
    if type(item) is not dict:
        return None
    get = item.get
    id_ = get("id")
    seq = get("seq")
    device_id = get("device_id")
    source = get("source")
    code = get("code")
    unit = get("unit")
    raw_value = get("value")
    raw_time = get("time")
    raw_source = get("time_source")
    flags = get("flags")
    if not (
        type(id_) is str
        and 0 < len(id_) <= MAX_ID_CHARS
        and type(seq) is int
        and 1 <= seq <= MAX_SEQ
        and get("gateway_id") == gateway_id
        and type(device_id) is str
        and 0 < len(device_id) <= MAX_NAME_CHARS
        and type(source) is str
        and 0 < len(source) <= MAX_NAME_CHARS
        and type(code) is str
        and type(unit) is str
        and type(raw_value) is str
        and type(raw_time) is str
        and type(raw_source) is str
        and type(flags) is list
    ):
        return None
    if (time_source := _TIME_SOURCES.get(raw_source)) is None:
        return None
    if flags and (
        len(flags) > MAX_FLAGS
        or not all(type(f) is str and 0 < len(f) <= MAX_FLAG_CHARS for f in flags)
    ):
        return None
    if (value := values.get((code, unit, raw_value))) is None:
        if (value := _plausible_value(code, unit, raw_value)) is None:
            return None
        values[(code, unit, raw_value)] = value
    try:
        time = datetime.fromisoformat(raw_time)
    except ValueError:
        return None
    # Aware: fromisoformat gives a fixed offset or none, never a tzinfo whose utcoffset() is
    # None (which costs as much as the parse to ask). Strictly inside the years: their edges
    # are for _bounded to decide in UTC.
    if time.tzinfo is None or not EARLIEST_YEAR < time.year < LATEST_YEAR:
        return None
    return prechecked_observation(
        gateway_id,
        device_id,
        source,
        code,
        value,
        unit,
        time,
        time_source,
        tuple(flags) if flags else (),
        seq,
        id_,
    )


def _plausible_value(code: str, unit: str, text: str) -> Decimal | None:
    """The value ``text`` if it is one that code ``code`` may have in ``unit``."""
    # A longer text may still be a short enough value ("0.000...1" is 1E-40): _bounded decides.
    if (found := codes.unit_of(code, unit)) is None or len(text) > codes.MAX_VALUE_CHARS:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    # The length of the text the value is stored as, which is not always the one that came.
    if not value.is_finite() or len(str(value)) > codes.MAX_VALUE_CHARS:
        return None
    return value if found.lowest <= value <= found.highest else None


def _kept(item: dict[str, Any]) -> str:
    """The observation as it arrived, for its dead letter."""
    try:
        text = json.dumps(item)
    except RecursionError:
        # Decoded a few frames up the stack, it may not encode again here.
        return '"(nested too deeply to keep)"'
    return text[:MAX_KEPT_BYTES]


def _item_seq(item: Any) -> int | None:
    """The seq an observation claims, if it is one the platform could store and name."""
    seq = item.get("seq") if isinstance(item, dict) else None
    if isinstance(seq, int) and not isinstance(seq, bool) and 1 <= seq <= MAX_SEQ:
        return seq
    return None


def decode_batch(topic: str, payload: bytes) -> ObservationBatch:
    """Decode an ``up/obs`` or ``up/event`` message. The gateway named in the topic must match
    the body: a gateway can only speak for itself (the broker ACL enforces the topic).

    A message that cannot be read as a whole raises :class:`PayloadError`; an observation in it
    that is malformed or out of bounds, but names a valid ``seq``, is refused alone (in
    ``rejected``) and the others are taken in."""
    body = _load(topic, payload)
    gateway_id = _text(topic, body, "gateway_id", MAX_NAME_CHARS)
    if gateway_id != gateway_of_topic(topic):
        raise PayloadError(topic, f"gateway_id {_shown(gateway_id)} does not match the topic")
    epoch = _epoch(topic, body)
    items = _field(topic, body, "observations", list)
    if len(items) > MAX_BATCH_OBSERVATIONS:
        raise PayloadError(topic, f"observations: more than {MAX_BATCH_OBSERVATIONS}")
    observations: list[Observation] = []
    rejected: list[RejectedItem] = []
    values: dict[tuple[str, str, str], Decimal] = {}
    for item in items:
        if (obs := _plainly_valid(item, gateway_id, values)) is not None:
            observations.append(obs)
            continue
        try:
            observations.append(_bounded(topic, observation_from_dict(topic, item, gateway_id)))
        except PayloadError as exc:
            seq = _item_seq(item)
            if seq is None:
                raise
            reason = exc.problem[:MAX_REASON_CHARS]
            rejected.append(RejectedItem(seq, reason, _kept(item)))
    return ObservationBatch(gateway_id, tuple(observations), epoch, tuple(rejected))


@dataclass(frozen=True, slots=True)
class SensorPlacement:
    """Where a home sensor is and what it is, from the gateway's sensor map: what a nurse reads
    ("Bad – bevegelse") instead of its address."""

    device_id: str
    kind: str
    room: str


#: At most this many sensors in one status (a home has a dozen).
MAX_SENSORS = 256


@dataclass(frozen=True, slots=True)
class GatewayStatusReport:
    gateway_id: str
    online: bool
    outbox_depth: int | None
    input_adjustments: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """(entry point, reason) → values the edge dropped or altered since it started (optional
    ``input_adjustments`` of the status, docs/wire.md)."""
    committed_seq: int | None = None
    """The highest seq the gateway was told is committed (and has deleted up to)."""
    epoch: str = LEGACY_EPOCH
    """The edge outbox ``committed_seq`` is of."""
    sensors: tuple[SensorPlacement, ...] | None = None
    """The sensor map (optional ``sensor_map`` of the status); None when the status has none (the
    will's offline), which leaves what the platform knows as it is."""


def decode_status(topic: str, payload: bytes) -> GatewayStatusReport:
    """The platform's part of a home gateway's retained ``status`` (:class:`EdgeStatus`, or the
    will's offline)."""
    if not topic.endswith("/status"):
        raise PayloadError(topic, "not a status topic")
    body = _load(topic, payload)
    gateway_id = _text(topic, body, "gateway_id", MAX_NAME_CHARS)
    if gateway_id != gateway_of_topic(topic):
        raise PayloadError(topic, f"gateway_id {_shown(gateway_id)} does not match the topic")
    state = _field(topic, body, "state", str)
    if state not in ("online", "offline"):
        raise PayloadError(topic, f"state: expected online or offline, got {_shown(state)}")
    depth = None
    if body.get("outbox_depth") is not None:
        depth = _count(topic, body, "outbox_depth", 0, MAX_COUNT)
    adjustments = _adjustments(topic, body.get("input_adjustments", {}))
    committed = None
    if body.get("committed_seq") is not None:
        committed = _count(topic, body, "committed_seq", 0, MAX_SEQ)
    raw = body.get("sensor_map")
    sensors = None if raw is None else _sensors(topic, raw)
    return GatewayStatusReport(
        gateway_id, state == "online", depth, adjustments, committed, _epoch(topic, body), sensors
    )


class EdgeAlarm(StrEnum):
    """What a home gateway's status warns about (``alarms``)."""

    OUTBOX_NEARLY_FULL = "outbox_nearly_full"
    """The outbox passed the warning fraction of its disk quota: the uplink has been down long."""
    OUTBOX_FULL = "outbox_full"
    """Over quota: home telemetry (room climate, link quality) is no longer stored."""
    URGENT_WAITING = "urgent_events_waiting"
    """A fall, panic, smoke or water-leak event is not yet committed by the platform."""
    OBSERVATIONS_REJECTED = "observations_rejected"
    """The platform refused observations for good (a rejected ack); they are kept aside."""


@dataclass(frozen=True, slots=True)
class DeviceReport:
    """One configured BLE device as the gateway last saw it (``devices`` of a status)."""

    kind: str
    last_seen: datetime | None
    battery: int | None
    connected: bool
    clock_error_s: float | None
    decode_errors: int


@dataclass(frozen=True, slots=True)
class EdgeStatus:
    """Everything a home gateway says about itself in its retained ``status`` (and in
    ``status.json`` for a technician on the box); :func:`decode_status` reads the platform's
    part of it. The fields after ``time`` are left out of the message while None."""

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
    clock_offset_s: float | None = None
    """The gateway's clock minus the platform's, from the last ``time_sync`` (always sent)."""
    sensor_map: tuple[SensorPlacement, ...] | None = None
    input_adjustments: Mapping[tuple[str, str], int] | None = None
    devices: Mapping[str, DeviceReport] | None = None
    """By BLE address."""
    sensors_seen: Mapping[str, datetime] | None = None
    """Each home sensor's name → when it last said something."""


def adjustments_to_json(counts: Mapping[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    """``{"ble": {"special_value": 2}, ...}``: a status's ``input_adjustments``."""
    body: dict[str, dict[str, int]] = {}
    for (source, reason), count in sorted(counts.items()):
        body.setdefault(source, {})[reason] = count
    return body


def status_to_json(status: EdgeStatus) -> dict[str, Any]:
    body: dict[str, Any] = {
        "v": WIRE_VERSION,
        "gateway_id": status.gateway_id,
        "state": status.state,
        "outbox_depth": status.outbox_depth,
        "urgent_waiting": status.urgent_waiting,
        "committed_seq": status.committed_seq,
        "last_seq": status.last_seq,
        "last_commit_at": status.last_commit_at,
        "outbox_bytes": status.outbox_bytes,
        "outbox_fill": status.outbox_fill,
        "telemetry_refused": status.telemetry_refused,
        "rejected": status.rejected,
        "epoch": status.epoch,
        "alarms": [a.value for a in status.alarms],
        "time": status.time,
        "clock_offset_s": status.clock_offset_s,
    }
    if status.sensor_map is not None:
        body["sensor_map"] = [
            {"device_id": s.device_id, "kind": s.kind, "room": s.room} for s in status.sensor_map
        ]
    if status.input_adjustments is not None:
        body["input_adjustments"] = adjustments_to_json(status.input_adjustments)
    if status.devices is not None:
        body["devices"] = {
            address: {
                "kind": d.kind,
                "last_seen": d.last_seen.isoformat() if d.last_seen else None,
                "battery": d.battery,
                "connected": d.connected,
                "clock_error_s": d.clock_error_s,
                "decode_errors": d.decode_errors,
            }
            for address, d in status.devices.items()
        }
    if status.sensors_seen is not None:
        body["sensors"] = {
            name: {"last_seen": seen.isoformat()} for name, seen in status.sensors_seen.items()
        }
    return body


def encode_status(status: EdgeStatus) -> bytes:
    return json.dumps(status_to_json(status)).encode()


def _sensors(topic: str, raw: object) -> tuple[SensorPlacement, ...]:
    problem = "sensor_map: expected [{device_id, kind, room}]"
    if not isinstance(raw, list) or len(raw) > MAX_SENSORS:
        raise PayloadError(topic, f"{problem}, at most {MAX_SENSORS}")
    placements = []
    for item in raw:
        if not isinstance(item, dict):
            raise PayloadError(topic, f"{problem}, got {_shown(item)}")
        placements.append(
            SensorPlacement(
                _text(topic, item, "device_id", MAX_NAME_CHARS),
                _text(topic, item, "kind", MAX_NAME_CHARS),
                _text(topic, item, "room", MAX_NAME_CHARS),
            )
        )
    return tuple(placements)


def _epoch(topic: str, body: dict[str, Any]) -> str:
    """The optional ``epoch`` of a batch or status: the legacy epoch when there is none."""
    if body.get("epoch", LEGACY_EPOCH) == LEGACY_EPOCH:
        return LEGACY_EPOCH
    epoch = _text(topic, body, "epoch", MAX_EPOCH_CHARS)
    if not _EPOCH_CHARS.fullmatch(epoch):
        raise PayloadError(topic, "epoch: letters, digits and '-' only")
    return epoch


def _adjustments(topic: str, raw: object) -> dict[tuple[str, str], int]:
    problem = "input_adjustments: expected {source: {reason: count}}"
    if not isinstance(raw, dict):
        raise PayloadError(topic, problem)
    counts: dict[tuple[str, str], int] = {}
    for source, reasons in raw.items():
        if not isinstance(reasons, dict):
            raise PayloadError(topic, problem)
        for reason, count in reasons.items():
            if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_SEQ:
                raise PayloadError(topic, f"{problem}, got {_shown(count)} for {_shown(reason)}")
            if len(source) > MAX_NAME_CHARS or len(reason) > MAX_NAME_CHARS:
                raise PayloadError(topic, f"input_adjustments: names of at most {MAX_NAME_CHARS}")
            counts[(source, reason)] = count
            # Each pair becomes a metric label: a status must not invent them by the thousand.
            if len(counts) > MAX_ADJUSTMENTS:
                raise PayloadError(topic, f"input_adjustments: more than {MAX_ADJUSTMENTS}")
    return counts


def decode_ack(topic: str, payload: bytes) -> Ack:
    body = _load(topic, payload)
    committed = _count(topic, body, "committed_seq", 0, MAX_SEQ)
    epoch = _epoch(topic, body)
    listed = body.get("rejected", [])
    if not isinstance(listed, list):
        raise PayloadError(topic, f"rejected: expected an array, got {_shown(listed)}")
    rejected = []
    for item in listed:
        if not isinstance(item, dict):
            raise PayloadError(topic, "rejected: expected objects")
        first = _count(topic, item, "first_seq", 1, MAX_SEQ)
        last = _count(topic, item, "last_seq", first, MAX_SEQ)
        reason = _field(topic, item, "reason", str)[:MAX_REASON_CHARS]
        rejected.append(RejectedRange(first, last, reason))
    gateway_id = _text(topic, body, "gateway_id", MAX_NAME_CHARS)
    return Ack(gateway_id, committed, epoch, tuple(rejected))


# --- commands (down/cmd) and their replies (up/reply) -----------------------------------------

#: A BLE device address as the edge keeps it: six upper-case hex pairs.
BLE_ADDRESS_PATTERN = r"^([0-9A-F]{2}:){5}[0-9A-F]{2}$"
_BLE_ADDRESS = re.compile(BLE_ADDRESS_PATTERN)

#: Settings the platform may change remotely. Not the uplink (a wrong broker address or password
#: sent by mistake would cut the gateway off for good) and not paths.
CONFIGURABLE = frozenset(
    {
        "timezone",
        "devices",
        "sensors",
        "batch_size",
        "resend_after_s",
        "status_interval_s",
        "outbox_quota_mb",
        "outbox_warn_fraction",
    }
)


@dataclass(frozen=True, slots=True)
class TimeSync:
    id: str
    platform_time: datetime


@dataclass(frozen=True, slots=True)
class DeviceToPair:
    address: str
    kind: codes.DeviceKind
    bond: bool | None = None
    """None: not said (the edge's default)."""
    set_clock: bool | None = None


@dataclass(frozen=True, slots=True)
class Pair:
    id: str
    device: DeviceToPair


@dataclass(frozen=True, slots=True)
class Unpair:
    id: str
    address: str


@dataclass(frozen=True, slots=True)
class ConfigUpdate:
    id: str
    settings: dict[str, Any]


Command = TimeSync | Pair | Unpair | ConfigUpdate


def encode_command(command: Command) -> bytes:
    """What the platform publishes on a gateway's ``down/cmd``."""
    body: dict[str, Any] = {"v": WIRE_VERSION, "id": command.id}
    match command:
        case TimeSync(platform_time=moment):
            body |= {"cmd": "time_sync", "platform_time": moment.isoformat()}
        case Pair(device=device):
            body |= {"cmd": "pair", "address": device.address, "kind": device.kind.value}
            for key, value in (("bond", device.bond), ("set_clock", device.set_clock)):
                if value is not None:
                    body[key] = value
        case Unpair(address=address):
            body |= {"cmd": "unpair", "address": address}
        case ConfigUpdate(settings=settings):
            body |= {"cmd": "config", "settings": settings}
    return json.dumps(body).encode()


def decode_command(topic: str, payload: bytes) -> Command:
    body = _load(topic, payload)
    command_id = body.get("id")
    if not isinstance(command_id, str) or not command_id:
        raise PayloadError(topic, "id: expected a non-empty string")
    match body.get("cmd"):
        case "time_sync":
            raw = body.get("platform_time")
            try:
                moment = datetime.fromisoformat(raw) if isinstance(raw, str) else None
            except ValueError:
                moment = None
            if moment is None or moment.utcoffset() is None:
                raise PayloadError(topic, "platform_time: expected ISO 8601 with an offset")
            return TimeSync(command_id, moment)
        case "pair":
            return Pair(command_id, _device_to_pair(topic, body))
        case "unpair":
            address = body.get("address")
            if not isinstance(address, str):
                raise PayloadError(topic, "address: expected a string")
            return Unpair(command_id, address.upper())
        case "config":
            settings = body.get("settings")
            if not isinstance(settings, dict) or not settings:
                raise PayloadError(topic, "settings: expected a non-empty object")
            refused = sorted(set(settings) - CONFIGURABLE)
            if refused:
                raise PayloadError(topic, f"settings: not changeable remotely: {refused}")
            return ConfigUpdate(command_id, settings)
        case other:
            raise PayloadError(topic, f"cmd: unknown command {_shown(other)}")


def _device_to_pair(topic: str, body: dict[str, Any]) -> DeviceToPair:
    address = body.get("address")
    if not isinstance(address, str) or not _BLE_ADDRESS.fullmatch(address.upper()):
        raise PayloadError(
            topic, f"pair: address: expected 11:22:33:AA:BB:CC, got {_shown(address)}"
        )
    raw_kind = body.get("kind")
    known = {k.value: k for k in codes.DeviceKind}
    if not isinstance(raw_kind, str) or raw_kind not in known:
        raise PayloadError(topic, f"pair: kind: one of {', '.join(known)}, not {_shown(raw_kind)}")
    kind = known[raw_kind]
    flags: dict[str, bool] = {}
    for key in ("bond", "set_clock"):
        if key in body:
            flags[key] = _field(topic, body, key, bool)
    return DeviceToPair(address.upper(), kind, **flags)


@dataclass(frozen=True, slots=True)
class CommandReply:
    """A gateway's answer on ``up/reply``."""

    id: str | None
    """The command's; None when the command could not be read far enough to find it."""
    ok: bool
    error: str | None = None
    restart: bool = False
    """The gateway restarts to apply the change."""
    gateway_time: datetime | None = None
    """Of a ``time_sync``: the gateway's clock when it answered, and how far it is off."""
    clock_offset_s: float | None = None


def encode_reply(reply: CommandReply) -> bytes:
    body: dict[str, Any] = {"v": WIRE_VERSION}
    if reply.id is not None:
        body["id"] = reply.id
    body["ok"] = reply.ok
    if reply.error is not None:
        body["error"] = reply.error
    if reply.restart:
        body["restart"] = True
    if reply.gateway_time is not None:
        body["gateway_time"] = reply.gateway_time.isoformat()
    if reply.clock_offset_s is not None:
        body["clock_offset_s"] = reply.clock_offset_s
    return json.dumps(body).encode()


def decode_reply(topic: str, payload: bytes) -> CommandReply:
    body = _load(topic, payload)
    command_id = None if body.get("id") is None else _text(topic, body, "id", MAX_NAME_CHARS)
    ok = _field(topic, body, "ok", bool)
    error = None if body.get("error") is None else _field(topic, body, "error", str)
    restart = body.get("restart", False) is True
    gateway_time = None
    if body.get("gateway_time") is not None:
        raw = _field(topic, body, "gateway_time", str)
        try:
            gateway_time = datetime.fromisoformat(raw)
        except ValueError:
            raise PayloadError(topic, f"gateway_time: not ISO 8601: {_shown(raw)}") from None
    offset = body.get("clock_offset_s")
    if offset is not None and (
        not isinstance(offset, int | float) or isinstance(offset, bool) or not isfinite(offset)
    ):
        raise PayloadError(topic, f"clock_offset_s: expected a number, got {_shown(offset)}")
    return CommandReply(command_id, ok, error, restart, gateway_time, offset)


#: Mosquitto ACL for the central broker: a home gateway (user name = gateway id) may publish
#: only under its own ``up/`` and ``status`` and read only its own ``down/``; the platform user
#: reads and writes the whole tree, including the ingest group's shared subscription.
BROKER_ACL = f"""\
pattern write {TOPIC_ROOT}/%u/up/#
pattern write {TOPIC_ROOT}/%u/status
pattern read {TOPIC_ROOT}/%u/down/#

user {PLATFORM_BROKER_USER}
topic readwrite tryggheim/#
topic read $share/+/tryggheim/#
"""
