"""FastAPI dependencies of the care platform's API: who is calling, what they may do, the audit
log, and the shared services. Routes take these as ``Annotated`` parameters and stay thin.

Authorisation is decided here and in ``gateway.auth.policy`` only: a route names the action it
performs (its principal type below) and, for one patient, calls :func:`patient_for`, which
answers 404 for a patient outside the caller's tenant or care teams. Refusals are raised as
typed errors (AuthError, NotVisible) and answered, and audited, in gateway/api/errors.py.

(No ``from __future__ import annotations``: FastAPI must see the dependency annotations as
objects.)"""

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Header, Path, Query, Request, Security
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import exc as sa

from gateway.alarms.service import AlarmService
from gateway.api.schemas import MAX_ROW_ID
from gateway.auth import Action, AuthError, AuthMethod, Principal, TokenVerifier, policy
from gateway.auth.web import bearer_token
from gateway.live.events import EventBus
from gateway.records.models import Patient
from gateway.records.store import RecordStore
from gateway.registry.service import NotFound, Registry
from tryggheim.errors import TryggheimError

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ApiStats:
    """What the API refused, counted (exported as ``tryggheim_api_*`` metrics)."""

    auth_failures: int = 0
    """401s and 503s of token checking (missing, bad, expired or revoked tokens)."""
    bad_requests: int = 0
    """422s: input that does not fit the schema."""
    denied_patient_data: int = 0
    """Refusals of patient data (403/404), each also in the audit log."""
    store_unavailable: int = 0
    """503s because the record store could not be reached."""


def api_stats(request: Request) -> ApiStats:
    stats: ApiStats = request.app.state.stats
    return stats


#: Documents the OAuth2 password flow in the OpenAPI; the header is parsed below so that the
#: same dependency also accepts OIDC tokens.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


def get_store(request: Request) -> RecordStore:
    store: RecordStore = request.app.state.store
    return store


def get_registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


def get_alarms(request: Request) -> AlarmService:
    alarms: AlarmService = request.app.state.alarms
    return alarms


def get_events(request: Request) -> EventBus:
    events: EventBus = request.app.state.events
    return events


#: A row id in a path or query: bounded like the database column, so that a huge number is a
#: 422 rather than a database error.
PathId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
QueryId = Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)]
NewestFirst = Annotated[int, Query(ge=1, le=1000, description="at most this many, newest first")]

ADMINISTRATION = "administration"
"""The audit purpose of municipality IT looking at queues and registers."""
QUEUE_ACTION_ERRORS: dict[int | str, dict[str, str]] = {
    404: {"description": "no such message (or another tenant's)"},
    409: {"description": "the message is not parked"},
}

Store = Annotated[RecordStore, Depends(get_store)]
Registered = Annotated[Registry, Depends(get_registry)]
Alarms = Annotated[AlarmService, Depends(get_alarms)]
Events = Annotated[EventBus, Depends(get_events)]


#: Errors of a record store that cannot be reached (server down, connections refused or cut,
#: pool exhausted, SQLite busy): the request may succeed later, so 503, not 500.
STORE_UNAVAILABLE: tuple[type[Exception], ...] = (
    sa.OperationalError,
    sa.InterfaceError,
    sa.DisconnectionError,
    sa.TimeoutError,
)


async def _caller(request: Request, *, while_store_down: bool) -> Principal:
    verifier: TokenVerifier = request.app.state.verifier
    registry: Registry = request.app.state.registry
    try:
        principal = await verifier.verify(bearer_token(request.headers.get("authorization")))
        if principal.auth_method is AuthMethod.PASSWORD:
            try:
                await registry.check_session(principal)
            except STORE_UNAVAILABLE:
                if not while_store_down:
                    raise
                log.warning("%s: session not checked, the record store is down", principal.subject)
    except AuthError:
        api_stats(request).auth_failures += 1
        raise
    request.state.principal = principal
    return principal


async def current_principal(
    request: Request, _documented: Annotated[str | None, Security(oauth2_scheme)]
) -> Principal:
    """The caller, from her bearer token; for a token this platform issued, also checked
    against her account as it is now (``Registry.check_session``), so that disabling her or
    changing her roles or teams ends access on her next request. An AuthError becomes a
    problem answer in gateway/api/errors.py."""
    return await _caller(request, while_store_down=False)


async def principal_while_store_down(
    request: Request, _documented: Annotated[str | None, Security(oauth2_scheme)]
) -> Principal:
    """Like :func:`current_principal`, but when the record store cannot be asked, the token's
    signature and expiry suffice: for a route with no patient data that must say that the
    platform is degraded (the platform status) exactly then."""
    return await _caller(request, while_store_down=True)


def allowed_to(
    action: Action, caller: Callable[..., Awaitable[Principal]] = current_principal
) -> Callable[..., Awaitable[Principal]]:
    async def principal_allowed(principal: Annotated[Principal, Depends(caller)]) -> Principal:
        policy.require(principal, action)
        return principal

    return principal_allowed


