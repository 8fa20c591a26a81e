"""FastAPI dependencies of the care platform's API: who is calling, what they may do, the audit
log, and the shared services. Routes take these as ``Annotated`` parameters and stay thin.

Authorisation is decided here and in ``gateway.auth.policy`` only: a route names the action it
performs (its principal type below) and, for one patient, calls :func:`patient_for`, which
answers 404 for a patient outside the caller's tenant or care teams.

(No ``from __future__ import annotations``: FastAPI must see the dependency annotations as
objects.)"""

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request, Security
from fastapi.security import OAuth2PasswordBearer

from gateway.auth import Action, AuthError, Principal, TokenVerifier, policy
from gateway.auth.web import bearer_token, http_error
from gateway.events import EventBus
from gateway.models import Patient
from gateway.registry import NotFound, Registry
from gateway.schemas import MAX_ROW_ID
from gateway.store import RecordStore

#: Documents the OAuth2 password flow in the OpenAPI; the header is parsed below so that the
#: same dependency also accepts OIDC tokens.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


def get_store(request: Request) -> RecordStore:
    store: RecordStore = request.app.state.store
    return store


def get_registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


def get_events(request: Request) -> EventBus:
    events: EventBus = request.app.state.events
    return events


#: A row id in a path or query: bounded like the database column, so that a huge number is a
#: 422 rather than a database error.
PathId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
QueryId = Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)]

Store = Annotated[RecordStore, Depends(get_store)]
Registered = Annotated[Registry, Depends(get_registry)]
Events = Annotated[EventBus, Depends(get_events)]


async def current_principal(
    request: Request, _documented: Annotated[str | None, Security(oauth2_scheme)]
) -> Principal:
    verifier: TokenVerifier = request.app.state.verifier
    try:
        principal = await verifier.verify(bearer_token(request.headers.get("authorization")))
    except AuthError as e:
        request.app.state.counters["auth_failures"] += 1
        raise http_error(e) from None
    request.state.principal = principal
    return principal


def allowed_to(action: Action) -> Callable[..., Awaitable[Principal]]:
    async def principal_allowed(
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> Principal:
        try:
            policy.require(principal, action)
        except AuthError as e:
            raise http_error(e) from None
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
ReadsPlatformStatus = Annotated[Principal, Depends(allowed_to(Action.READ_PLATFORM_STATUS))]


async def patient_for(
    registry: Registry, principal: Principal, action: Action, patient_id: int
) -> Patient:
    """The patient, if ``principal`` may perform ``action`` on her; else 404 (not 403), so the
    existence of a patient in another team or municipality does not leak."""
    try:
        patient = await registry.patient(principal.tenant_id, patient_id)
    except NotFound:
        raise HTTPException(404, f"no patient {patient_id}") from None
    team = str(patient.care_team_id) if patient.care_team_id is not None else None
    if not policy.can_act_on_patient(principal, action, patient.tenant_id, team):
        raise HTTPException(404, f"no patient {patient_id}")
    return patient


class Auditor:
    """Writes one audit entry per access to patient data: who (the principal), what (action
    and patient), when, from where (client address)."""

    def __init__(self, request: Request, store: Store) -> None:
        self._store = store
        self._request = request

    async def __call__(self, action: str, patient_id: int | None, purpose: str = "care") -> None:
        principal: Principal = self._request.state.principal
        client = self._request.client.host if self._request.client else None
        await self._store.audit(
            actor=principal.subject,
            tenant_id=principal.tenant_id,
            action=action,
            patient_id=patient_id,
            purpose=purpose,
            client=client,
            now=datetime.now(UTC),
        )


Audit = Annotated[Auditor, Depends(Auditor)]
