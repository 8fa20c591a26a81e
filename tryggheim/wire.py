"""The MQTT wire contract between home gateways and the care platform (docs/wire.md).

Pure functions: bytes in, frozen dataclasses out, :class:`PayloadError` naming what is wrong.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from tryggheim.domain import Observation, TimeSource
from tryggheim.errors import PayloadError, TryggheimError

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


@dataclass(frozen=True, slots=True)
class ObservationBatch:
    gateway_id: str
    observations: tuple[Observation, ...]


@dataclass(frozen=True, slots=True)
class Ack:
    gateway_id: str
    committed_seq: int


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


def encode_batch(gateway_id: str, observations: Sequence[Observation]) -> bytes:
    body = {
        "v": WIRE_VERSION,
        "gateway_id": gateway_id,
        "observations": [observation_to_dict(o) for o in observations],
    }
    return json.dumps(body, separators=(",", ":")).encode()


def encode_ack(ack: Ack) -> bytes:
    body = {"v": WIRE_VERSION, "gateway_id": ack.gateway_id, "committed_seq": ack.committed_seq}
    return json.dumps(body).encode()


def _load(topic: str, payload: bytes) -> dict[str, Any]:
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError(topic, f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise PayloadError(topic, "top level is not an object")
    if body.get("v") != WIRE_VERSION:
        raise PayloadError(topic, f"unsupported wire version {body.get('v')!r}")
    return body


def _field(topic: str, body: dict[str, Any], key: str, kind: type[Any]) -> Any:
    value = body.get(key)
    # bool is an int in Python; a JSON true is never a valid number here.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise PayloadError(topic, f"{key}: expected {kind.__name__}, got {value!r}")
    return value


def observation_from_dict(topic: str, item: dict[str, Any], gateway_id: str) -> Observation:
    if not isinstance(item, dict):
        raise PayloadError(topic, "observation is not an object")
    raw_value = _field(topic, item, "value", str)
    try:
        value = Decimal(raw_value)
    except InvalidOperation:
        raise PayloadError(topic, f"value: not a decimal: {raw_value!r}") from None
    if not value.is_finite():
        raise PayloadError(topic, f"value: not finite: {raw_value!r}")
    raw_time = _field(topic, item, "time", str)
    try:
        time = datetime.fromisoformat(raw_time)
    except ValueError:
        raise PayloadError(topic, f"time: not ISO 8601: {raw_time!r}") from None
    flags = _field(topic, item, "flags", list)
    if not all(isinstance(f, str) for f in flags):
        raise PayloadError(topic, "flags: expected a list of strings")
    seq = _field(topic, item, "seq", int)
    if seq < 1:
        raise PayloadError(topic, f"seq: must be >= 1, got {seq}")
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


def decode_batch(topic: str, payload: bytes) -> ObservationBatch:
    """Decode an ``up/obs`` or ``up/event`` message. The gateway named in the topic must match
    the body: a gateway can only speak for itself (the broker ACL enforces the topic)."""
    body = _load(topic, payload)
    gateway_id = _field(topic, body, "gateway_id", str)
    if gateway_id != gateway_of_topic(topic):
        raise PayloadError(topic, f"gateway_id {gateway_id!r} does not match the topic")
    items = _field(topic, body, "observations", list)
    observations = tuple(observation_from_dict(topic, item, gateway_id) for item in items)
    return ObservationBatch(gateway_id, observations)


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


def decode_status(topic: str, payload: bytes) -> GatewayStatusReport:
    """A home gateway's retained ``status`` (edge.status.EdgeStatus, or the will's offline)."""
    if not topic.endswith("/status"):
        raise PayloadError(topic, "not a status topic")
    body = _load(topic, payload)
    gateway_id = _field(topic, body, "gateway_id", str)
    if gateway_id != gateway_of_topic(topic):
        raise PayloadError(topic, f"gateway_id {gateway_id!r} does not match the topic")
    state = _field(topic, body, "state", str)
    if state not in ("online", "offline"):
        raise PayloadError(topic, f"state: expected online or offline, got {state!r}")
    depth = body.get("outbox_depth")
    if depth is not None and (not isinstance(depth, int) or isinstance(depth, bool) or depth < 0):
        raise PayloadError(topic, f"outbox_depth: expected a count, got {depth!r}")
    adjustments = _adjustments(topic, body.get("input_adjustments", {}))
    committed = body.get("committed_seq")
    if committed is not None and not (
        isinstance(committed, int) and not isinstance(committed, bool) and 0 <= committed < 2**63
    ):
        raise PayloadError(topic, f"committed_seq: expected a seq, got {committed!r}")
    return GatewayStatusReport(gateway_id, state == "online", depth, adjustments, committed)


def _adjustments(topic: str, raw: object) -> dict[tuple[str, str], int]:
    problem = "input_adjustments: expected {source: {reason: count}}"
    if not isinstance(raw, dict):
        raise PayloadError(topic, problem)
    counts: dict[tuple[str, str], int] = {}
    for source, reasons in raw.items():
        if not isinstance(reasons, dict):
            raise PayloadError(topic, problem)
        for reason, count in reasons.items():
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise PayloadError(topic, f"{problem}, got {count!r} for {source}/{reason}")
            counts[(source, reason)] = count
    return counts


def decode_ack(topic: str, payload: bytes) -> Ack:
    body = _load(topic, payload)
    committed = _field(topic, body, "committed_seq", int)
    if committed < 0:
        raise PayloadError(topic, f"committed_seq: must be >= 0, got {committed}")
    return Ack(_field(topic, body, "gateway_id", str), committed)


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
