"""Registry routes for municipality IT (admin role): the tenant and its retention, care teams,
users, patients' registration data, home gateways (with broker credentials) and devices; the
audit log; GDPR export and erasure of one patient. Everything is limited to the caller's
tenant."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request

from gateway.api.deps import (
    Audit,
    ErasesPatientData,
    Events,
    ExportsPatientData,
    ManagesRegistry,
    ManagesRetention,
    ManagesUsers,
    PathId,
    QueryId,
    ReadsAuditLog,
    Registered,
    Store,
)
from gateway.api.schemas import (
    AuditOut,
    CareTeamIn,
    CareTeamOut,
    DeviceIn,
    DeviceNameIn,
    DeviceOut,
    GatewayIn,
    GatewayOut,
    GatewayOutboxOut,
    GatewayProvisioned,
    HomeDeviceOut,
    PasswordReset,
    PatientRegistrationIn,
    PatientRegistrationOut,
    PatientRegistrationPatch,
    RetentionIn,
    TenantOut,
    UserIn,
    UserOut,
    UserPatch,
)
from gateway.auth import Passwords
from gateway.auth.passwords import temporary_password
from gateway.live.events import access_changed_event
from gateway.registry.broker_credentials import (
    check_gateway_user,
    mosquitto_hash,
    new_password,
    write_password_file,
)
from gateway.registry.kinds import profile_of
from gateway.registry.privacy import erase_patient, export_patient
from gateway.registry.service import Registry
from gateway.settings import GatewaySettings

_passwords = Passwords()


def _settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


async def _hash(password: str) -> str:
    # Argon2 takes tens of milliseconds of CPU: keep it off the event loop.
    return await asyncio.to_thread(_passwords.hash, password)


async def _write_broker_passwords(request: Request, registry: Registry) -> None:
    accounts = _settings(request).broker_accounts
    if accounts.password_file is not None:
        lines = await registry.broker_password_lines()
        await asyncio.to_thread(
            write_password_file, accounts.password_file, accounts.base_password_file, lines
        )


def registry_router() -> APIRouter:
    router = APIRouter(prefix="/api/v1/registry", tags=["registry"])

    # --- tenant ---
    @router.get("/tenant", response_model=TenantOut)
    async def get_tenant(principal: ManagesRegistry, registry: Registered) -> Any:
        return await registry.tenant(principal.tenant_id)

    @router.put("/tenant/retention", response_model=TenantOut)
    async def set_retention(
        body: RetentionIn, principal: ManagesRetention, registry: Registered, audit: Audit
    ) -> Any:
        tenant = await registry.set_retention(
            principal.tenant_id,
            observations_days=body.observations_days,
            alarms_days=body.alarms_days,
            audit_days=body.audit_days,
        )
        await audit("set_retention", None, purpose="administration")
        return tenant

    # --- care teams ---
    @router.get("/care-teams", response_model=list[CareTeamOut])
    async def list_teams(principal: ManagesRegistry, registry: Registered) -> Any:
        return await registry.teams(principal.tenant_id)

    @router.post("/care-teams", response_model=CareTeamOut, status_code=201)
    async def create_team(
        body: CareTeamIn, principal: ManagesRegistry, registry: Registered
    ) -> Any:
        return await registry.create_team(principal.tenant_id, body.name)

    @router.put("/care-teams/{team_id}", response_model=CareTeamOut)
    async def rename_team(
        team_id: PathId, body: CareTeamIn, principal: ManagesRegistry, registry: Registered
    ) -> Any:
        return await registry.rename_team(principal.tenant_id, team_id, body.name)

    @router.delete("/care-teams/{team_id}", status_code=204)
    async def delete_team(
        team_id: PathId, principal: ManagesRegistry, registry: Registered, events: Events
    ) -> None:
        """Its members' tokens end: they sign in again (and see their other teams)."""
        await registry.delete_team(principal.tenant_id, team_id)
        events.publish(access_changed_event(principal.tenant_id))

    # --- users ---
    @router.get("/users", response_model=list[UserOut])
    async def list_users(principal: ManagesUsers, registry: Registered) -> list[UserOut]:
        return [UserOut.of(u.user, u.team_ids) for u in await registry.users(principal.tenant_id)]

    @router.post("/users", response_model=UserOut, status_code=201)
    async def create_user(body: UserIn, principal: ManagesUsers, registry: Registered) -> UserOut:
        created = await registry.create_user(
            principal.tenant_id,
            username=body.username,
            display_name=body.display_name,
            roles=body.roles,
            team_ids=body.care_team_ids,
            password_hash=await _hash(body.password.get_secret_value()),
        )
        return UserOut.of(created.user, created.team_ids)

    @router.patch("/users/{user_id}", response_model=UserOut)
    async def update_user(
        user_id: PathId,
        body: UserPatch,
        principal: ManagesUsers,
        registry: Registered,
        events: Events,
    ) -> UserOut:
        """A change of roles, care teams, password or ``disabled`` ends the user's access at
        once: her tokens are refused from her next request, her live streams close."""
        updated = await registry.update_user(
            principal.tenant_id,
            user_id,
            display_name=body.display_name,
            roles=body.roles,
            team_ids=body.care_team_ids,
            disabled=body.disabled,
            password_hash=(
                await _hash(body.password.get_secret_value()) if body.password else None
            ),
        )
        events.publish(access_changed_event(principal.tenant_id))
        return UserOut.of(updated.user, updated.team_ids)

    @router.post("/users/{user_id}/password", response_model=PasswordReset)
    async def reset_password(
        user_id: PathId, principal: ManagesUsers, registry: Registered, events: Events
    ) -> PasswordReset:
        """A new temporary password for the user, in this answer only; her tokens and
        sessions end at once (as with any password change)."""
        password = temporary_password()
        await registry.update_user(
            principal.tenant_id, user_id, password_hash=await _hash(password)
        )
        events.publish(access_changed_event(principal.tenant_id))
        return PasswordReset(password=password)

    # --- patients ---
    @router.get("/patients", response_model=list[PatientRegistrationOut])
    async def list_registered_patients(
        principal: ManagesRegistry, registry: Registered, audit: Audit
    ) -> Any:
        patients = await registry.patients(principal.tenant_id)
        await audit.viewed("list_registrations", (p.id for p in patients), "administration")
        return patients

    @router.post("/patients", response_model=PatientRegistrationOut, status_code=201)
    async def register_patient(
        body: PatientRegistrationIn, principal: ManagesRegistry, registry: Registered, audit: Audit
    ) -> Any:
        patient = await registry.create_patient(principal.tenant_id, **body.model_dump())
        await audit("register_patient", patient.id, purpose="administration")
        return patient

    @router.get("/patients/{patient_id}", response_model=PatientRegistrationOut)
    async def get_registration(
        patient_id: PathId, principal: ManagesRegistry, registry: Registered, audit: Audit
    ) -> Any:
        patient = await registry.patient(principal.tenant_id, patient_id)
        await audit.viewed("read_registration", [patient_id], "administration")
        return patient

    @router.patch("/patients/{patient_id}", response_model=PatientRegistrationOut)
    async def update_registration(
        patient_id: PathId,
        body: PatientRegistrationPatch,
        principal: ManagesRegistry,
        registry: Registered,
        audit: Audit,
    ) -> Any:
        patient = await registry.update_patient(
            principal.tenant_id, patient_id, **body.model_dump(exclude_unset=True)
        )
        await audit("update_registration", patient_id, purpose="administration")
        return patient

    @router.get("/patients/{patient_id}/export")
    async def export_patient_data(
        patient_id: PathId,
        principal: ExportsPatientData,
        store: Store,
        registry: Registered,
        audit: Audit,
    ) -> dict[str, Any]:
        """GDPR: everything the platform holds about the patient, as JSON."""
        patient = await registry.patient(principal.tenant_id, patient_id)
        await audit("export_patient_data", patient_id, purpose="gdpr")
        return await export_patient(store, patient.national_id, now=datetime.now(UTC))

    @router.delete("/patients/{patient_id}")
    async def erase_patient_data(
        request: Request,
        patient_id: PathId,
        principal: ErasesPatientData,
        store: Store,
        registry: Registered,
        audit: Audit,
    ) -> dict[str, int]:
        """GDPR: erase the patient's data from the record store and the time-series backend.
        The audit log keeps its entries (the record of who accessed what)."""
        patient = await registry.patient(principal.tenant_id, patient_id)
        await audit("erase_patient_data", patient_id, purpose="gdpr")
        removed = await erase_patient(store, _settings(request).timeseries, patient.national_id)
        await _write_broker_passwords(request, registry)
        return removed

    # --- home gateways ---
    @router.get("/gateways", response_model=list[GatewayOut])
    async def list_gateways(principal: ManagesRegistry, registry: Registered) -> Any:
        return await registry.gateways(principal.tenant_id)

    @router.get("/gateways/{gateway_id}/outboxes", response_model=list[GatewayOutboxOut])
    async def gateway_outboxes(
        gateway_id: str, principal: ManagesRegistry, registry: Registered
    ) -> Any:
        """The gateway's edge outboxes (epochs), newest first: committed and highest seq (a
        gap between them is missing data), seq jumps and dead-lettered observations."""
        return await registry.gateway_outboxes(principal.tenant_id, gateway_id)

    @router.post("/gateways", response_model=GatewayProvisioned, status_code=201)
    async def provision_gateway(
        request: Request, body: GatewayIn, principal: ManagesRegistry, registry: Registered
    ) -> GatewayProvisioned:
        """Registers the home gateway and creates its broker account; the password is in this
        answer only. A static broker user's name (``platform``, or one in the base password
        file) is refused with 409 before anything is written."""
        await asyncio.to_thread(
            check_gateway_user, body.id, _settings(request).broker_accounts.base_password_file
        )
        password = new_password()
        gateway = await registry.create_gateway(
            principal.tenant_id,
            body.id,
            body.patient_id,
            await asyncio.to_thread(mosquitto_hash, password),
            datetime.now(UTC),
        )
        await _write_broker_passwords(request, registry)
        return GatewayProvisioned(
            **GatewayOut.model_validate(gateway).model_dump(),
            broker_username=gateway.id,
            broker_password=password,
        )

    @router.post("/gateways/{gateway_id}/password", response_model=GatewayProvisioned)
    async def rotate_gateway_password(
        request: Request, gateway_id: str, principal: ManagesRegistry, registry: Registered
    ) -> GatewayProvisioned:
        """A new broker password for the home gateway, in this answer only (put it in its
        edge.toml); the broker's password file is written again, and the old password stops
        working when the broker reloads it."""
        password = new_password()
        gateway = await registry.set_gateway_password(
            principal.tenant_id, gateway_id, await asyncio.to_thread(mosquitto_hash, password)
        )
        await _write_broker_passwords(request, registry)
        return GatewayProvisioned(
            **GatewayOut.model_validate(gateway).model_dump(),
            broker_username=gateway.id,
            broker_password=password,
        )

    @router.delete("/gateways/{gateway_id}", status_code=204)
    async def delete_gateway(
        request: Request, gateway_id: str, principal: ManagesRegistry, registry: Registered
    ) -> None:
        await registry.delete_gateway(principal.tenant_id, gateway_id)
        await _write_broker_passwords(request, registry)

    # --- devices ---
    @router.get("/devices", response_model=list[DeviceOut])
    async def list_devices(principal: ManagesRegistry, registry: Registered) -> list[DeviceOut]:
        return [
            DeviceOut(
                device_id=d.device_id,
                patient_id=d.patient_id,
                gateway_id=d.gateway_id,
                profile=int(d.profile),
            )
            for d in await registry.devices(principal.tenant_id)
        ]

    @router.post("/devices", response_model=DeviceOut, status_code=201)
    async def pair_device(
        body: DeviceIn, principal: ManagesRegistry, registry: Registered, audit: Audit
    ) -> DeviceOut:
        device = await registry.pair_device(
            principal.tenant_id,
            device_id=body.device_id.upper(),
            patient_id=body.patient_id,
            gateway_id=body.gateway_id,
            profile=profile_of(body.kind),
        )
        await audit("pair_device", body.patient_id, purpose="administration")
        return DeviceOut(
            device_id=device.device_id,
            patient_id=device.patient_id,
            gateway_id=device.gateway_id,
            profile=int(device.profile),
        )

    @router.delete("/devices/{device_id}", status_code=204)
    async def unpair_device(
        device_id: str, principal: ManagesRegistry, registry: Registered
    ) -> None:
        await registry.unpair_device(principal.tenant_id, device_id.upper())

    @router.get("/home-devices", response_model=list[HomeDeviceOut])
    async def list_home_devices(
        principal: ManagesRegistry, registry: Registered
    ) -> list[HomeDeviceOut]:
        """The devices of the municipality's homes with their names: paired devices, and the
        home sensors of each home gateway's sensor map."""
        devices = await registry.home_devices(principal.tenant_id)
        return [HomeDeviceOut.model_validate(d) for d in devices]

    @router.put("/gateways/{gateway_id}/devices/{device_id}/name", response_model=HomeDeviceOut)
    async def name_device(
        gateway_id: str,
        device_id: Annotated[str, Path(min_length=1, max_length=64)],
        body: DeviceNameIn,
        principal: ManagesRegistry,
        registry: Registered,
        audit: Audit,
    ) -> HomeDeviceOut:
        """Name a device of a home ("Ytterdør"): the nurse app shows the name before its room
        and kind. An empty name or null takes the name away."""
        named = await registry.name_device(
            principal.tenant_id, gateway_id, device_id, body.name or None
        )
        await audit("name_device", named.patient_id, purpose="administration")
        return HomeDeviceOut.model_validate(named)

    # --- audit log ---
    @router.get("/audit", response_model=list[AuditOut])
    async def audit_log(
        principal: ReadsAuditLog,
        registry: Registered,
        since: Annotated[datetime | None, Query()] = None,
        until: Annotated[datetime | None, Query(description="before this time")] = None,
        actor: Annotated[str | None, Query(max_length=200, description="e.g. user:17")] = None,
        action: Annotated[str | None, Query(max_length=64)] = None,
        patient_id: QueryId = None,
        outcome: Annotated[Literal["allowed", "denied"] | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=5000)] = 500,
        before_id: QueryId = None,
    ) -> Any:
        """Who read or changed what, newest first (admins only), narrowed by each filter
        given."""
        return await registry.audit_entries(
            principal.tenant_id,
            since=since,
            until=until,
            actor=actor,
            action=action,
            patient_id=patient_id,
            outcome=outcome,
            limit=limit,
            before_id=before_id,
        )

    return router