ListsPatients = Annotated[Principal, Depends(allowed_to(Action.LIST_PATIENTS))]
ReadsPatient = Annotated[Principal, Depends(allowed_to(Action.READ_PATIENT))]
HandlesAlarm = Annotated[Principal, Depends(allowed_to(Action.HANDLE_ALARM))]
ExportsMeasurements = Annotated[Principal, Depends(allowed_to(Action.EXPORT_MEASUREMENTS))]
EditsCarePlan = Annotated[Principal, Depends(allowed_to(Action.EDIT_CARE_PLAN))]
ManagesRegistry = Annotated[Principal, Depends(allowed_to(Action.MANAGE_REGISTRY))]
ManagesUsers = Annotated[Principal, Depends(allowed_to(Action.MANAGE_USERS))]
ReadsAuditLog = Annotated[Principal, Depends(allowed_to(Action.READ_AUDIT_LOG))]
ManagesRetention = Annotated[Principal, Depends(allowed_to(Action.MANAGE_RETENTION))]
ExportsPatientData = Annotated[Principal, Depends(allowed_to(Action.EXPORT_PATIENT_DATA))]
ErasesPatientData = Annotated[Principal, Depends(allowed_to(Action.ERASE_PATIENT_DATA))]
ReadsPlatformStatus = Annotated[
    Principal, Depends(allowed_to(Action.READ_PLATFORM_STATUS, principal_while_store_down))
]

#: Actions on patient data: a refusal of one of them is written to the audit log too.
PATIENT_DATA_ACTIONS = frozenset(
    {
        Action.LIST_PATIENTS,
        Action.READ_PATIENT,
        Action.HANDLE_ALARM,
        Action.EXPORT_MEASUREMENTS,
        Action.EDIT_CARE_PLAN,
        Action.EXPORT_PATIENT_DATA,
        Action.ERASE_PATIENT_DATA,
    }
)


class NotVisible(TryggheimError):
    """A patient (or her alarm) the caller asked for that does not exist for her: another
    tenant or care team, or no such row. Answered 404 either way, so that existence does not
    leak; audited as a refused access to ``patient_id`` when the row exists."""

    status_code = 404

    def __init__(self, what: str, key: int, action: Action, patient_id: int | None) -> None:
        self.what = what
        self.key = key
        self.action = action
        self.patient_id = patient_id
        super().__init__(f"no {what} {key}", hint="check the id; it may belong to another team")


async def patient_for(
    registry: Registry, principal: Principal, action: Action, patient_id: int
) -> Patient:
    """The patient, if ``principal`` may perform ``action`` on her; else NotVisible (404,
    not 403), so the existence of a patient in another team or municipality does not leak."""
    try:
        patient = await registry.patient(principal.tenant_id, patient_id)
    except NotFound:
        raise NotVisible("patient", patient_id, action, patient_id) from None
    if not may_act_on(principal, action, patient):
        raise NotVisible("patient", patient_id, action, patient_id)
    return patient


def may_act_on(principal: Principal, action: Action, patient: Patient) -> bool:
    """Whether ``principal`` may perform ``action`` on ``patient`` (her tenant and team)."""
    team = str(patient.care_team_id) if patient.care_team_id is not None else None
    return policy.can_act_on_patient(principal, action, patient.tenant_id, team)


#: The request header that names the view opening a load belongs to: ``<view>/<opening id>``,
#: e.g. ``patient/3f2a…``. The nurse app makes a new opening id each time a view is opened.
VIEW_HEADER = "X-Tryggheim-View"
VIEW_PATTERN = r"^[a-z][a-z_]{0,31}/[A-Za-z0-9_-]{16,64}$"
#: How long one view opening covers a patient: a view still loading her data after this long
#: (a tablet left open, or a client that reuses an opening id) writes her row again.
VIEW_AUDIT_WINDOW_S = 3600.0
_VIEWS_REMEMBERED = 100_000

#: (tenant, actor, view opening, action, patient) of an audit row already written.
ViewKey = tuple[str, str, str, str, int | None]


@dataclass(slots=True)
class _Written:
    until: float
    done: asyncio.Future[bool]
    """True once the row is in the audit log; False when writing it failed."""


