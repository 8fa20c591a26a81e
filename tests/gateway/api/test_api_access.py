"""Who may call which route of the care platform's HTTP API, route by route and caller by caller,
against a real uvicorn server on loopback with a SQLite record store.

``ROUTES`` names every ``/api/v1`` route with the action it performs (``gateway.auth.policy``);
a test keeps the table equal to the app's routes, so a new route cannot go untested. Each
(route, caller, target) case expects, derived from ``policy`` rather than written per role:

- 401 without a valid token (none, garbage, expired);
- 403 when ``policy.allowed(principal, action)`` is false;
- 404 when the route is about one patient, alarm or registry object outside the caller's scope
  (another care team for a nurse, another tenant for everyone);
- the route's 2xx otherwise.

Routes that change something act on objects made for the case alone, so the cases can run in
any order. A few hand-written checks and the audit log's contents follow the table."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from access import auth_settings, platform_settings, user
from chain import serving_app
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import func, select

from gateway.alarms.book import AlarmBook
from gateway.alarms.service import AlarmService
from gateway.api.app import create_app
from gateway.auth import Action, EmbeddedTokens, Principal, Role, policy
from gateway.auth.web import UserRecord
from gateway.live.events import EventBus
from gateway.records.models import (
    DEFAULT_TENANT,
    AlarmRow,
    AuditEntry,
    CareTeam,
    FhirMessage,
    FhirMessageState,
    Hl7Message,
    Hl7MessageState,
    HomeGateway,
    Patient,
    Tenant,
    User,
)
from gateway.records.store import RecordStore
from gateway.registry.service import Registry
from tryggheim.codes import DeviceProfile
from tryggheim.domain import Observation

pytestmark = pytest.mark.asyncio(loop_scope="module")

OTHER_TENANT = "other"
GATEWAY = "gw-access"
AUTH_ROUTES = "/api/v1/auth/"
"""Sign-in, refresh and sign-out: before any principal (tests/gateway/api/test_api_refresh.py)."""

Json = dict[str, Any]


# --- who calls ------------------------------------------------------------------------------


class Credentials(StrEnum):
    VALID = "valid"
    NONE = "none"
    GARBAGE = "garbage"
    EXPIRED = "expired"


class Team(StrEnum):
    A = "A"
    B = "B"
    O = "O"  # noqa: E741 -- the care team of tenant "other"


@dataclass(frozen=True)
class Caller:
    name: str
    roles: tuple[Role, ...] = ()
    tenant: str = DEFAULT_TENANT
    teams: tuple[Team, ...] = ()
    credentials: Credentials = Credentials.VALID


NURSE_A = Caller("nurse-a", (Role.NURSE,), teams=(Team.A,))
NURSE_B = Caller("nurse-b", (Role.NURSE,), teams=(Team.B,))
COORDINATOR = Caller("coordinator", (Role.COORDINATOR,))
ADMIN = Caller("admin", (Role.ADMIN,))
INTEGRATION = Caller("integration", (Role.INTEGRATION,))
COORDINATOR_OTHER = Caller("coordinator-other", (Role.COORDINATOR,), tenant=OTHER_TENANT)
ANONYMOUS = Caller("anonymous", credentials=Credentials.NONE)
GARBAGE = Caller("garbage", (Role.COORDINATOR,), credentials=Credentials.GARBAGE)
# A coordinator's token: refused for its age alone.
EXPIRED = Caller("expired", (Role.COORDINATOR,), credentials=Credentials.EXPIRED)

# For the audit log's checks.
AUDITEE = Caller("auditee", (Role.NURSE,), teams=(Team.A,))
STRANGER = Caller("stranger", (Role.NURSE,), teams=(Team.B,))
ADMIN_OTHER = Caller("admin-other", (Role.ADMIN,), tenant=OTHER_TENANT)

CALLERS = (
    NURSE_A,
    NURSE_B,
    COORDINATOR,
    ADMIN,
    INTEGRATION,
    COORDINATOR_OTHER,
    ANONYMOUS,
    GARBAGE,
    EXPIRED,
)


# --- whose object a case is about -----------------------------------------------------------


class Target(StrEnum):
    TEAM_A = "team-a"
    """Tenant default, care team A."""
    TEAM_B = "team-b"
    """Tenant default, care team B."""
    NO_TEAM = "no-team"
    """Tenant default, in no care team: reached only with tenant scope."""
    OTHER = "other-tenant"
    """Tenant other, its own care team."""


TARGET_TEAM: dict[Target, Team | None] = {
    Target.TEAM_A: Team.A,
    Target.TEAM_B: Team.B,
    Target.NO_TEAM: None,
    Target.OTHER: Team.O,
}
TARGET_TENANT = {
    Target.TEAM_A: DEFAULT_TENANT,
    Target.TEAM_B: DEFAULT_TENANT,
    Target.NO_TEAM: DEFAULT_TENANT,
    Target.OTHER: OTHER_TENANT,
}


class About(StrEnum):
    """What the route's id names. A patient's or alarm's scope is tenant and care team; a
    registry object's (team, user, gateway, device) is its tenant only."""

    PATIENT = "patient"
    ALARM = "alarm"
    TEAM = "team"
    USER = "user"
    GATEWAY = "gateway"
    DEVICE = "device"
    HL7_MESSAGE = "hl7_message"
    FHIR_MESSAGE = "fhir_message"


