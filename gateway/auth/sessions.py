"""Refresh tokens of sign-in sessions in the record store (docs/auth.md, "A shift-long
session"): opaque random tokens, stored only as their SHA-256, used once each. Every token of
one sign-in shares a family id and the family's absolute end (``auth.session_max_s``).

A rotated token presented again after ``auth.refresh_reuse_grace_s`` means two holders of
one token, one of them not the nurse: the whole family is revoked, so the thief's copy and
hers both end and she signs in again. Each refresh also checks the account: disabled, deleted
or a raised ``token_version`` ends the family."""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update

from gateway.auth import AuthSettings, SessionEnded
from gateway.auth.web import IssuedRefresh, UserRecord
from gateway.records.models import RefreshTokenRow, User
from gateway.records.store import RecordStore

log = logging.getLogger(__name__)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _user_id(subject: str) -> int:
    _, _, number = subject.partition(":")
    if not number.isdigit() or len(number) > 18:
        raise ValueError(f"not a stored user's subject: {subject!r}")
    return int(number)


class RefreshSessions:
    def __init__(self, store: RecordStore, settings: AuthSettings) -> None:
        self._store = store
        self._settings = settings

    async def start(self, user: UserRecord, *, now: datetime) -> IssuedRefresh:
        """A new family for a password sign-in; ended families' rows are swept at the same
        time (nothing else reads them)."""
        token = secrets.token_urlsafe(32)
        expires_at = now + timedelta(seconds=self._settings.session_max_s)
        async with self._store.session() as s:
            await s.execute(delete(RefreshTokenRow).where(RefreshTokenRow.expires_at < now))
            s.add(
                RefreshTokenRow(
                    token_hash=token_hash(token),
                    family_id=secrets.token_hex(16),
                    user_id=_user_id(user.subject),
                    token_version=user.token_version,
                    issued_at=now,
                    expires_at=expires_at,
                )
            )
        return IssuedRefresh(token, expires_at)

    async def rotate(self, token: str, *, now: datetime) -> tuple[str, IssuedRefresh]:
        """The username of the session's user and the family's next token; ``SessionEnded``
        when the session cannot go on (a reuse revokes the family, committed before the raise)."""
        ended: SessionEnded | None = None
        async with self._store.session() as s:
            row = await s.scalar(
                select(RefreshTokenRow)
                .where(RefreshTokenRow.token_hash == token_hash(token))
                .with_for_update()
            )
            if row is None:
                raise SessionEnded("unknown", "the refresh token is not known")
            user = await s.get(User, row.user_id)
            grace = timedelta(seconds=self._settings.refresh_reuse_grace_s)
            if row.revoked_at is not None:
                ended = SessionEnded("revoked", "signed out or revoked")
            elif now >= row.expires_at:
                ended = SessionEnded("expired", "the session's maximum length was reached")
            elif row.rotated_at is not None and now - row.rotated_at > grace:
                log.warning(
                    "refresh token of family %s used again %s after rotation: family revoked",
                    row.family_id,
                    now - row.rotated_at,
                )
                ended = SessionEnded("reused", "a refresh token was used twice")
            elif user is None or user.disabled or user.token_version != row.token_version:
                ended = SessionEnded("account", "the account was disabled or its access changed")
            if ended is not None:
                await s.execute(
                    update(RefreshTokenRow)
                    .where(
                        RefreshTokenRow.family_id == row.family_id,
                        RefreshTokenRow.revoked_at.is_(None),
                    )
                    .values(revoked_at=now)
                )
            else:
                assert user is not None
                if row.rotated_at is None:
                    row.rotated_at = now
                following = secrets.token_urlsafe(32)
                s.add(
                    RefreshTokenRow(
                        token_hash=token_hash(following),
                        family_id=row.family_id,
                        user_id=row.user_id,
                        token_version=row.token_version,
                        issued_at=now,
                        expires_at=row.expires_at,
                    )
                )
                return user.username, IssuedRefresh(following, row.expires_at)
        raise ended

    async def end(self, token: str, *, now: datetime) -> None:
        """Sign out: the token's whole family is revoked (an unknown token is no error)."""
        async with self._store.session() as s:
            family = await s.scalar(
                select(RefreshTokenRow.family_id).where(
                    RefreshTokenRow.token_hash == token_hash(token)
                )
            )
            if family is not None:
                await s.execute(
                    update(RefreshTokenRow)
                    .where(
                        RefreshTokenRow.family_id == family, RefreshTokenRow.revoked_at.is_(None)
                    )
                    .values(revoked_at=now)
                )
