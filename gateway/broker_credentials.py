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


def write_password_file(path: Path, base: Path | None, gateway_lines: Sequence[str]) -> None:
    """Atomically replace ``path`` with ``base``'s lines followed by ``gateway_lines``; the
    broker reads it on SIGHUP (``systemctl reload mosquitto``)."""
    text = base.read_text() if base is not None else ""
    if text and not text.endswith("\n"):
        text += "\n"
    text += "".join(f"{line}\n" for line in gateway_lines)
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(text)
    os.chmod(partial, 0o640)
    partial.replace(path)