CARE_OBJECTS = (About.PATIENT, About.ALARM)


class World:
    """The module's platform: the app on a real server, its store, and the seeded data."""

    def __init__(self, app: FastAPI, store: RecordStore, client: httpx.AsyncClient) -> None:
        self.app = app
        self.store = store
        self.client = client
        self.teams: dict[Team, int] = {}
        self.patients: dict[Target, int] = {}
        self.alarms: dict[Target, int] = {}
        self.users: dict[str, UserRecord] = {}
        self._numbers = itertools.count(1)
        self._seqs = itertools.count(1)

    def team_of(self, target: Target) -> int | None:
        team = TARGET_TEAM[target]
        return None if team is None else self.teams[team]

    def number(self) -> int:
        return next(self._numbers)

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{self.number():05d}"

    # --- principals and their tokens ---
    async def sign_up(self, caller: Caller) -> None:
        """The caller's user row: the platform checks every token against it."""
        self.users[caller.name] = await user(
            self.store,
            *caller.roles,
            tenant=caller.tenant,
            teams=tuple(self.teams[t] for t in caller.teams),
            name=caller.name,
        )

    def principal(self, caller: Caller) -> Principal:
        return self.users[caller.name].principal()

    def subject(self, caller: Caller) -> str:
        return self.users[caller.name].subject

    def headers(self, caller: Caller) -> dict[str, str]:
        if caller.credentials is Credentials.NONE:
            return {}
        if caller.credentials is Credentials.GARBAGE:
            return {"Authorization": "Bearer not.a-jwt.at-all"}
        now = datetime.now(UTC)
        if caller.credentials is Credentials.EXPIRED:
            now -= timedelta(hours=2)
        issued = EmbeddedTokens(auth_settings()).issue(self.principal(caller), now=now)
        return {"Authorization": f"Bearer {issued.access_token}"}

    # --- objects ---
    async def new_team(self, tenant: str, name: str | None = None) -> int:
        async with self.store.session() as s:
            team = CareTeam(tenant_id=tenant, name=name or self.unique("team"))
            s.add(team)
            await s.flush()
            return team.id

    async def new_patient(self, target: Target) -> int:
        number = self.number()
        async with self.store.session() as s:
            patient = Patient(
                national_id=f"{10_000_000_000 + number}",
                family_name=f"Pasient {number}",
                given_name="Test",
                tenant_id=TARGET_TENANT[target],
                care_team_id=self.team_of(target),
                care_plan="{}",
            )
            s.add(patient)
            await s.flush()
            return patient.id

    async def new_device(self, target: Target, patient_id: int | None = None) -> str:
        patient_id = patient_id or await self.new_patient(target)
        device_id = self.unique("DEV")
        await Registry(self.store).pair_device(
            TARGET_TENANT[target],
            device_id=device_id,
            patient_id=patient_id,
            gateway_id=GATEWAY,
            profile=DeviceProfile.PULSE_OXIMETER,
        )
        return device_id

    async def new_parked_message(self, target: Target) -> int:
        """An outbound HL7 message a GP refused (AE), about a patient of ``target``."""
        patient_id = await self.new_patient(target)
        async with self.store.session() as s:
            message = Hl7Message(
                control_id=self.unique("M")[:20],
                patient_id=patient_id,
                host="127.0.0.1",
                port=2575,
                message="MSH|^~\\&|TRYGGHEIM|T|GP|G|20261122120000+0100||ORU^R01|X|P|2.6\r",
                state=Hl7MessageState.PARKED,
                created_at=datetime.now(UTC),
            )
            s.add(message)
            await s.flush()
            return message.id

    async def new_parked_fhir_message(self, target: Target) -> int:
        """A closed alarm's FHIR document its tenant's JFT refused (400), about a patient of
        ``target``."""
        patient_id = await self.new_patient(target)
        async with self.store.session() as s:
            message = FhirMessage(
                destination=f"jft:{TARGET_TENANT[target]}",
                tenant_id=TARGET_TENANT[target],
                alarm_id=self.number(),  # one message per alarm and destination
                patient_id=patient_id,
                state=FhirMessageState.PARKED,
                created_at=datetime.now(UTC),
            )
            s.add(message)
            await s.flush()
            return message.id

    async def new_user(self, target: Target) -> int:
        async with self.store.session() as s:
            user = User(
                username=self.unique("user"),
                display_name="Test User",
                tenant_id=TARGET_TENANT[target],
                roles="nurse",
                password_hash="not-a-hash",
                disabled=False,
            )
            s.add(user)
            await s.flush()
            return user.id

    async def new_gateway(self, target: Target) -> str:
        gateway_id = self.unique("gw")
        async with self.store.session() as s:
            s.add(
                HomeGateway(
                    id=gateway_id,
                    tenant_id=TARGET_TENANT[target],
                    patient_id=None,
                    broker_password_hash="not-a-hash",
                    created_at=datetime.now(UTC),
                )
            )
        return gateway_id

    async def measure(self, device_id: str, code: str, value: str, unit: str) -> None:
        observation = Observation(
            gateway_id=GATEWAY,
            device_id=device_id,
            source="ble:2A5F",
            code=code,
            value=Decimal(value),
            unit=unit,
            time=datetime.now(UTC) - timedelta(seconds=30),
            seq=next(self._seqs),
        )
        await self.store.commit_batch(GATEWAY, [observation], datetime.now(UTC))

    async def low_spo2_alarm(self, patient_id: int, device_id: str) -> int:
        """SpO2 85 %: the alarm engine raises ``spo2_low`` inside the commit."""
        await self.measure(device_id, "MDC_PULS_OXIM_SAT_O2", "85", "%")
        async with self.store.session() as s:
            alarm_id = await s.scalar(
                select(AlarmRow.id)
                .where(AlarmRow.patient_id == patient_id, AlarmRow.state != "closed")
                .order_by(AlarmRow.id.desc())
            )
        assert alarm_id is not None, "SpO2 85 % raised no alarm"
        return alarm_id

    async def new_alarm(self, target: Target, ready_for: str) -> int:
        """A fresh alarm of a fresh patient, in the state where ``ready_for`` applies."""
        patient_id = await self.new_patient(target)
        alarm_id = await self.low_spo2_alarm(patient_id, await self.new_device(target, patient_id))
        steps = ["acknowledge", "start", "resolve", "close"]
        for step in steps[: steps.index(ready_for)]:
            await AlarmService(self.store).act(
                alarm_id, step, "user:setup", datetime.now(UTC), note="set up for the test"
            )
        return alarm_id

    async def subject_id(self, route: Route, target: Target) -> object:
        """The id the case's path names: the seeded object, or a new one for routes that
        change or delete it."""
        match route.about:
            case About.PATIENT:
                return await self.new_patient(target) if route.fresh else self.patients[target]
            case About.ALARM:
                if route.fresh:
                    return await self.new_alarm(target, route.values["action"])
                return self.alarms[target]
            case About.TEAM:
                return await self.new_team(TARGET_TENANT[target])
            case About.USER:
                return await self.new_user(target)
            case About.GATEWAY:
                return await self.new_gateway(target)
            case About.DEVICE:
                return await self.new_device(target)
            case About.HL7_MESSAGE:
                return await self.new_parked_message(target)
            case About.FHIR_MESSAGE:
                return await self.new_parked_fhir_message(target)
        raise AssertionError(f"{route} is about nothing")


