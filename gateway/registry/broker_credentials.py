"""Broker credentials of home gateways: each gets a random password, shown once when it is
provisioned; the platform keeps only the Mosquitto password-file hash and renders the broker's
password file (static users from a base file, then every home gateway)."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from tryggheim.errors import TryggheimError
from tryggheim.wire import PLATFORM_BROKER_USER

#: Mosquitto's ``$7$`` format: PBKDF2-HMAC-SHA512 with a 12-byte salt. 101 rounds is what
#: ``mosquitto_passwd`` writes; it is enough here because the passwords are 256-bit random
#: tokens, not something a person chose.
_ROUNDS = 101
_SALT_BYTES = 12


def new_password() -> str:
    return secrets.token_urlsafe(32)


def mosquitto_hash(password: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _ROUNDS)
    return f"$7${_ROUNDS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


class BrokerUserTaken(TryggheimError):
    """A home gateway would take the name of a static broker user. Mosquitto keeps the last
    line of a user in its password file, so the gateway's password would replace the static
    user's, and the ACL would give the gateway that user's rights."""

    def __init__(self, user: str) -> None:
        self.user = user
        super().__init__(
            f"{user!r} is a static broker user; a home gateway cannot have its name",
            hint="choose another gateway id",
        )


def static_users(base: Path | None) -> frozenset[str]:
    """The platform's own broker user and every user of the base password file."""
    text = base.read_text() if base is not None else ""
    return frozenset({PLATFORM_BROKER_USER}) | {
        line.split(":", 1)[0] for line in text.splitlines() if line.strip()
    }


def check_gateway_user(gateway_id: str, base: Path | None) -> None:
    """Raise :class:`BrokerUserTaken` when ``gateway_id`` names a static broker user."""
    if gateway_id in static_users(base):
        raise BrokerUserTaken(gateway_id)


def write_password_file(path: Path, base: Path | None, gateway_lines: Sequence[str]) -> None:
    """Atomically replace ``path`` with ``base``'s lines followed by ``gateway_lines``; the
    broker reads it on SIGHUP (``systemctl reload mosquitto``). A gateway line that names a
    static user (:func:`static_users`) is refused and nothing is written."""
    for line in gateway_lines:
        check_gateway_user(line.split(":", 1)[0], base)
    text = base.read_text() if base is not None else ""
    if text and not text.endswith("\n"):
        text += "\n"
    text += "".join(f"{line}\n" for line in gateway_lines)
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(text)
    os.chmod(partial, 0o640)
    partial.replace(path)
