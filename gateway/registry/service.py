"""The registry in the record store: tenants, care teams, users, patients with their care plan,
home gateways and devices. Every query is limited to one tenant; the routes never see another
municipality's rows. Errors are typed so the API can answer 404 / 409 precisely."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from gateway.alarms.careplan import CarePlan
from gateway.auth import Principal, Role, TeamScope, TokenRevoked
from gateway.auth.web import UserRecord
from gateway.records.models import (
    AlarmRow,
    AuditEntry,
    CareTeam,
    Device,
    DeviceName,
    GatewayProgress,
    HomeGateway,
    HomeSensor,
    Patient,
    Tenant,
    User,
    user_teams,
)
from gateway.records.store import RecordStore
from gateway.records.unit_of_work import PatientRegistered, PatientScope, record
from tryggheim.codes import DeviceProfile
from tryggheim.errors import TryggheimError


class RegistryError(TryggheimError):
    status_code = 400


class NotFound(RegistryError):
    status_code = 404

    def __init__(self, what: str, key: object) -> None:
        self.what = what
        self.key = key
        super().__init__(f"no {what} {key}", hint="check the id; it may belong to another tenant")


class Conflict(RegistryError):
    status_code = 409

    def __init__(self, what: str, key: object) -> None:
        self.what = what
        self.key = key
        super().__init__(f"{what} {key} already exists", hint="choose another id or update it")


def _team_filter(scope: TeamScope) -> list[ColumnElement[bool]]:
    conditions = [Patient.tenant_id == scope.tenant_id]
    if not scope.all_teams:
        ids = [int(t) for t in scope.team_ids if t.isdigit()]
        conditions.append(Patient.care_team_id.in_(ids))
    return conditions


@dataclass(frozen=True, slots=True)
class DevicePlace:
    """What a device is and where, for naming it to a nurse."""

    sensor_kind: str | None
    """A home sensor's kind (its gateway's sensor map)."""
    profile: str | None
    """A paired medical device's IEEE 11073 profile."""
    room: str | None = None
    name: str | None = None
    """The name an admin gave it ("Ytterdør")."""


@dataclass(frozen=True, slots=True)
class HomeDevice:
    """A device of a home as the admin names it: a home sensor of its gateway's sensor map, or a
    paired medical device (``profile``)."""

    gateway_id: str
    device_id: str
    patient_id: int | None
    sensor_kind: str | None
    room: str | None
    profile: str | None
    name: str | None


@dataclass(frozen=True, slots=True)
class UserWithTeams:
    user: User
    team_ids: tuple[int, ...]


#: Sessions remembered as checked at most this many (then the memory starts afresh).
_MAX_CHECKED_SESSIONS = 10_000