# --- the routes -----------------------------------------------------------------------------

BodyFactory = Callable[[World, Target | None], Json | None]


def no_body(world: World, target: Target | None) -> Json | None:
    return None


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    """As the app declares it."""
    action: Action | None
    """What ``policy`` must allow; None: any valid token."""
    body: BodyFactory = no_body
    about: About | None = None
    """What the path's id (or the ``patient_id`` query) names; None: nothing in particular."""
    fresh: bool = False
    """A new object per case (the route changes or deletes it)."""
    ok: int = 200
    values: Mapping[str, str] = field(default_factory=dict)
    """Fixed path values other than the object's id."""
    query_about: bool = False
    """The object goes in the ``patient_id`` query rather than in the path."""

    @property
    def targets(self) -> tuple[Target | None, ...]:
        if self.about is None:
            return (None,)
        if self.about in CARE_OBJECTS:
            return tuple(Target)
        return (Target.TEAM_A, Target.OTHER)

    @property
    def label(self) -> str:
        extra = f" ({', '.join(self.values.values())})" if self.values else ""
        query = "?patient_id" if self.query_about else ""
        return f"{self.method} {self.path}{query}{extra}"


def team_name(world: World, target: Target | None) -> Json:
    return {"name": world.unique("Team")}


def retention(world: World, target: Target | None) -> Json:
    return {"observations_days": 3650, "alarms_days": 3650, "audit_days": 3650}


