"""What the home gateway does with the platform's commands (their format, and decoding, are the
kernel's: :mod:`tryggheim.wire`, docs/wire.md).

Pairing and configuration changes are kept in ``overrides.json`` beside the outbox, layered over
the config file at start, so they survive restarts; the agent restarts itself to apply them.
Every command is answered on ``up/reply`` with the command's ``id`` and ``ok`` or an ``error``.
Pure functions here; the agent applies them.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edge.config import DeviceSettings, EdgeSettings
from edge.status import write_atomically
from tryggheim.config import validate_settings
from tryggheim.errors import ConfigError
from tryggheim.wire import ConfigUpdate, Pair, Unpair


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
            said = {key: value for key, value in asdict(device).items() if value is not None}
            paired = DeviceSettings.model_validate(said).model_dump(mode="json")
            devices = [d for d in current["devices"] if d["address"] != device.address]
            change: dict[str, Any] = {"devices": [*devices, paired]}
        case Unpair(address=address):
            change = {"devices": [d for d in current["devices"] if d["address"] != address]}
        case ConfigUpdate(settings=new):
            change = new
    validate_settings(EdgeSettings, "config command", current | change)
    return change
