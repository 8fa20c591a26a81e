"""The users of the embedded identity store (people and machines) and their care teams."""

from __future__ import annotations

from collections.abc import Collection
from typing import NamedTuple

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.records.models import User, user_teams


class SessionFacts(NamedTuple):
    """What a token check needs of a user's row."""

    tenant_id: str
    disabled: bool
    token_version: int


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    def add(
        self, tenant_id: str, *, username: str, display_name: str, roles: str, password_hash: str
    ) -> User:
        user = User(
            username=username,
            display_name=display_name,
            tenant_id=tenant_id,
            roles=roles,
            password_hash=password_hash,
            disabled=False,
        )
        self._s.add(user)
        return user

    async def get(self, user_id: int) -> User | None:
        return await self._s.get(User, user_id)

    async def named(self, username: str) -> User | None:
        user: User | None = await self._s.scalar(select(User).where(User.username == username))
        return user

    async def of_tenant(self, tenant_id: str) -> list[User]:
        return list(
            await self._s.scalars(
                select(User).where(User.tenant_id == tenant_id).order_by(User.username)
            )
        )

    async def display_names(self, tenant_id: str, user_ids: Collection[int]) -> dict[int, str]:
        rows = await self._s.execute(
            select(User.id, User.display_name).where(
                User.tenant_id == tenant_id, User.id.in_(user_ids)
            )
        )
        return {user_id: name for user_id, name in rows}

    async def session_facts(self, user_id: int) -> SessionFacts | None:
        row = (
            await self._s.execute(
                select(User.tenant_id, User.disabled, User.token_version).where(User.id == user_id)
            )
        ).first()
        return None if row is None else SessionFacts(*row)

    async def set_password_hash(self, username: str, password_hash: str) -> None:
        await self._s.execute(
            update(User).where(User.username == username).values(password_hash=password_hash)
        )

    async def count(self) -> int:
        return int(await self._s.scalar(select(func.count()).select_from(User)) or 0)

    async def team_ids(self, user_id: int) -> tuple[int, ...]:
        rows = await self._s.scalars(
            select(user_teams.c.team_id)
            .where(user_teams.c.user_id == user_id)
            .order_by(user_teams.c.team_id)
        )
        return tuple(rows)

    async def set_teams(self, user_id: int, team_ids: Collection[int], *, replace: bool) -> None:
        """Put the user in these teams; ``replace``: and in no other."""
        if replace:
            await self._s.execute(delete(user_teams).where(user_teams.c.user_id == user_id))
        if team_ids:
            await self._s.execute(
                user_teams.insert(), [{"user_id": user_id, "team_id": t} for t in set(team_ids)]
            )