def new_user(world: World, target: Target | None) -> Json:
    return {
        "username": world.unique("nurse"),
        "display_name": "Ny Sykepleier",
        "roles": ["nurse"],
        "care_team_ids": [world.teams[Team.A]],
        "password": "correct horse battery staple",
    }


def new_registration(world: World, target: Target | None) -> Json:
    number = world.number()
    return {
        "national_id": f"{20_000_000_000 + number}",
        "family_name": f"Registrert {number}",
        "given_name": "Test",
    }


def new_gateway(world: World, target: Target | None) -> Json:
    return {"id": world.unique("gw-new")}


def new_device(world: World, target: Target | None) -> Json:
    return {
        "device_id": world.unique("NEW-DEV"),
        "patient_id": world.patients[Target.TEAM_A],
        "gateway_id": GATEWAY,
        "kind": "pulse_oximeter",
    }


def device_name(world: World, target: Target | None) -> Json:
    return {"name": "Ytterdør"}


def care_plan(world: World, target: Target | None) -> Json:
    return {"inactivity_hours": 6, "thresholds": {"spo2_low": {"limit": "88"}}}


def same_tenant_team(world: World, target: Target | None) -> Json:
    assert target is not None
    return {"care_team_id": world.team_of(target)}


def registration_patch(world: World, target: Target | None) -> Json:
    return {"gp_name": "Dr. Lege"}


def user_patch(world: World, target: Target | None) -> Json:
    return {"display_name": "Omdøpt"}


def resolution(world: World, target: Target | None) -> Json:
    return {"note": "Repositioned the sensor; SpO2 97 %."}


