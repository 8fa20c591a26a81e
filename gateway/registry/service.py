"""The registry: tenants, care teams, users, patients with their care plan, home gateways and
devices — the one tenant-scoped way to register and change them, for the API, provisioning and
the tests alike. Each method is one transaction of the record store over its repositories
(gateway/records/); every read is limited to one tenant, so the routes never see another
municipality's rows. Errors are typed so the API can answer 404 / 409 precisely."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.alarms.careplan import CarePlan
from gateway.auth import Principal, Role, TeamScope, TokenRevoked
from gateway.auth.web import UserRecord
from gateway.records.alarms import AlarmRepository
from gateway.records.audit import AuditRepository
from gateway.records.devices import DeviceRepository
from gateway.records.home_gateways import HomeGatewayRepository
from gateway.records.models import (
    AlarmRow,
    AuditEntry,
    CareTeam,
    Device,
    GatewayProgress,
    HomeGateway,
    HomeSensor,
    ObservationRow,
    Patient,
    Tenant,
    User,
)
from gateway.records.observations import ObservationRepository
from gateway.records.patients import PatientRepository
from gateway.records.store import RecordStore
from gateway.records.tenants import TenantRepository
from gateway.records.unit_of_work import PatientMoved, PatientRegistered, PatientScope, record
from gateway.records.users import UserRepository
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


def _team_ids_of(scope: TeamScope) -> list[int] | None:
    """The care teams a scope limits patients to; ``None``: every team of the tenant."""
    return None if scope.all_teams else [int(t) for t in scope.team_ids if t.isdigit()]


def _registered(s: AsyncSession, patient: Patient) -> None:
    """A new patient: lists that show her load again (after the commit)."""
    record(s, PatientRegistered(patient.id, PatientScope(patient.tenant_id, patient.care_team_id)))


def _set(row: object, fields: Mapping[str, object]) -> None:
    for name, value in fields.items():
        setattr(row, name, value)


def _set_patient(s: AsyncSession, patient: Patient, fields: Mapping[str, object]) -> None:
    """Change a registered patient; a move to another care team is told to the live streams
    of both teams (after the commit)."""
    before = patient.care_team_id
    _set(patient, fields)
    if patient.care_team_id != before:
        scope = PatientScope(patient.tenant_id, patient.care_team_id)
        record(s, PatientMoved(patient.id, scope, before))


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
class PatientDevices:
    """The rows a patient's device list is made of."""

    newest: list[ObservationRow]
    """The newest observation of each code from each device in her data."""
    paired: list[Device]
    gateways: dict[str, HomeGateway]
    """Her home gateways and those her data came through, by id."""
    sensors: dict[tuple[str, str], HomeSensor]
    """Home sensors by (gateway, device)."""
    names: dict[tuple[str, str], str]
    """The names an admin gave devices of these homes, by (gateway, device)."""


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
            tenants = TenantRepository(s)
            tenant = await tenants.get(tenant_id)
            if tenant is None:
                tenant = tenants.add(tenant_id, name, timezone)
            else:
                tenant.name, tenant.timezone = name, timezone
            await s.flush()
            return tenant

    async def tenant(self, tenant_id: str) -> Tenant:
        async with self._store.session() as s:
            return await self._tenant(s, tenant_id)

    async def _tenant(self, s: AsyncSession, tenant_id: str) -> Tenant:
        tenant = await TenantRepository(s).get(tenant_id)
        if tenant is None:
            raise NotFound("tenant", tenant_id)
        return tenant

    async def set_retention(
        self, tenant_id: str, *, observations_days: int, alarms_days: int, audit_days: int
    ) -> Tenant:
        async with self._store.session() as s:
            tenant = await self._tenant(s, tenant_id)
            tenant.retention_observations_days = observations_days
            tenant.retention_alarms_days = alarms_days
            tenant.retention_audit_days = audit_days
            return tenant

    # --- care teams ---
    async def teams(self, tenant_id: str) -> list[CareTeam]:
        async with self._store.session() as s:
            return await TenantRepository(s).teams(tenant_id)

    async def create_team(self, tenant_id: str, name: str) -> CareTeam:
        try:
            async with self._store.session() as s:
                team = TenantRepository(s).add_team(tenant_id, name)
                await s.flush()
                return team
        except IntegrityError:
            raise Conflict("care team", name) from None

    async def team_named(self, tenant_id: str, name: str) -> int:
        """The id of the tenant's care team of that name, created when missing."""
        async with self._store.session() as s:
            existing = await TenantRepository(s).team_named(tenant_id, name)
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
            await PatientRepository(s).leave_team(team.id)
            await TenantRepository(s).remove_team(team)
        self._checked_sessions.clear()

    async def _team(self, s: AsyncSession, tenant_id: str, team_id: int) -> CareTeam:
        team = await TenantRepository(s).team(tenant_id, team_id)
        if team is None:
            raise NotFound("care team", team_id)
        return team

    async def _check_teams(self, s: AsyncSession, tenant_id: str, team_ids: Sequence[int]) -> None:
        for team_id in team_ids:
            await self._team(s, tenant_id, team_id)

    # --- users ---
    async def users(self, tenant_id: str) -> list[UserWithTeams]:
        async with self._store.session() as s:
            users = UserRepository(s)
            return [
                UserWithTeams(u, await users.team_ids(u.id))
                for u in await users.of_tenant(tenant_id)
            ]

    async def names_and_places(
        self,
        tenant_id: str,
        subjects: Iterable[str | None],
        devices: Iterable[tuple[int, str | None]],
    ) -> tuple[dict[str, str], dict[tuple[int, str], DevicePlace]]:
        """What alarms are shown with, in one transaction:

        - subject (``user:17``) → display name, for the people named on them; a subject that
          is not a user of the tenant (``user:colleague``, a system) is left out;
        - (patient, device) → what the device is and where: a home sensor's kind and room from
          its home gateway's sensor map, a paired medical device's profile."""
        ids = {int(s[5:]) for s in subjects if s and s.startswith("user:") and s[5:].isdigit()}
        wanted = {(p, d) for p, d in devices if d}
        if not ids and not wanted:
            return {}, {}
        async with self._store.session() as s:
            names = await UserRepository(s).display_names(tenant_id, ids) if ids else {}
            places = await self._device_places(s, wanted) if wanted else {}
        return {f"user:{user_id}": name for user_id, name in names.items()}, places

    @staticmethod
    async def _device_places(
        s: AsyncSession, wanted: set[tuple[int, str]]
    ) -> dict[tuple[int, str], DevicePlace]:
        patient_ids, device_ids = {p for p, _ in wanted}, {d for _, d in wanted}
        gateways = HomeGatewayRepository(s)
        sensors = await gateways.placed_sensors(patient_ids, device_ids)
        names = await gateways.device_names_of_patients(patient_ids, device_ids)
        profiles = await DeviceRepository(s).profiles(patient_ids, device_ids)
        places = {
            key: DevicePlace(None, profile, name=names.get(key))
            for key, profile in profiles.items()
            if key in wanted
        }
        for key, (kind, room) in sensors.items():
            if key in wanted:
                places[key] = DevicePlace(kind, None, room, names.get(key))
        return places

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
                users = UserRepository(s)
                user = users.add(
                    tenant_id,
                    username=username,
                    display_name=display_name,
                    roles=",".join(sorted(roles)),
                    password_hash=password_hash,
                )
                await s.flush()
                await users.set_teams(user.id, team_ids, replace=False)
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
            users = UserRepository(s)
            user = await users.get(user_id)
            if user is None or user.tenant_id != tenant_id:
                raise NotFound("user", user_id)
            before = (user.roles, user.disabled, user.password_hash, await users.team_ids(user.id))
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
                await users.set_teams(user.id, team_ids, replace=True)
            teams = await users.team_ids(user.id)
            if (user.roles, user.disabled, user.password_hash, teams) != before:
                # What her tokens say about her is no longer true: they end now.
                user.token_version += 1
        self._checked_sessions.clear()  # after the commit: no check may see the old row again
        return UserWithTeams(user, teams)

    async def user_record(self, username: str) -> UserRecord | None:
        """For the token route: the user's password hash and what goes into her token."""
        async with self._store.session() as s:
            users = UserRepository(s)
            user = await users.named(username)
            if user is None:
                return None
            return UserRecord(
                subject=f"user:{user.id}",
                username=user.username,
                password_hash=user.password_hash,
                display_name=user.display_name,
                tenant_id=user.tenant_id,
                care_team_ids=frozenset(str(t) for t in await users.team_ids(user.id)),
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
            row = None if user_id is None else await UserRepository(s).session_facts(user_id)
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
            await UserRepository(s).set_password_hash(record.username, new_hash)

    # --- patients ---
    async def patients(self, tenant_id: str) -> list[Patient]:
        async with self._store.session() as s:
            return await PatientRepository(s).of_tenant(tenant_id)

    async def patient(self, tenant_id: str, patient_id: int) -> Patient:
        async with self._store.session() as s:
            return await self._patient(s, tenant_id, patient_id)

    async def patient_with_national_id(self, tenant_id: str, national_id: str) -> Patient | None:
        async with self._store.session() as s:
            return await PatientRepository(s).with_national_id(national_id, tenant_id=tenant_id)

    async def _patient(self, s: AsyncSession, tenant_id: str, patient_id: int) -> Patient:
        patient = await PatientRepository(s).in_tenant(tenant_id, patient_id)
        if patient is None:
            raise NotFound("patient", patient_id)
        return patient

    async def create_patient(
        self,
        tenant_id: str,
        *,
        national_id: str,
        family_name: str,
        given_name: str,
        **fields: object,
    ) -> Patient:
        try:
            async with self._store.session() as s:
                await self._check_team_of(s, tenant_id, fields)
                patient = PatientRepository(s).add(tenant_id, national_id, family_name, given_name)
                _set(patient, fields)
                await s.flush()
                _registered(s, patient)
                return patient
        except IntegrityError:
            raise Conflict("patient with national id", national_id) from None

    async def upsert_patient(
        self,
        tenant_id: str,
        *,
        national_id: str,
        family_name: str,
        given_name: str,
        **fields: object,
    ) -> Patient:
        """The tenant's patient with this national identity number, created when missing and
        otherwise updated (idempotent provisioning); a number that is another tenant's patient
        is a :class:`Conflict`, never a takeover."""
        async with self._store.session() as s:
            patients = PatientRepository(s)
            patient = await patients.with_national_id(national_id)
            if patient is not None and patient.tenant_id != tenant_id:
                raise Conflict("patient with national id", national_id)
            await self._check_team_of(s, tenant_id, fields)
            new = patient is None
            if patient is None:
                patient = patients.add(tenant_id, national_id, family_name, given_name)
            patient.family_name, patient.given_name = family_name, given_name
            if new:
                _set(patient, fields)
                await s.flush()
                _registered(s, patient)
            else:
                _set_patient(s, patient, fields)
            return patient

    async def update_patient(self, tenant_id: str, patient_id: int, **fields: object) -> Patient:
        try:
            async with self._store.session() as s:
                patient = await self._patient(s, tenant_id, patient_id)
                await self._check_team_of(s, tenant_id, fields)
                _set_patient(s, patient, fields)
                await s.flush()
                return patient
        except IntegrityError:
            raise Conflict("patient with national id", fields.get("national_id")) from None

    async def _check_team_of(
        self, s: AsyncSession, tenant_id: str, fields: Mapping[str, object]
    ) -> None:
        team_id = fields.get("care_team_id")
        if isinstance(team_id, int):
            await self._team(s, tenant_id, team_id)

    async def care_plan(self, tenant_id: str, patient_id: int) -> CarePlan:
        patient = await self.patient(tenant_id, patient_id)
        return CarePlan.model_validate_json(patient.care_plan)

    async def set_care_plan(self, tenant_id: str, patient_id: int, plan: CarePlan) -> None:
        """Under the patient's row lock: the alarm engine reads the plan under the same lock,
        so a batch is evaluated wholly under the old plan or wholly under the new one."""
        async with self._store.session() as s:
            patient = await PatientRepository(s).locked(patient_id)
            if patient is None or patient.tenant_id != tenant_id:
                raise NotFound("patient", patient_id)
            patient.care_plan = plan.model_dump_json()

    # --- home gateways ---
    async def gateways(self, tenant_id: str) -> list[HomeGateway]:
        async with self._store.session() as s:
            return await HomeGatewayRepository(s).of_tenant(tenant_id)

    async def _gateway(self, s: AsyncSession, tenant_id: str, gateway_id: str) -> HomeGateway:
        gateway = await HomeGatewayRepository(s).in_tenant(tenant_id, gateway_id)
        if gateway is None:
            raise NotFound("home gateway", gateway_id)
        return gateway

    async def gateway_outboxes(self, tenant_id: str, gateway_id: str) -> list[GatewayProgress]:
        """The edge outboxes (epochs) a home gateway of the tenant has sent from, newest
        first: watermark, highest seq, seq jumps and dead-lettered observations of each."""
        async with self._store.session() as s:
            await self._gateway(s, tenant_id, gateway_id)
            return await HomeGatewayRepository(s).outboxes(gateway_id)

    async def create_gateway(
        self,
        tenant_id: str,
        gateway_id: str,
        patient_id: int | None,
        password_hash: str,
        now: datetime,
    ) -> HomeGateway:
        try:
            async with self._store.session() as s:
                if patient_id is not None:
                    await self._patient(s, tenant_id, patient_id)
                gateway = HomeGatewayRepository(s).add(
                    gateway_id,
                    tenant_id=tenant_id,
                    patient_id=patient_id,
                    password_hash=password_hash,
                    now=now,
                )
                await s.flush()
                return gateway
        except IntegrityError:
            raise Conflict("home gateway", gateway_id) from None

    async def register_gateway(
        self, tenant_id: str, gateway_id: str, patient_id: int, now: datetime
    ) -> None:
        """Put a home gateway whose broker account is managed elsewhere (no hash kept) in a
        patient's home; idempotent."""
        async with self._store.session() as s:
            gateways = HomeGatewayRepository(s)
            gateway = await gateways.get(gateway_id)
            if gateway is None:
                gateways.add(
                    gateway_id,
                    tenant_id=tenant_id,
                    patient_id=patient_id,
                    password_hash="",
                    now=now,
                )
            else:
                gateway.patient_id = patient_id

    async def set_gateway_password(
        self, tenant_id: str, gateway_id: str, password_hash: str
    ) -> HomeGateway:
        """A new broker password for the home gateway (the old one stops working once the
        broker has read its password file again)."""
        async with self._store.session() as s:
            gateway = await self._gateway(s, tenant_id, gateway_id)
            gateway.broker_password_hash = password_hash
            return gateway

    async def delete_gateway(self, tenant_id: str, gateway_id: str) -> None:
        async with self._store.session() as s:
            await HomeGatewayRepository(s).remove(await self._gateway(s, tenant_id, gateway_id))

    async def broker_password_lines(self) -> list[str]:
        """``user:hash`` lines of every home gateway, for the broker's password file."""
        async with self._store.session() as s:
            accounts = await HomeGatewayRepository(s).broker_accounts()
        return [f"{gateway_id}:{hash_}" for gateway_id, hash_ in accounts]

    async def gateway_patient(self, gateway_id: str) -> int | None:
        async with self._store.session() as s:
            return await HomeGatewayRepository(s).patient_of(gateway_id)

    # --- devices ---
    async def devices(self, tenant_id: str) -> list[Device]:
        async with self._store.session() as s:
            return await DeviceRepository(s).of_tenant(tenant_id)

    async def pair_device(
        self,
        tenant_id: str,
        *,
        device_id: str,
        patient_id: int,
        gateway_id: str,
        profile: DeviceProfile,
    ) -> Device:
        """Pair a device to a patient of the tenant (or move it to her); a device paired to
        another tenant's patient is a :class:`Conflict`."""
        async with self._store.session() as s:
            await self._patient(s, tenant_id, patient_id)
            devices = DeviceRepository(s)
            if (existing := await devices.get(device_id)) is not None:
                owner = await PatientRepository(s).get(existing.patient_id)
                if owner is None or owner.tenant_id != tenant_id:
                    raise Conflict("device", device_id)
            return await devices.pair(
                device_id, patient_id=patient_id, gateway_id=gateway_id, profile=profile
            )

    async def unpair_device(self, tenant_id: str, device_id: str) -> None:
        async with self._store.session() as s:
            devices = DeviceRepository(s)
            device = await devices.get(device_id)
            owner = await PatientRepository(s).get(device.patient_id) if device else None
            if device is None or owner is None or owner.tenant_id != tenant_id:
                raise NotFound("device", device_id)
            await devices.unpair(device)

    async def patient_devices(self, patient_id: int) -> PatientDevices:
        """What the patient's device list is made of, read in one transaction."""
        async with self._store.session() as s:
            newest = await ObservationRepository(s).newest_per_device(patient_id)
            paired = await DeviceRepository(s).of_patients([patient_id])
            gateways = HomeGatewayRepository(s)
            homes = await gateways.of_patient(
                patient_id, {r.gateway_id for r in newest} | {d.gateway_id for d in paired}
            )
            sensors = await gateways.sensors([g.id for g in homes])
            names = await gateways.device_names([g.id for g in homes])
        return PatientDevices(
            newest=newest,
            paired=paired,
            gateways={g.id: g for g in homes},
            sensors={(p.gateway_id, p.device_id): p for p in sensors},
            names=names,
        )

    async def home_devices(self, tenant_id: str) -> list[HomeDevice]:
        """The devices of the tenant's homes (paired, and the sensors of each sensor map), with
        their names, by home gateway and device."""
        async with self._store.session() as s:
            gateways = HomeGatewayRepository(s)
            sensors = await gateways.sensors_of_tenant(tenant_id)
            paired = await DeviceRepository(s).of_tenant(tenant_id)
            names = await gateways.device_names_of_tenant(tenant_id)
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
            patient_id = (await self._gateway(s, tenant_id, gateway_id)).patient_id
            await HomeGatewayRepository(s).name_device(gateway_id, device_id, name)
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
            return await PatientRepository(s).visible(scope.tenant_id, _team_ids_of(scope))

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
            return await AlarmRepository(s).page(
                scope.tenant_id,
                _team_ids_of(scope),
                patient_id=patient_id,
                open_only=open_only,
                limit=limit,
                before_id=before_id,
            )

    async def alarm_patient(self, alarm_id: int) -> Patient | None:
        async with self._store.session() as s:
            return await AlarmRepository(s).patient_of(alarm_id)

    async def open_alarm_counts(self, patient_ids: Sequence[int]) -> dict[int, list[AlarmRow]]:
        async with self._store.session() as s:
            rows = await AlarmRepository(s).open_of(patient_ids)
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
            return await AuditRepository(s).page(
                tenant_id,
                limit=limit,
                before_id=before_id,
                since=since,
                until=until,
                actor=actor,
                action=action,
                patient_id=patient_id,
                outcome=outcome,
            )

    async def count_users(self) -> int:
        async with self._store.session() as s:
            return await UserRepository(s).count()