class ViewsAudited:
    """Which rows of a view opening the audit log already has (in this process), so that the
    loads that make up one view, and its background refreshes, write one row per patient.

    A load waits until the row it relies on is written: data is never answered on the
    strength of a row that another request is still writing and may fail to write. Several
    platform processes each write their own row (more rows, never fewer); a row is written
    again after ``window_s``."""

    def __init__(
        self,
        window_s: float = VIEW_AUDIT_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
        remembered: int = _VIEWS_REMEMBERED,
    ) -> None:
        self._window_s = window_s
        self._clock = clock
        self._remembered = remembered
        self._written: OrderedDict[ViewKey, _Written] = OrderedDict()

    async def write_once(
        self, keys: Iterable[ViewKey], write: Callable[[list[ViewKey]], Awaitable[None]]
    ) -> None:
        """``write`` the keys that have no row yet (in one call); wait for those being
        written by another request, and write them here if that failed."""
        todo = list(dict.fromkeys(keys))
        while todo:
            now = self._clock()
            mine: dict[ViewKey, _Written] = {}
            theirs: list[tuple[ViewKey, asyncio.Future[bool]]] = []
            for key in todo:
                written = self._written.get(key)
                if written is None or written.until <= now:
                    written = _Written(
                        now + self._window_s, asyncio.get_running_loop().create_future()
                    )
                    self._written[key] = mine[key] = written
                    self._written.move_to_end(key)
                elif not written.done.done():
                    theirs.append((key, written.done))
            if mine:
                await self._write(mine, write)
            self._forget_old(now)
            todo = [key for key, done in theirs if not await asyncio.shield(done)]

    async def _write(
        self,
        mine: dict[ViewKey, _Written],
        write: Callable[[list[ViewKey]], Awaitable[None]],
    ) -> None:
        ok = False
        try:
            await write(list(mine))
            ok = True
        finally:
            for key, written in mine.items():
                if not ok and self._written.get(key) is written:
                    del self._written[key]
                written.done.set_result(ok)

    def _forget_old(self, now: float) -> None:
        # Oldest first: every key is (re)inserted at the end with the same window.
        while self._written:
            key, written = next(iter(self._written.items()))
            if written.until > now and len(self._written) <= self._remembered:
                break
            del self._written[key]


def views_audited(request: Request) -> ViewsAudited:
    views: ViewsAudited = request.app.state.views_audited
    return views


class Auditor:
    """Writes the audit log: who (the principal), what (action and patients), when, from where
    (client address), and whether it was allowed. The rule: one entry per patient whose data
    a response showed or changed; one entry naming no patient when it showed none. A read
    that is part of a view (``viewed``), sent with the view's opening in ``X-Tryggheim-View``,
    writes one entry per patient per view opening instead (docs/auth.md, "What the audit log
    records")."""

    def __init__(
        self,
        request: Request,
        store: Store,
        view: Annotated[
            str | None,
            Header(
                alias=VIEW_HEADER,
                pattern=VIEW_PATTERN,
                description="The view opening this load is part of (`<view>/<opening id>`): "
                "its reads are audited once per patient per opening.",
            ),
        ] = None,
    ) -> None:
        self._store = store
        self._request = request
        self._view = view

    async def __call__(self, action: str, patient_id: int | None, purpose: str = "care") -> None:
        await self.shown(action, [patient_id], purpose)

    async def shown(
        self, action: str, patient_ids: Iterable[int | None], purpose: str = "care"
    ) -> None:
        """One entry per patient in ``patient_ids`` (duplicates once), or one naming nobody."""
        await self._write(action, _named(patient_ids), purpose, "allowed")

    async def viewed(
        self, action: str, patient_ids: Iterable[int | None], purpose: str = "care"
    ) -> None:
        """A read that loads (part of) a view: with a view opening, one ``view:<view>`` entry
        per patient per opening, however many loads and refreshes it makes; without one,
        as :meth:`shown`."""
        if self._view is None:
            await self.shown(action, patient_ids, purpose)
        else:
            await self.once(f"view:{self._view.partition('/')[0]}", patient_ids, purpose)

    async def once(
        self, action: str, patient_ids: Iterable[int | None], purpose: str = "care"
    ) -> None:
        """Like :meth:`shown`, but within a view opening an entry already written is not
        written again."""
        if self._view is None:
            await self.shown(action, patient_ids, purpose)
            return
        named = _named(patient_ids)
        principal: Principal = self._request.state.principal
        view = self._view

        async def write(keys: list[ViewKey]) -> None:
            await self._write(action, [key[-1] for key in keys], purpose, "allowed")

        await views_audited(self._request).write_once(
            ((principal.tenant_id, principal.subject, view, action, p) for p in named), write
        )

    async def denied(self, action: str, patient_id: int | None) -> None:
        await self._write(action, [patient_id], "care", "denied")

    async def _write(
        self, action: str, patient_ids: Sequence[int | None], purpose: str, outcome: str
    ) -> None:
        principal: Principal = self._request.state.principal
        client = self._request.client.host if self._request.client else None
        await self._store.audit(
            actor=principal.subject,
            tenant_id=principal.tenant_id,
            action=action,
            patient_ids=patient_ids,
            purpose=purpose,
            client=client,
            now=datetime.now(UTC),
            outcome=outcome,
        )


def _named(patient_ids: Iterable[int | None]) -> list[int | None]:
    """The patients named (each once, by id), or [None] when none is."""
    return [*sorted({p for p in patient_ids if p is not None})] or [None]


Audit = Annotated[Auditor, Depends(Auditor)]