A = Action
P = "/api/v1/patients/{patient_id}"
R = "/api/v1/registry"
ROUTES: tuple[Route, ...] = (
    # --- care ---
    Route("GET", "/api/v1/patients", A.LIST_PATIENTS),
    Route("GET", f"{P}/observations", A.READ_PATIENT, about=About.PATIENT),
    Route("GET", f"{P}/observations.csv", A.EXPORT_MEASUREMENTS, about=About.PATIENT),
    Route("GET", f"{P}/care-plan", A.READ_PATIENT, about=About.PATIENT),
    Route("PUT", f"{P}/care-plan", A.EDIT_CARE_PLAN, care_plan, About.PATIENT, fresh=True),
    Route("PUT", f"{P}/care-team", A.EDIT_CARE_PLAN, same_tenant_team, About.PATIENT, True, 204),
    Route("GET", "/api/v1/stream", A.READ_PATIENT),
    # --- the nurse app (gateway/api/routes/nurse.py) ---
    Route("GET", "/api/v1/thresholds", A.LIST_PATIENTS),
    Route("GET", f"{P}/thresholds", A.READ_PATIENT, about=About.PATIENT),
    Route("GET", f"{P}/devices", A.READ_PATIENT, about=About.PATIENT),
    # --- alarms ---
    Route("GET", "/api/v1/alarms", A.READ_PATIENT),
    Route("GET", "/api/v1/alarms", A.READ_PATIENT, about=About.PATIENT, query_about=True),
    Route("GET", "/api/v1/alarms/{alarm_id}", A.READ_PATIENT, about=About.ALARM),
    # Acknowledging is idempotent: every allowed caller acknowledges the one seeded alarm.
    Route(
        "POST",
        "/api/v1/alarms/{alarm_id}/{action}",
        A.HANDLE_ALARM,
        about=About.ALARM,
        values={"action": "acknowledge"},
    ),
    *(
        Route(
            "POST",
            "/api/v1/alarms/{alarm_id}/{action}",
            A.HANDLE_ALARM,
            resolution if step == "resolve" else no_body,
            About.ALARM,
            fresh=True,
            values={"action": step},
        )
        for step in ("start", "resolve", "close")
    ),
    # --- registry ---
    Route("GET", f"{R}/tenant", A.MANAGE_REGISTRY),
    Route("PUT", f"{R}/tenant/retention", A.MANAGE_RETENTION, retention),
    Route("GET", f"{R}/care-teams", A.MANAGE_REGISTRY),
    Route("POST", f"{R}/care-teams", A.MANAGE_REGISTRY, team_name, ok=201),
    Route("PUT", f"{R}/care-teams/{{team_id}}", A.MANAGE_REGISTRY, team_name, About.TEAM),
    Route("DELETE", f"{R}/care-teams/{{team_id}}", A.MANAGE_REGISTRY, about=About.TEAM, ok=204),
    Route("GET", f"{R}/users", A.MANAGE_USERS),
    Route("POST", f"{R}/users", A.MANAGE_USERS, new_user, ok=201),
    Route("PATCH", f"{R}/users/{{user_id}}", A.MANAGE_USERS, user_patch, About.USER),
    Route("POST", f"{R}/users/{{user_id}}/password", A.MANAGE_USERS, no_body, About.USER, True),
    Route("GET", f"{R}/patients", A.MANAGE_REGISTRY),
    Route("POST", f"{R}/patients", A.MANAGE_REGISTRY, new_registration, ok=201),
    Route("GET", f"{R}/patients/{{patient_id}}", A.MANAGE_REGISTRY, about=About.PATIENT),
    Route(
        "PATCH",
        f"{R}/patients/{{patient_id}}",
        A.MANAGE_REGISTRY,
        registration_patch,
        About.PATIENT,
        fresh=True,
    ),
    Route("GET", f"{R}/patients/{{patient_id}}/export", A.EXPORT_PATIENT_DATA, about=About.PATIENT),
    Route(
        "DELETE",
        f"{R}/patients/{{patient_id}}",
        A.ERASE_PATIENT_DATA,
        about=About.PATIENT,
        fresh=True,
    ),
    Route("GET", f"{R}/gateways", A.MANAGE_REGISTRY),
    Route("POST", f"{R}/gateways", A.MANAGE_REGISTRY, new_gateway, ok=201),
    Route("DELETE", f"{R}/gateways/{{gateway_id}}", A.MANAGE_REGISTRY, about=About.GATEWAY, ok=204),
    Route("GET", f"{R}/gateways/{{gateway_id}}/outboxes", A.MANAGE_REGISTRY, about=About.GATEWAY),
    Route(
        "POST", f"{R}/gateways/{{gateway_id}}/password", A.MANAGE_REGISTRY, no_body, About.GATEWAY
    ),
    Route("GET", f"{R}/devices", A.MANAGE_REGISTRY),
    Route("POST", f"{R}/devices", A.MANAGE_REGISTRY, new_device, ok=201),
    Route("DELETE", f"{R}/devices/{{device_id}}", A.MANAGE_REGISTRY, about=About.DEVICE, ok=204),
    Route("GET", f"{R}/home-devices", A.MANAGE_REGISTRY),
    Route(
        "PUT",
        f"{R}/gateways/{{gateway_id}}/devices/{{device_id}}/name",
        A.MANAGE_REGISTRY,
        device_name,
        About.GATEWAY,
        values={"device_id": "door-1"},
    ),
    Route("GET", f"{R}/audit", A.READ_AUDIT_LOG),
    # --- the platform's own health (no patient data) ---
    Route("GET", "/api/v1/platform/status", A.READ_PLATFORM_STATUS),
    # --- HL7 out ---
    Route("GET", "/api/v1/hl7/destinations", A.MANAGE_REGISTRY),
    Route("GET", "/api/v1/hl7/messages", A.MANAGE_REGISTRY),
    Route("GET", "/api/v1/hl7/inbound", A.MANAGE_REGISTRY),
    Route(
        "POST",
        "/api/v1/hl7/messages/{message_id}/retry",
        A.MANAGE_REGISTRY,
        about=About.HL7_MESSAGE,
        fresh=True,
    ),
    # --- FHIR out ---
    Route("GET", "/api/v1/fhir/destinations", A.MANAGE_REGISTRY),
    Route("GET", "/api/v1/fhir/messages", A.MANAGE_REGISTRY),
    Route(
        "POST",
        "/api/v1/fhir/messages/{message_id}/requeue",
        A.MANAGE_REGISTRY,
        about=About.FHIR_MESSAGE,
        fresh=True,
    ),
)
del A, P, R

ID_NAMES = {
    About.PATIENT: "patient_id",
    About.ALARM: "alarm_id",
    About.TEAM: "team_id",
    About.USER: "user_id",
    About.GATEWAY: "gateway_id",
    About.DEVICE: "device_id",
    About.HL7_MESSAGE: "message_id",
    About.FHIR_MESSAGE: "message_id",
}


