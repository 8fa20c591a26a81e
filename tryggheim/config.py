"""Loading typed settings from TOML files with errors that name the file, the key and the problem.

Settings classes are pydantic-settings models: values come from the file passed in, and any key
the file leaves out can come from an environment variable (so secrets such as broker passwords
need not sit in the file); when both set a key, the file wins. Nothing is read at import time.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from tryggheim.errors import ConfigError

SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(str(path), "(file)", "no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "(syntax)", str(exc)) from None


def validate_settings(cls: type[SettingsT], source: str, data: dict[str, Any]) -> SettingsT:
    try:
        return cls(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(top level)"
        problem = first["msg"]
        if len(exc.errors()) > 1:
            problem += f" (and {len(exc.errors()) - 1} more problems)"
        raise ConfigError(source, key, problem) from None


def load_settings(cls: type[SettingsT], path: Path) -> SettingsT:
    return validate_settings(cls, str(path), read_toml(path))
