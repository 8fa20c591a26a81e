"""Refresh-token sessions: each sign-in is a family of single-use tokens (stored as hashes),
rotated on every refresh and revoked together."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.records.models import RefreshTokenRow


class RefreshTokenRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    def add(
        self,
        *,
        token_hash: str,
        family_id: str,
        user_id: int,
        token_version: int,
        issued_at: datetime,
        expires_at: datetime,
    ) -> None:
        self._s.add(
            RefreshTokenRow(
                token_hash=token_hash,
                family_id=family_id,
                user_id=user_id,
                token_version=token_version,
                issued_at=issued_at,
                expires_at=expires_at,
            )
        )

    async def locked(self, token_hash: str) -> RefreshTokenRow | None:
        """The token's row under its lock until the transaction ends (one rotation at a
        time)."""
        row: RefreshTokenRow | None = await self._s.scalar(
            select(RefreshTokenRow)
            .where(RefreshTokenRow.token_hash == token_hash)
            .with_for_update()
        )
        return row

    async def family_of(self, token_hash: str) -> str | None:
        family: str | None = await self._s.scalar(
            select(RefreshTokenRow.family_id).where(RefreshTokenRow.token_hash == token_hash)
        )
        return family

    async def revoke_family(self, family_id: str, now: datetime) -> None:
        await self._s.execute(
            update(RefreshTokenRow)
            .where(RefreshTokenRow.family_id == family_id, RefreshTokenRow.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    async def sweep_expired(self, now: datetime) -> None:
        await self._s.execute(delete(RefreshTokenRow).where(RefreshTokenRow.expires_at < now))