def expected_status(world: World, route: Route, caller: Caller, target: Target | None) -> int:
    """What ``policy`` says the case must answer."""
    if caller.credentials is not Credentials.VALID:
        return 401
    principal = world.principal(caller)
    if route.action is None:
        return route.ok
    if not policy.allowed(principal, route.action):
        return 403
    if target is not None:
        # A registry object belongs to a tenant only: reaching it takes tenant scope.
        team = world.team_of(target) if route.about in CARE_OBJECTS else None
        if not policy.can_act_on_patient(
            principal, route.action, TARGET_TENANT[target], None if team is None else str(team)
        ):
            return 404
    return route.ok


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every API route of the app, routers included. FastAPI ≥ 0.16x keeps
    included routers nested in ``app.routes``; ``iter_route_contexts`` flattens them."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: included routes are copied into app.routes
        routes: list[tuple[object, object]] = [(r, r) for r in app.routes]
    else:
        routes = [(c, c.original_route) for c in iter_route_contexts(app.routes)]
    return {
        (method, path)
        for effective, route in routes
        if isinstance(route, APIRoute)
        and (path := getattr(effective, "path", "")).startswith("/api/v1/")
        and not path.startswith(AUTH_ROUTES)
        for method in getattr(effective, "methods", None) or ()
    }