class Registry:
    def __init__(self, store: RecordStore, *, session_check_cache_s: float = 0.0) -> None:
        """``session_check_cache_s``: how long a token found valid by :meth:`check_session`
        is taken as valid without asking the database again (0: ask on every request)."""
        self._store = store
        self._session_check_cache_s = session_check_cache_s
        self._checked_sessions: dict[tuple[str, str, int | None], float] = {}

    # --- tenants ---
    async def ensure_tenant(self, tenant_id: str, name: str, timezone: str) -> Tenant:
        async with self._store.session() as s:
            tenant = await s.get(Tenant, tenant_id)
            if tenant is None:
                tenant = Tenant(id=tenant_id, name=name, timezone=timezone)
                s.add(tenant)
            else:
                tenant.name, tenant.timezone = name, timezone
            await s.flush()
            return tenant

    async def tenant(self, tenant_id: str) -> Tenant:
        async with self._store.session() as s:
            tenant = await s.get(Tenant, tenant_id)
            if tenant is None:
                raise NotFound("tenant", tenant_id)
            return tenant

    async def set_retention(
        self, tenant_id: str, *, observations_days: int, alarms_days: int, audit_days: int
    ) -> Tenant:
        async with self._store.session() as s:
            tenant = await s.get(Tenant, tenant_id)
            if tenant is None:
                raise NotFound("tenant", tenant_id)
            tenant.retention_observations_days = observations_days
            tenant.retention_alarms_days = alarms_days
            tenant.retention_audit_days = audit_days
            return tenant

    # --- care teams ---
    async def teams(self, tenant_id: str) -> list[CareTeam]:
        async with self._store.session() as s:
            return list(
                await s.scalars(
                    select(CareTeam).where(CareTeam.tenant_id == tenant_id).order_by(CareTeam.name)
                )
            )

    async def create_team(self, tenant_id: str, name: str) -> CareTeam:
        team = CareTeam(tenant_id=tenant_id, name=name)
        await self._add(team, "care team", name)
        return team

    async def team_named(self, tenant_id: str, name: str) -> int:
        """The id of the tenant's care team of that name, created when missing."""
        async with self._store.session() as s:
            existing: int | None = await s.scalar(
                select(CareTeam.id).where(CareTeam.tenant_id == tenant_id, CareTeam.name == name)
            )
        if existing is not None:
            return existing
        return (await self.create_team(tenant_id, name)).id

    async def rename_team(self, tenant_id: str, team_id: int, name: str) -> CareTeam:
        try:
            async with self._store.session() as s:
                team = await self._team(s, tenant_id, team_id)
                team.name = name
                await s.flush()
                return team
        except IntegrityError:
            raise Conflict("care team", name) from None

    async def delete_team(self, tenant_id: str, team_id: int) -> None:
        """Patients of the team are left without a team (only tenant-wide roles see them)."""
        async with self._store.session() as s:
            team = await self._team(s, tenant_id, team_id)
            await s.execute(
                update(Patient).where(Patient.care_team_id == team.id).values(care_team_id=None)
            )
            members = select(user_teams.c.user_id).where(user_teams.c.team_id == team.id)
            # Their tokens name the team (whose id a new team may get again): they end now.
            await s.execute(
                update(User)
                .where(User.id.in_(members))
                .values(token_version=User.token_version + 1)
            )
            await s.execute(delete(user_teams).where(user_teams.c.team_id == team.id))
            await s.delete(team)
        self._checked_sessions.clear()

    async def _team(self, s: AsyncSession, tenant_id: str, team_id: int) -> CareTeam:
        team = await s.get(CareTeam, team_id)
        if team is None or team.tenant_id != tenant_id:
            raise NotFound("care team", team_id)
        return team

    async def _check_teams(self, s: AsyncSession, tenant_id: str, team_ids: Sequence[int]) -> None:
        for team_id in team_ids:
            await self._team(s, tenant_id, team_id)

    # --- users ---
    async def users(self, tenant_id: str) -> list[UserWithTeams]:
        async with self._store.session() as s:
            users = list(
                await s.scalars(
                    select(User).where(User.tenant_id == tenant_id).order_by(User.username)
                )
            )
            return [UserWithTeams(u, await self._team_ids(s, u.id)) for u in users]

    async def display_names(self, tenant_id: str, subjects: Iterable[str | None]) -> dict[str, str]:
        """Subject (``user:17``) → display name, for the people named on alarms; a subject
        that is not a user of the tenant (``user:colleague``, a system) is left out."""
        ids = {int(s[5:]) for s in subjects if s and s.startswith("user:") and s[5:].isdigit()}
        if not ids:
            return {}
        async with self._store.session() as s:
            rows = await s.execute(
                select(User.id, User.display_name).where(
                    User.tenant_id == tenant_id, User.id.in_(ids)
                )
            )
            return {f"user:{user_id}": name for user_id, name in rows}

    async def device_places(
        self, devices: Iterable[tuple[int, str | None]]
    ) -> dict[tuple[int, str], DevicePlace]:
        """(patient, device) → what the device is and where: a home sensor's kind and room from
        its home gateway's sensor map, a paired medical device's profile."""
        wanted = {(p, d) for p, d in devices if d}
        if not wanted:
            return {}
        patient_ids = {p for p, _ in wanted}
        async with self._store.session() as s:
            sensors = await s.execute(
                select(
                    HomeGateway.patient_id, HomeSensor.device_id, HomeSensor.kind, HomeSensor.room
                )
                .join(HomeSensor, HomeSensor.gateway_id == HomeGateway.id)
                .where(HomeGateway.patient_id.in_(patient_ids))
            )
            paired = await s.execute(
                select(Device.patient_id, Device.device_id, Device.profile).where(
                    Device.patient_id.in_(patient_ids)
                )
            )
            names = {
                (p, d): name
                for p, d, name in await s.execute(
                    select(HomeGateway.patient_id, DeviceName.device_id, DeviceName.name)
                    .join(DeviceName, DeviceName.gateway_id == HomeGateway.id)
                    .where(HomeGateway.patient_id.in_(patient_ids))
                )
            }
            places = {
                (p, d): DevicePlace(None, profile, name=names.get((p, d)))
                for p, d, profile in paired
                if (p, d) in wanted
            }
            for p, d, kind, room in sensors:
                if p is not None and (p, d) in wanted:
                    places[(p, d)] = DevicePlace(kind, None, room, names.get((p, d)))
            return places

    async def _team_ids(self, s: AsyncSession, user_id: int) -> tuple[int, ...]:
        rows = await s.scalars(
            select(user_teams.c.team_id)
            .where(user_teams.c.user_id == user_id)
            .order_by(user_teams.c.team_id)
        )
        return tuple(rows)

    async def create_user(
        self,
        tenant_id: str,
        *,
        username: str,
        display_name: str,
        roles: Sequence[Role],
        team_ids: Sequence[int],
        password_hash: str,
    ) -> UserWithTeams:
        try:
            async with self._store.session() as s:
                await self._check_teams(s, tenant_id, team_ids)
                user = User(
                    username=username,
                    display_name=display_name,
                    tenant_id=tenant_id,
                    roles=",".join(sorted(roles)),
                    password_hash=password_hash,
                    disabled=False,
                )
                s.add(user)
                await s.flush()
                await self._set_teams(s, user.id, team_ids)
                return UserWithTeams(user, tuple(sorted(set(team_ids))))
        except IntegrityError:
            raise Conflict("user", username) from None

    async def update_user(
        self,
        tenant_id: str,
        user_id: int,
        *,
        display_name: str | None = None,
        roles: Sequence[Role] | None = None,
        team_ids: Sequence[int] | None = None,
        disabled: bool | None = None,
        password_hash: str | None = None,
    ) -> UserWithTeams:
        async with self._store.session() as s:
            user = await s.get(User, user_id)
            if user is None or user.tenant_id != tenant_id:
                raise NotFound("user", user_id)
            before = (
                user.roles,
                user.disabled,
                user.password_hash,
                await self._team_ids(s, user.id),
            )
            if display_name is not None:
                user.display_name = display_name
            if roles is not None:
                user.roles = ",".join(sorted(roles))
            if disabled is not None:
                user.disabled = disabled
            if password_hash is not None:
                user.password_hash = password_hash
            if team_ids is not None:
                await self._check_teams(s, tenant_id, team_ids)
                await s.execute(delete(user_teams).where(user_teams.c.user_id == user.id))
                await self._set_teams(s, user.id, team_ids)
            teams = await self._team_ids(s, user.id)
            if (user.roles, user.disabled, user.password_hash, teams) != before:
                # What her tokens say about her is no longer true: they end now.
                user.token_version += 1
        self._checked_sessions.clear()  # after the commit: no check may see the old row again
        return UserWithTeams(user, teams)

    async def _set_teams(self, s: AsyncSession, user_id: int, team_ids: Sequence[int]) -> None:
        if team_ids:
            await s.execute(
                user_teams.insert(), [{"user_id": user_id, "team_id": t} for t in set(team_ids)]
            )

    async def user_record(self, username: str) -> UserRecord | None:
        """For the token route: the user's password hash and what goes into her token."""
        async with self._store.session() as s:
            user = await s.scalar(select(User).where(User.username == username))
            if user is None:
                return None
            return UserRecord(
                subject=f"user:{user.id}",
                username=user.username,
                password_hash=user.password_hash,
                display_name=user.display_name,
                tenant_id=user.tenant_id,
                care_team_ids=frozenset(str(t) for t in await self._team_ids(s, user.id)),
                roles=frozenset(Role(r) for r in user.roles.split(",") if r),
                disabled=user.disabled,
                token_version=user.token_version,
            )

    async def check_session(self, principal: Principal) -> None:
        """Raise TokenRevoked unless the user of this embedded token still exists, is enabled,
        and her account has not changed since the token was issued (one primary-key read per
        request, so that a change ends access on the next request in every process; with
        ``session_check_cache_s``, a change made by another process within that time)."""
        key = (principal.subject, principal.tenant_id, principal.token_version)
        checked_at = self._checked_sessions.get(key)
        now = time.monotonic()
        if checked_at is not None and now - checked_at < self._session_check_cache_s:
            return
        _, _, number = principal.subject.partition(":")
        user_id = int(number) if number.isdigit() and len(number) < 19 else None
        async with self._store.session() as s:
            row = (
                None
                if user_id is None
                else (
                    await s.execute(
                        select(User.tenant_id, User.disabled, User.token_version).where(
                            User.id == user_id
                        )
                    )
                ).first()
            )
        if row is None or row.tenant_id != principal.tenant_id:
            raise TokenRevoked(principal.subject, "no such user")
        if row.disabled:
            raise TokenRevoked(principal.subject, "the account is disabled")
        if row.token_version != principal.token_version:
            raise TokenRevoked(
                principal.subject, "the account's roles, care teams or password changed"
            )
        if self._session_check_cache_s > 0:
            if len(self._checked_sessions) >= _MAX_CHECKED_SESSIONS:
                self._checked_sessions.clear()
            self._checked_sessions[key] = now

    async def rehash(self, record: UserRecord, new_hash: str) -> None:
        async with self._store.session() as s:
            await s.execute(
                update(User).where(User.username == record.username).values(password_hash=new_hash)
            )

    # --- patients ---
    async def patients(self, tenant_id: str) -> list[Patient]:
        async with self._store.session() as s:
            return list(
                await s.scalars(
                    select(Patient)
                    .where(Patient.tenant_id == tenant_id)
                    .order_by(Patient.family_name, Patient.given_name, Patient.id)
                )
            )

    async def patient(self, tenant_id: str, patient_id: int) -> Patient:
        async with self._store.session() as s:
            return await self._patient(s, tenant_id, patient_id)

    async def _patient(self, s: AsyncSession, tenant_id: str, patient_id: int) -> Patient:
        patient = await s.get(Patient, patient_id)
        if patient is None or patient.tenant_id != tenant_id:
            raise NotFound("patient", patient_id)
        return patient

    async def create_patient(self, tenant_id: str, **fields: object) -> Patient:
        team_id = fields.get("care_team_id")
        patient = Patient(tenant_id=tenant_id, care_plan="{}", **fields)
        try:
            async with self._store.session() as s:
                if isinstance(team_id, int):
                    await self._team(s, tenant_id, team_id)
                s.add(patient)
                await s.flush()
                scope = PatientScope(tenant_id, patient.care_team_id)
                record(s, PatientRegistered(patient.id, scope))
        except IntegrityError:
            raise Conflict("patient with national id", fields.get("national_id")) from None
        return patient

    async def update_patient(self, tenant_id: str, patient_id: int, **fields: object) -> Patient:
        try:
            async with self._store.session() as s:
                patient = await self._patient(s, tenant_id, patient_id)
                team_id = fields.get("care_team_id")
                if isinstance(team_id, int):
                    await self._team(s, tenant_id, team_id)
                for name, value in fields.items():
                    setattr(patient, name, value)
                await s.flush()
                return patient
        except IntegrityError:
            raise Conflict("patient with national id", fields.get("national_id")) from None

    async def care_plan(self, tenant_id: str, patient_id: int) -> CarePlan:
        patient = await self.patient(tenant_id, patient_id)
        return CarePlan.model_validate_json(patient.care_plan)

    async def set_care_plan(self, tenant_id: str, patient_id: int, plan: CarePlan) -> None:
        """Under the patient's row lock: the alarm engine reads the plan under the same lock,
        so a batch is evaluated wholly under the old plan or wholly under the new one."""
        async with self._store.session() as s:
            patient = await s.scalar(
                select(Patient).where(Patient.id == patient_id).with_for_update()
            )
            if patient is None or patient.tenant_id != tenant_id:
                raise NotFound("patient", patient_id)
            patient.care_plan = plan.model_dump_json()

    # --- home gateways ---
    async def gateways(self, tenant_id: str) -> list[HomeGateway]:
        async with self._store.session() as s:
            return list(
                await s.scalars(
                    select(HomeGateway)
                    .where(HomeGateway.tenant_id == tenant_id)
                    .order_by(HomeGateway.id)
                )
            )

    async def gateway_outboxes(self, tenant_id: str, gateway_id: str) -> list[GatewayProgress]:
        """The edge outboxes (epochs) a home gateway of the tenant has sent from, newest
        first: watermark, highest seq, seq jumps and dead-lettered observations of each."""
        async with self._store.session() as s:
            gateway = await s.get(HomeGateway, gateway_id)
            if gateway is None or gateway.tenant_id != tenant_id:
                raise NotFound("home gateway", gateway_id)
            return list(
                await s.scalars(
                    select(GatewayProgress)
                    .where(GatewayProgress.gateway_id == gateway_id)
                    .order_by(GatewayProgress.last_seen.desc(), GatewayProgress.epoch)
                )
            )

    async def create_gateway(
        self,
        tenant_id: str,
        gateway_id: str,
        patient_id: int | None,
        password_hash: str,
        now: datetime,
    ) -> HomeGateway:
        async with self._store.session() as s:
            if patient_id is not None:
                await self._patient(s, tenant_id, patient_id)
        gateway = HomeGateway(
            id=gateway_id,
            tenant_id=tenant_id,
            patient_id=patient_id,
            broker_password_hash=password_hash,
            created_at=now,
        )
        await self._add(gateway, "home gateway", gateway_id)
        return gateway

    async def register_gateway(
        self, tenant_id: str, gateway_id: str, patient_id: int, now: datetime
    ) -> None:
        """Put a home gateway whose broker account is managed elsewhere (no hash kept) in a
        patient's home; idempotent."""
        async with self._store.session() as s:
            gateway = await s.get(HomeGateway, gateway_id)
            if gateway is None:
                s.add(
                    HomeGateway(
                        id=gateway_id,
                        tenant_id=tenant_id,
                        patient_id=patient_id,
                        broker_password_hash="",
                        created_at=now,
                    )
                )
            else:
                gateway.patient_id = patient_id

    async def set_gateway_password(
        self, tenant_id: str, gateway_id: str, password_hash: str
    ) -> HomeGateway:
        """A new broker password for the home gateway (the old one stops working once the
        broker has read its password file again)."""
        async with self._store.session() as s:
            gateway = await s.get(HomeGateway, gateway_id)
            if gateway is None or gateway.tenant_id != tenant_id:
                raise NotFound("home gateway", gateway_id)
            gateway.broker_password_hash = password_hash
            return gateway

    async def delete_gateway(self, tenant_id: str, gateway_id: str) -> None:
        async with self._store.session() as s:
            gateway = await s.get(HomeGateway, gateway_id)
            if gateway is None or gateway.tenant_id != tenant_id:
                raise NotFound("home gateway", gateway_id)
            await s.execute(delete(DeviceName).where(DeviceName.gateway_id == gateway_id))
            await s.delete(gateway)

    async def broker_password_lines(self) -> list[str]:
        """``user:hash`` lines of every home gateway, for the broker's password file."""
        async with self._store.session() as s:
            rows = await s.execute(
                select(HomeGateway.id, HomeGateway.broker_password_hash)
                .where(HomeGateway.broker_password_hash != "")
                .order_by(HomeGateway.id)
            )
            return [f"{gateway_id}:{hash_}" for gateway_id, hash_ in rows]

    async def gateway_patient(self, gateway_id: str) -> int | None:
        async with self._store.session() as s:
            patient_id: int | None = await s.scalar(
                select(HomeGateway.patient_id).where(HomeGateway.id == gateway_id)
            )
            return patient_id

    # --- devices ---
    async def devices(self, tenant_id: str) -> list[Device]:
        async with self._store.session() as s:
            return list(
                await s.scalars(
                    select(Device)
                    .join(Patient, Device.patient_id == Patient.id)
                    .where(Patient.tenant_id == tenant_id)
                    .order_by(Device.device_id)
                )
            )

    async def pair_device(
        self,
        tenant_id: str,
        *,
        device_id: str,
        patient_id: int,
        gateway_id: str,
        profile: DeviceProfile,
    ) -> Device:
        async with self._store.session() as s:
            await self._patient(s, tenant_id, patient_id)
            existing = await s.get(Device, device_id)
            if existing is not None:
                owner = await s.get(Patient, existing.patient_id)
                if owner is None or owner.tenant_id != tenant_id:
                    raise Conflict("device", device_id)
            device = await s.merge(
                Device(
                    device_id=device_id,
                    patient_id=patient_id,
                    gateway_id=gateway_id,
                    profile=profile.value,
                )
            )
            await s.flush()
            return device

    async def unpair_device(self, tenant_id: str, device_id: str) -> None:
        async with self._store.session() as s:
            device = await s.get(Device, device_id)
            owner = await s.get(Patient, device.patient_id) if device else None
            if device is None or owner is None or owner.tenant_id != tenant_id:
                raise NotFound("device", device_id)
            await s.delete(device)

    async def home_devices(self, tenant_id: str) -> list[HomeDevice]:
        """The devices of the tenant's homes (paired, and the sensors of each sensor map), with
        their names, by home gateway and device."""
        async with self._store.session() as s:
            gateways = select(HomeGateway.id).where(HomeGateway.tenant_id == tenant_id)
            sensors = await s.execute(
                select(HomeSensor, HomeGateway.patient_id)
                .join(HomeGateway, HomeSensor.gateway_id == HomeGateway.id)
                .where(HomeGateway.tenant_id == tenant_id)
            )
            paired = await s.scalars(
                select(Device)
                .join(Patient, Device.patient_id == Patient.id)
                .where(Patient.tenant_id == tenant_id)
            )
            names = {
                (n.gateway_id, n.device_id): n.name
                for n in await s.scalars(
                    select(DeviceName).where(DeviceName.gateway_id.in_(gateways))
                )
            }
            found = {
                (d.gateway_id, d.device_id): HomeDevice(
                    d.gateway_id, d.device_id, d.patient_id, None, None, d.profile, None
                )
                for d in paired
            }
            for sensor, patient_id in sensors:
                found[(sensor.gateway_id, sensor.device_id)] = HomeDevice(
                    sensor.gateway_id,
                    sensor.device_id,
                    patient_id,
                    sensor.kind,
                    sensor.room,
                    None,
                    None,
                )
        return [
            dataclasses.replace(device, name=names.get(key))
            for key, device in sorted(found.items())
        ]

    async def name_device(
        self, tenant_id: str, gateway_id: str, device_id: str, name: str | None
    ) -> HomeDevice:
        """Give a device of a home a name (None: take it away). The device need not have been
        heard from yet: a sensor may be named when it is installed."""
        async with self._store.session() as s:
            gateway = await s.get(HomeGateway, gateway_id)
            if gateway is None or gateway.tenant_id != tenant_id:
                raise NotFound("home gateway", gateway_id)
            patient_id = gateway.patient_id
            if name is None:
                await s.execute(
                    delete(DeviceName).where(
                        DeviceName.gateway_id == gateway_id, DeviceName.device_id == device_id
                    )
                )
            else:
                await s.merge(DeviceName(gateway_id=gateway_id, device_id=device_id, name=name))
        known = [
            d
            for d in await self.home_devices(tenant_id)
            if (d.gateway_id, d.device_id) == (gateway_id, device_id)
        ]
        return (
            known[0]
            if known
            else HomeDevice(
                gateway_id=gateway_id,
                device_id=device_id,
                patient_id=patient_id,
                sensor_kind=None,
                room=None,
                profile=None,
                name=name,
            )
        )

    # --- the care view ---
    async def visible_patients(self, scope: TeamScope) -> list[Patient]:
        if scope.empty:
            return []
        async with self._store.session() as s:
            return list(
                await s.scalars(
                    select(Patient)
                    .where(*_team_filter(scope))
                    # A record merged into another (ADT^A40) is shown as the surviving one.
                    .where(Patient.merged_into_id.is_(None))
                    .order_by(Patient.family_name, Patient.given_name, Patient.id)
                )
            )

    async def alarms(
        self,
        scope: TeamScope,
        *,
        patient_id: int | None,
        open_only: bool,
        limit: int,
        before_id: int | None,
    ) -> list[AlarmRow]:
        if scope.empty:
            return []
        async with self._store.session() as s:
            statement = (
                select(AlarmRow)
                .join(Patient, AlarmRow.patient_id == Patient.id)
                .where(*_team_filter(scope))
            )
            if patient_id is not None:
                statement = statement.where(AlarmRow.patient_id == patient_id)
            if open_only:
                statement = statement.where(AlarmRow.state != "closed")
            if before_id is not None:
                statement = statement.where(AlarmRow.id < before_id)
            return list(await s.scalars(statement.order_by(AlarmRow.id.desc()).limit(limit)))

    async def alarm_patient(self, alarm_id: int) -> Patient | None:
        async with self._store.session() as s:
            patient: Patient | None = await s.scalar(
                select(Patient)
                .join(AlarmRow, AlarmRow.patient_id == Patient.id)
                .where(AlarmRow.id == alarm_id)
            )
            return patient

    async def open_alarm_counts(self, patient_ids: Sequence[int]) -> dict[int, list[AlarmRow]]:
        async with self._store.session() as s:
            rows = await s.scalars(
                select(AlarmRow)
                .where(AlarmRow.patient_id.in_(patient_ids))
                .where(AlarmRow.state != "closed")
                .order_by(AlarmRow.id)
            )
            by_patient: dict[int, list[AlarmRow]] = {}
            for row in rows:
                by_patient.setdefault(row.patient_id, []).append(row)
            return by_patient

    # --- audit ---
    async def audit_entries(
        self,
        tenant_id: str,
        *,
        since: datetime | None,
        limit: int,
        before_id: int | None,
        until: datetime | None = None,
        actor: str | None = None,
        action: str | None = None,
        patient_id: int | None = None,
        outcome: str | None = None,
    ) -> list[AuditEntry]:
        """Newest first; each filter given narrows the entries (``until`` is exclusive)."""
        async with self._store.session() as s:
            statement = select(AuditEntry).where(AuditEntry.tenant_id == tenant_id)
            for column, value in (
                (AuditEntry.actor, actor),
                (AuditEntry.action, action),
                (AuditEntry.patient_id, patient_id),
                (AuditEntry.outcome, outcome),
            ):
                if value is not None:
                    statement = statement.where(column == value)
            if since is not None:
                statement = statement.where(AuditEntry.at >= since)
            if until is not None:
                statement = statement.where(AuditEntry.at < until)
            if before_id is not None:
                statement = statement.where(AuditEntry.id < before_id)
            return list(await s.scalars(statement.order_by(AuditEntry.id.desc()).limit(limit)))

    async def count_users(self) -> int:
        async with self._store.session() as s:
            return int(await s.scalar(select(func.count()).select_from(User)) or 0)

    async def _add(self, row: object, what: str, key: object) -> None:
        try:
            async with self._store.session() as s:
                s.add(row)
                await s.flush()
        except IntegrityError:
            raise Conflict(what, key) from None
