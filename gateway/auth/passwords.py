"""Password hashing (Argon2id through pwdlib) for the embedded password flow."""

from __future__ import annotations

import secrets

from pwdlib import PasswordHash
from pwdlib.exceptions import UnknownHashError
from pwdlib.hashers.argon2 import Argon2Hasher


class Passwords:
    """Hash and verify passwords. Stored hashes are self-describing PHC strings
    (``$argon2id$v=19$m=...``), so parameters can be raised later: ``verify_and_update`` then
    returns a new hash to store."""

    def __init__(self, hasher: Argon2Hasher | None = None) -> None:
        self._hash = PasswordHash((hasher or Argon2Hasher(),))
        self._dummy = self._hash.hash("tryggheim-dummy-password")

    def hash(self, password: str) -> str:
        if not password:
            raise ValueError("empty password")
        return self._hash.hash(password)

    def verify(self, password: str, stored_hash: str) -> bool:
        return self.verify_and_update(password, stored_hash)[0]

    def verify_and_update(self, password: str, stored_hash: str) -> tuple[bool, str | None]:
        """(matches, new hash to store or None). A stored value that is not a known hash never
        matches."""
        try:
            return self._hash.verify_and_update(password, stored_hash)
        except UnknownHashError:
            return False, None

    def dummy_verify(self, password: str) -> None:
        """Spend the time of one verification, so an unknown username is not faster to answer
        than a wrong password."""
        self._hash.verify(password, self._dummy)


def temporary_password() -> str:
    """A password an admin gives a user who lost hers (16 URL-safe characters, 96 bits)."""
    return secrets.token_urlsafe(12)
