"""Tenants (municipalities) and the care teams inside them."""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.records.models import CareTeam, Tenant, User, user_teams


class TenantRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def get(self, tenant_id: str) -> Tenant | None:
        return await self._s.get(Tenant, tenant_id)

    def add(self, tenant_id: str, name: str, timezone: str) -> Tenant:
        tenant = Tenant(id=tenant_id, name=name, timezone=timezone)
        self._s.add(tenant)
        return tenant

    # --- care teams ---
    def add_team(self, tenant_id: str, name: str) -> CareTeam:
        team = CareTeam(tenant_id=tenant_id, name=name)
        self._s.add(team)
        return team

    async def team(self, tenant_id: str, team_id: int) -> CareTeam | None:
        team = await self._s.get(CareTeam, team_id)
        return team if team is not None and team.tenant_id == tenant_id else None

    async def teams(self, tenant_id: str) -> list[CareTeam]:
        return list(
            await self._s.scalars(
                select(CareTeam).where(CareTeam.tenant_id == tenant_id).order_by(CareTeam.name)
            )
        )

    async def team_named(self, tenant_id: str, name: str) -> int | None:
        team_id: int | None = await self._s.scalar(
            select(CareTeam.id).where(CareTeam.tenant_id == tenant_id, CareTeam.name == name)
        )
        return team_id

    async def remove_team(self, team: CareTeam) -> None:
        """Its members leave it, and their tokens (which name the team) end now; its patients
        are the caller's (see PatientRepository)."""
        members = select(user_teams.c.user_id).where(user_teams.c.team_id == team.id)
        await self._s.execute(
            update(User).where(User.id.in_(members)).values(token_version=User.token_version + 1)
        )
        await self._s.execute(delete(user_teams).where(user_teams.c.team_id == team.id))
        await self._s.delete(team)
