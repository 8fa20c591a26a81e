"""Commands from the platform to a home gateway (``tryggheim/v1/{gateway}/down/cmd``).

``{"v": 1, "id": "...", "cmd": "time_sync" | "pair" | "unpair" | "config", ...}``:

- ``time_sync`` with ``platform_time`` (ISO 8601 with offset): the gateway reports how far its own
  clock is from the platform's (device clocks are corrected from the gateway's clock, so an off
  gateway clock must be seen). The gateway's system clock itself is NTP's business.
- ``pair`` with ``address``, ``kind`` and optionally ``bond`` / ``set_clock``: read this BLE
  device from now on; ``unpair`` with ``address``: stop.
- ``config`` with ``settings``: replace some settings (see :data:`CONFIGURABLE`).

Pairing and configuration changes are kept in ``overrides.json`` beside the outbox, layered over
the config file at start, so they survive restarts; the agent restarts itself to apply them.
Every command is answered on ``up/reply`` with the command's ``id`` and ``ok`` or an ``error``.
Pure functions here; the agent applies them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edge.config import DeviceSettings, EdgeSettings
from edge.status import write_atomically
from tryggheim.config import validate_settings
from tryggheim.errors import ConfigError, PayloadError

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
class Pair:
    id: str
    device: DeviceSettings


@dataclass(frozen=True, slots=True)
class Unpair:
    id: str
    address: str


@dataclass(frozen=True, slots=True)
class ConfigUpdate:
    id: str
    settings: dict[str, Any]


Command = TimeSync | Pair | Unpair | ConfigUpdate


def decode_command(topic: str, payload: bytes) -> Command:
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError(topic, f"not JSON: {exc}") from None
    if not isinstance(body, dict) or body.get("v") != 1:
        raise PayloadError(topic, "not a version 1 command object")
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
            fields = {k: body[k] for k in ("address", "kind", "bond", "set_clock") if k in body}
            try:
                return Pair(command_id, DeviceSettings.model_validate(fields))
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first["loc"])
                raise PayloadError(topic, f"pair: {where}: {first['msg']}") from None
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
            raise PayloadError(topic, f"cmd: unknown command {other!r}")


def overrides_path(settings: EdgeSettings) -> Path:
    return settings.outbox_path.parent / "overrides.json"


def load_overrides(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        overrides = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(str(path), "(file)", f"unreadable: {exc}") from None
    if not isinstance(overrides, dict):
        raise ConfigError(str(path), "(top level)", "not an object")
    return overrides


def save_overrides(path: Path, overrides: dict[str, Any]) -> None:
    write_atomically(path, json.dumps(overrides, indent=2))


def with_overrides(settings: EdgeSettings, overrides: dict[str, Any]) -> EdgeSettings:
    """The config file's settings with the remote changes layered over them."""
    if not overrides:
        return settings
    # Python mode, not JSON: a JSON dump masks the secrets (the broker password) as "****".
    merged = settings.model_dump() | overrides
    return validate_settings(EdgeSettings, "overrides.json", merged)


def apply(command: Pair | Unpair | ConfigUpdate, settings: EdgeSettings) -> dict[str, Any]:
    """The overrides after ``command``, validated against the whole configuration."""
    current = settings.model_dump(mode="json")
    match command:
        case Pair(device=device):
            devices = [d for d in current["devices"] if d["address"] != device.address]
            change: dict[str, Any] = {"devices": [*devices, device.model_dump(mode="json")]}
        case Unpair(address=address):
            change = {"devices": [d for d in current["devices"] if d["address"] != address]}
        case ConfigUpdate(settings=new):
            change = new
    validate_settings(EdgeSettings, "config command", current | change)
    return change