# --- the platform ---------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    path: Path = tmp_path_factory.mktemp("api-access") / "records.db"
    store = RecordStore(f"sqlite+aiosqlite:///{path}", alarms=AlarmBook())
    await store.migrate()
    app = create_app(store, EventBus(), platform_settings())
    async with serving_app(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        world = World(app, store, client)
        async with store.session() as s:
            s.add(Tenant(id=OTHER_TENANT, name="Annen kommune", timezone="Europe/Oslo"))
        world.teams[Team.A] = await world.new_team(DEFAULT_TENANT, "Team A")
        world.teams[Team.B] = await world.new_team(DEFAULT_TENANT, "Team B")
        world.teams[Team.O] = await world.new_team(OTHER_TENANT, "Team O")
        for caller in (*CALLERS, AUDITEE, STRANGER, ADMIN_OTHER):
            if caller.credentials in (Credentials.VALID, Credentials.EXPIRED):
                await world.sign_up(caller)
        for target in Target:
            patient = await world.new_patient(target)
            device = await world.new_device(target, patient)
            world.patients[target] = patient
            await world.measure(device, "MDC_TEMP_BODY", "36.8", "Cel")
            await world.measure(device, "MDC_PULS_OXIM_PULS_RATE", "74", "{beat}/min")
            world.alarms[target] = await world.low_spo2_alarm(patient, device)
        yield world
    await store.close()


CASES = [
    pytest.param(route, caller, target, id=f"{route.label} [{target or '-'}] {caller.name}")
    for route in ROUTES
    for target in route.targets
    for caller in CALLERS
]


async def call(
    world: World,
    route: Route,
    caller: Caller,
    target: Target | None,
) -> httpx.Response:
    values: dict[str, object] = dict(route.values)
    params: dict[str, str] = {}
    if target is not None:
        assert route.about is not None
        subject = await world.subject_id(route, target)
        if route.query_about:
            params["patient_id"] = str(subject)
        else:
            values[ID_NAMES[route.about]] = subject
    url = route.path.format(**values)
    body = route.body(world, target)
    if route.path == "/api/v1/stream":
        # Never ends: read the status and the first line, then hang up.
        async with world.client.stream("GET", url, headers=world.headers(caller)) as response:
            if response.status_code == 200:
                first = await anext(response.aiter_lines())
                assert first == ": connected"
            else:
                await response.aread()
            return response
    return await world.client.request(
        route.method, url, headers=world.headers(caller), params=params, json=body
    )


# --- the table ------------------------------------------------------------------------------


async def test_the_table_names_every_api_route(world: World) -> None:
    declared = {(r.method, r.path) for r in ROUTES}
    served = app_routes(world.app)
    assert len(served) > 25, "the app's routes were not found: has FastAPI changed?"
    assert served - declared == set(), "routes missing from ROUTES (add them, with their action)"
    assert declared - served == set(), "ROUTES names routes the app does not have"


async def test_the_cases_cover_every_kind_of_object_and_credentials() -> None:
    assert {route.about for route in ROUTES} >= set(About)
    assert {c.credentials for c in CALLERS} == set(Credentials)


@pytest.mark.parametrize(("route", "caller", "target"), CASES)
async def test_access(world: World, route: Route, caller: Caller, target: Target | None) -> None:
    expected = expected_status(world, route, caller, target)
    response = await call(world, route, caller, target)
    assert response.status_code == expected, response.text[:500]
    if expected == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    if expected >= 400:  # one error shape everywhere (RFC 9457)
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["status"] == expected and isinstance(problem["detail"], str)
    if expected == 403:
        assert response.json()["error"] == "insufficient_scope"


async def test_the_cases_reach_every_outcome(world: World) -> None:
    outcomes = {
        expected_status(world, route, caller, target)
        for route in ROUTES
        for target in route.targets
        for caller in CALLERS
    }
    # ... so the table cannot pass by expecting one status everywhere.
    assert {200, 201, 204, 401, 403, 404} <= outcomes


# --- hand-written spot checks ---------------------------------------------------------------


async def test_a_nurse_of_another_team_does_not_find_the_patient(world: World) -> None:
    patient = world.patients[Target.TEAM_A]
    url = f"/api/v1/patients/{patient}/observations"
    mine = await world.client.get(url, headers=world.headers(NURSE_A))
    theirs = await world.client.get(url, headers=world.headers(NURSE_B))
    assert mine.status_code == 200 and len(mine.json()) >= 3
    assert theirs.status_code == 404
    # As if the patient did not exist at all.
    missing = await world.client.get(
        "/api/v1/patients/999999/observations", headers=world.headers(NURSE_B)
    )
    assert missing.status_code == 404
    assert theirs.json()["detail"] == f"no patient {patient}"


async def test_an_admin_does_not_browse_the_care_views(world: World) -> None:
    response = await world.client.get("/api/v1/patients", headers=world.headers(ADMIN))
    assert response.status_code == 403


async def test_a_nurse_cannot_read_the_audit_log(world: World) -> None:
    response = await world.client.get("/api/v1/registry/audit", headers=world.headers(NURSE_A))
    assert response.status_code == 403


async def test_patient_lists_stay_within_tenant_and_teams(world: World) -> None:
    async def listed(caller: Caller) -> set[int]:
        response = await world.client.get("/api/v1/patients", headers=world.headers(caller))
        assert response.status_code == 200
        return {p["id"] for p in response.json()}

    async with world.store.session() as s:
        default_ids = set(
            await s.scalars(select(Patient.id).where(Patient.tenant_id == DEFAULT_TENANT))
        )
        team_a_ids = set(
            await s.scalars(select(Patient.id).where(Patient.care_team_id == world.teams[Team.A]))
        )

    other = await listed(COORDINATOR_OTHER)
    assert world.patients[Target.OTHER] in other
    assert other.isdisjoint(default_ids), "a coordinator sees another municipality's patients"
    nurse_a = await listed(NURSE_A)
    assert world.patients[Target.TEAM_A] in nurse_a
    assert nurse_a <= team_a_ids
    coordinator = await listed(COORDINATOR)
    assert {world.patients[Target.TEAM_A], world.patients[Target.TEAM_B]} <= coordinator
    assert coordinator <= default_ids


async def test_alarm_lists_stay_within_tenant_and_teams(world: World) -> None:
    async def listed(caller: Caller) -> set[int]:
        response = await world.client.get(
            "/api/v1/alarms", params={"state": "all"}, headers=world.headers(caller)
        )
        assert response.status_code == 200
        return {a["patient_id"] for a in response.json()}

    async with world.store.session() as s:
        other_ids = set(
            await s.scalars(select(Patient.id).where(Patient.tenant_id == OTHER_TENANT))
        )
        team_a_ids = set(
            await s.scalars(select(Patient.id).where(Patient.care_team_id == world.teams[Team.A]))
        )
    nurse_a = await listed(NURSE_A)
    assert world.patients[Target.TEAM_A] in nurse_a
    assert nurse_a <= team_a_ids
    other = await listed(COORDINATOR_OTHER)
    assert world.patients[Target.OTHER] in other
    assert other <= other_ids
    coordinator = await listed(COORDINATOR)
    assert world.patients[Target.TEAM_B] in coordinator
    assert coordinator.isdisjoint(other_ids)


@pytest.mark.parametrize(
    ("method", "path", "params", "field"),
    [
        ("GET", "/api/v1/patients/{patient}/observations", {"cursor": ""}, ["query", "cursor"]),
        ("GET", "/api/v1/patients/{patient}/observations", {"since": "2026-11-22T06:00"}, None),
        ("GET", "/api/v1/patients/{patient}/observations", {"limit": "0"}, ["query", "limit"]),
        ("POST", "/api/v1/alarms/{alarm}/resolve", {}, ["body", "note"]),
    ],
    ids=["empty cursor", "time without zone", "limit 0", "resolve without a body"],
)
async def test_every_422_names_its_invalid_fields(
    world: World, method: str, path: str, params: dict[str, str], field: list[str] | None
) -> None:
    """Issue 12 #12: schemathesis found 422s whose ``detail`` was a bare string."""
    alarm = await world.new_alarm(Target.TEAM_A, "resolve")
    url = path.format(patient=world.patients[Target.TEAM_A], alarm=alarm)
    response = await world.client.request(
        method, url, params=params, headers=world.headers(COORDINATOR)
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422 and problem["detail"]
    assert problem["errors"], "a 422 lists each invalid field"
    if field is not None:
        assert problem["errors"][0]["loc"] == field


async def test_acknowledging_twice_keeps_the_first_acknowledger(world: World) -> None:
    alarm = await world.new_alarm(Target.TEAM_A, "acknowledge")
    url = f"/api/v1/alarms/{alarm}/acknowledge"
    first = await world.client.post(url, headers=world.headers(NURSE_A))
    second = await world.client.post(url, headers=world.headers(COORDINATOR))
    assert first.status_code == second.status_code == 200
    assert second.json()["acknowledged_by"] == world.subject(NURSE_A)
    assert second.json()["state"] == "acknowledged"


# --- the audit log --------------------------------------------------------------------------


async def test_reading_patient_data_is_audited_with_the_callers_identity(world: World) -> None:
    reader = AUDITEE
    patient = world.patients[Target.TEAM_A]
    response = await world.client.get(
        f"/api/v1/patients/{patient}/observations", headers=world.headers(reader)
    )
    assert response.status_code == 200
    async with world.store.session() as s:
        entries = list(
            await s.scalars(select(AuditEntry).where(AuditEntry.actor == world.subject(reader)))
        )
    assert [(e.action, e.patient_id, e.tenant_id, e.purpose) for e in entries] == [
        ("read_observations", patient, DEFAULT_TENANT, "care")
    ]
    assert entries[0].client == "127.0.0.1"

    # The admin of the tenant sees the entry through the API ...
    log = await world.client.get(
        "/api/v1/registry/audit", params={"limit": 5000}, headers=world.headers(ADMIN)
    )
    assert log.status_code == 200
    mine = [e for e in log.json() if e["actor"] == world.subject(reader)]
    assert [(e["action"], e["patient_id"]) for e in mine] == [("read_observations", patient)]
    # ... an admin of another tenant does not.
    other_admin = ADMIN_OTHER
    elsewhere = await world.client.get(
        "/api/v1/registry/audit", params={"limit": 5000}, headers=world.headers(other_admin)
    )
    assert elsewhere.status_code == 200
    assert all(e["actor"] != world.subject(reader) for e in elsewhere.json())


async def test_a_refused_read_is_audited_as_denied(world: World) -> None:
    """Issue 12 #11: a read of another team's patient (404) and a read the role does not allow
    (403) are in the audit log, naming the patient asked for."""
    patient = world.patients[Target.TEAM_A]
    async with world.store.session() as s:
        before = await s.scalar(select(func.max(AuditEntry.id))) or 0
    refused = await world.client.get(
        f"/api/v1/patients/{patient}/observations", headers=world.headers(STRANGER)
    )
    assert refused.status_code == 404
    forbidden = await world.client.get(
        f"/api/v1/patients/{patient}/observations", headers=world.headers(ADMIN_OTHER)
    )
    assert forbidden.status_code == 403
    async with world.store.session() as s:
        entries = list(
            await s.scalars(
                select(AuditEntry)
                .where(
                    AuditEntry.id > before,
                    AuditEntry.actor.in_([world.subject(STRANGER), world.subject(ADMIN_OTHER)]),
                )
                .order_by(AuditEntry.id)
            )
        )
    assert [(e.actor, e.action, e.patient_id, e.outcome) for e in entries] == [
        (world.subject(STRANGER), "read_patient", patient, "denied"),
        (world.subject(ADMIN_OTHER), "read_patient", patient, "denied"),
    ]


async def test_an_administrators_refused_read_of_a_registration_is_audited(world: World) -> None:
    patient = world.patients[Target.TEAM_A]
    for path in (
        f"/api/v1/registry/patients/{patient}",
        f"/api/v1/registry/patients/{patient}/export",
    ):
        response = await world.client.get(path, headers=world.headers(ADMIN_OTHER))
        assert response.status_code == 404
    async with world.store.session() as s:
        entries = list(
            await s.scalars(
                select(AuditEntry)
                .where(
                    AuditEntry.actor == world.subject(ADMIN_OTHER), AuditEntry.patient_id == patient
                )
                .order_by(AuditEntry.id)
            )
        )
    assert [(e.action, e.outcome) for e in entries][-2:] == [
        ("get_registration", "denied"),
        ("export_patient_data", "denied"),
    ]


@pytest.mark.parametrize("caller", [NURSE_A, COORDINATOR, INTEGRATION, COORDINATOR_OTHER])
async def test_only_admins_read_the_audit_log(world: World, caller: Caller) -> None:
    response = await world.client.get("/api/v1/registry/audit", headers=world.headers(caller))
    assert response.status_code == 403
