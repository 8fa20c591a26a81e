"""``tryggheim ble decode <UUID> <HEX>``: decode one GATT characteristic value by hand.

Output contract (integrators and tests rely on it):

- the decoded value as a JSON object whose keys are the dataclass fields, snake_case names as
  in the GATT specification; a GATT Date Time is an object with ``year month day hours minutes
  seconds``. In Date Time (0x2A08) and Current Time (0x2A2B) the fields are as sent, 0 meaning
  "not known" (an unknown date keeps its known time of day); a timestamp inside a measurement
  whose date is unknown is ``null`` (the reading then gets the gateway's time);
- Decimals are JSON *strings* (``"37.20"``): a JSON number is read as a binary float by most
  consumers, which would lose the device's precision -- the reason the platform uses Decimal;
- an IEEE 11073 special value is its name as a string (``"nan"``, ``"nres"``,
  ``"positive_infinity"``, ``"negative_infinity"``, ``"reserved"``), never a number;
- enumerations by lower-case name (``"tympanum"``), a reserved enumeration value as
  ``"unknown(<n>)"``; status bit fields as a list of the names of the set bits; units as the
  specification writes them (``"mmHg"``, ``"kg/L"``, ``"celsius"``, ``"si"``);
- with ``--observations``: the JSON list of Observations in the wire format of
  :func:`tryggheim.wire.observation_to_dict` (``code``, ``mdc``, ``value``, ``unit``, ``time``,
  ``flags``, ``id``, ``gateway_id``, ``seq``, ``device_id``, ``source``, ``time_source``).

Arguments (parsed in :mod:`tryggheim.apps.cli`, so other commands do not import the decoders):
``UUID`` in hex with optional ``0x``, case-insensitive; ``HEX`` the value's bytes, optionally
``0x``-prefixed and split in groups by spaces, ``:`` or ``-``; ``--observations``;
``--device-id`` and ``--gateway-id`` (default ``cli``); ``--tz`` the device clock's zone
(default Europe/Oslo); ``--received-at`` the gateway receive time (ISO 8601 with offset, default
now) used for values without a device time.

Malformed input (bad hex, unknown UUID, a value the decoder rejects, unknown time zone) raises a
:class:`~tryggheim.errors.TryggheimError`, which ``tryggheim``'s ``main`` prints as one line on
stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum, IntFlag
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge.ble.gatt.fields import enum_fields
from edge.ble.gatt.registry import decode, observations_for
from tryggheim.errors import TryggheimError
from tryggheim.wire import observation_to_dict

_UUID = re.compile(r"(?:0x)?([0-9a-f]{1,4})", re.IGNORECASE)
_SEPARATORS = re.compile(r"[\s:-]")


class ArgumentError(TryggheimError):
    def __init__(self, argument: str, problem: str) -> None:
        self.argument = argument
        self.problem = problem
        super().__init__(f"{argument}: {problem}", hint="see tryggheim ble decode --help")


def parse_uuid(text: str) -> int:
    match = _UUID.fullmatch(text.strip())
    if match is None:
        raise ArgumentError("UUID", f"{text!r} is not a 16-bit UUID in hex such as 2A35")
    return int(match.group(1), 16)


def parse_hex(text: str) -> bytes:
    """Hex digits, optionally ``0x``-prefixed and grouped with spaces, ``:`` or ``-``."""
    cleaned = _SEPARATORS.sub("", text)
    if cleaned[:2].lower() == "0x":
        cleaned = cleaned[2:]
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise ArgumentError("HEX", f"{text!r} is not an even number of hex digits") from None


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ArgumentError("--tz", f"unknown time zone {name!r}") from None


def _received_at(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ArgumentError("--received-at", f"{text!r} is not an ISO 8601 time") from None
    if moment.utcoffset() is None:
        raise ArgumentError("--received-at", f"{text!r} has no UTC offset")
    return moment


def to_json(value: object) -> Any:
    """A decoded value as JSON-ready data (see the module docstring for the rules)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        raw_enums = enum_fields(type(value))
        result: dict[str, Any] = {}
        for field in dataclasses.fields(value):
            item = getattr(value, field.name)
            is_raw = field.name in raw_enums and type(item) is int
            result[field.name] = f"unknown({item})" if is_raw else to_json(item)
        return result
    if isinstance(value, datetime):
        return {
            "year": value.year,
            "month": value.month,
            "day": value.day,
            "hours": value.hour,
            "minutes": value.minute,
            "seconds": value.second,
        }
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, IntFlag):
        return [bit.name.lower() for bit in type(value) if bit in value and bit.name]
    if isinstance(value, str):  # StrEnum (units, special values) included: by value
        return str(value)
    if isinstance(value, Enum):
        return value.name.lower()
    if isinstance(value, tuple):
        return [to_json(item) for item in value]
    return value


def run(args: argparse.Namespace) -> int:
    """Decode and print; errors are raised for ``main`` to report."""
    uuid16 = parse_uuid(args.uuid)
    data = parse_hex(" ".join(args.hex))
    tz = _zone(args.tz)
    received_at = _received_at(args.received_at)
    decoded = decode(uuid16, data)
    if args.observations:
        observations = observations_for(
            uuid16,
            decoded,
            gateway_id=args.gateway_id,
            device_id=args.device_id,
            received_at=received_at,
            tz=tz,
        )
        output: Any = [observation_to_dict(o) for o in observations]
    else:
        output = to_json(decoded)
    sys.stdout.write(json.dumps(output, indent=2, ensure_ascii=False) + "\n")
    return 0
