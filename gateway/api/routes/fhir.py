"""The FHIR R4 read API, ``/fhir/R4/``: ``metadata`` (CapabilityStatement), ``Patient``,
``Observation``, ``DetectedIssue`` and ``Device``, as ``application/fhir+json`` only.

The same mapping as the documents (:mod:`gateway.fhir.resources`), with references that resolve
on this server (``Patient/12``, ``Device/<uuid>``). Who may read what is the platform's rule
(gateway/api/deps.py): every search names one patient (``patient``, ``patient.identifier`` or
``subject``), a patient outside the caller's care teams is answered as if she did not exist, and
every read is audited. Errors are OperationOutcomes. Searchsets are paged with ``_count`` and a
``next`` link."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from gateway.alarms import ALARM_CODES
from gateway.alarms.book import alarm_of
from gateway.api.deps import (
    Audit,
    ListsPatients,
    NotVisible,
    PathId,
    ReadsPatient,
    Registered,
    Store,
    patient_for,
)
from gateway.api.schemas import MAX_ROW_ID
from gateway.auth import Action, Principal, policy
from gateway.fhir import terminology as t
from gateway.fhir.document import alarm_key, detected_issue, in_zone
from gateway.fhir.records import MEASURED_CODES, devices_of, patient_ref
from gateway.fhir.resources import (
    DeviceRef,
    ObservationContext,
    Refs,
    Resource,
    device_resource,
    fhir_json,
    map_observations,
    patient_resource,
)
from gateway.fhir.settings import FhirSettings
from gateway.fhir.terminology import FHIR_JSON
from gateway.records.models import ObservationRow, Patient
from gateway.records.store import Cursor, HistoryQuery, RecordStore
from gateway.registry.service import Registry
from tryggheim import codes

DEFAULT_COUNT = 50
MAX_COUNT = 500
_JSON_FORMATS = {"json", "application/json", FHIR_JSON}
_GENDER = {"F": "female", "M": "male", "O": "other", "U": "unknown"}
_SEARCHES: dict[str, list[tuple[str, str]]] = {
    "Patient": [("identifier", "token"), ("_id", "token")],
    "Observation": [
        ("patient", "reference"),
        ("patient.identifier", "token"),
        ("subject", "reference"),
        ("code", "token"),
        ("date", "date"),
    ],
    "DetectedIssue": [("patient", "reference"), ("patient.identifier", "token")],
    "Device": [("patient", "reference"), ("patient.identifier", "token")],
}


class FhirResponse(JSONResponse):
    """A FHIR resource as ``application/fhir+json`` (a JSON response, so the OpenAPI says the
    body is JSON rather than a string)."""

    media_type = FHIR_JSON

    def render(self, content: Any) -> bytes:
        return fhir_json(content).encode()


class FhirRequestError(HTTPException):
    """Answered as an OperationOutcome (see :func:`operation_outcome`)."""

    def __init__(self, status: int, code: str, text: str) -> None:
        super().__init__(status, text)
        self.code = code


def operation_outcome(status: int, code: str, text: str) -> FhirResponse:
    return FhirResponse(
        {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": text}],
        },
        status_code=status,
    )


def _check_format(request: Request) -> None:
    wanted = request.query_params.get("_format")
    accept = request.headers.get("accept", "")
    if wanted is not None and wanted not in _JSON_FORMATS:
        raise FhirRequestError(406, "not-supported", f"_format={wanted}: only JSON is served")
    if "xml" in accept and "json" not in accept and "*/*" not in accept:
        raise FhirRequestError(406, "not-supported", "only application/fhir+json is served")


def _count(value: int | None) -> int:
    return DEFAULT_COUNT if value is None else value


CountParam = Annotated[int | None, Query(alias="_count", ge=1, le=MAX_COUNT)]
PageParam = Annotated[str | None, Query(alias="_page", max_length=200)]
PatientParam = Annotated[str | None, Query(alias="patient", max_length=100)]
SubjectParam = Annotated[str | None, Query(alias="subject", max_length=100)]
PatientIdentifierParam = Annotated[str | None, Query(alias="patient.identifier", max_length=200)]


def _split_token(token: str) -> tuple[str | None, str]:
    system, bar, value = token.partition("|")
    return (system or None, value) if bar else (None, token)


async def _patient_of_search(
    registry: Registry,
    store: RecordStore,
    principal: Principal,
    denied: Callable[[int | None], Awaitable[None]],
    patient: str | None,
    subject: str | None,
    identifier: str | None,
) -> Patient | None:
    """The one patient a search names (None: no such patient the caller may see; a patient
    who exists outside her scope is written to the audit log as a refused read)."""
    given = [p for p in (patient, subject, identifier) if p is not None]
    if len(given) != 1:
        raise FhirRequestError(
            400, "required", "name one patient: patient, subject or patient.identifier"
        )
    patient_id: int | None
    if identifier is not None:
        system, value = _split_token(identifier)
        async with store.session() as s:
            found = await s.scalar(
                select(Patient)
                .where(Patient.tenant_id == principal.tenant_id)
                .where(Patient.national_id == value)
            )
        if found is None or (system is not None and patient_ref(found).system != system):
            return None
        patient_id = found.id
    else:
        patient_id = _row_id((patient or subject or "").removeprefix("Patient/"))
    if patient_id is None:
        return None
    try:
        return await patient_for(registry, principal, Action.READ_PATIENT, patient_id)
    except NotVisible as exc:
        await denied(exc.patient_id if await _exists(store, patient_id) else None)
        return None


async def _exists(store: RecordStore, patient_id: int) -> bool:
    async with store.session() as s:
        return await s.get(Patient, patient_id) is not None


def _searchset(
    request: Request, resources: Sequence[Resource], next_page: str | None
) -> dict[str, Any]:
    base = str(request.base_url).rstrip("/") + "/fhir/R4"
    links = [{"relation": "self", "url": str(request.url)}]
    if next_page is not None:
        links.append(
            {"relation": "next", "url": str(request.url.include_query_params(_page=next_page))}
        )
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": [
            {
                "fullUrl": f"{base}/{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in resources
        ],
    }


def _empty(request: Request) -> dict[str, Any]:
    return _searchset(request, [], None)


def _codes_for(token: str) -> set[str]:
    """The platform codes an Observation ``code`` token names (LOINC, MDC, or either)."""
    system, value = _split_token(token)
    found: set[str] = set()
    if system in (None, t.LOINC):
        found |= {code for (code, _), v in t.VITAL_SIGNS.items() if v.loinc.code == value}
        if value == t.BLOOD_PRESSURE_PANEL.loinc.code:
            found |= set(t.BLOOD_PRESSURE_COMPONENTS)
    if system in (None, t.MDC):
        found |= {m.ref for m in codes.METRICS.values() if str(m.code) == value}
        if value == "150020":
            found |= set(t.BLOOD_PRESSURE_COMPONENTS)
    return found & set(MEASURED_CODES)


def date_bounds(values: Sequence[str], tz: ZoneInfo) -> tuple[datetime | None, datetime | None]:
    """``date`` parameters (``ge2026-12-01``, ``lt2026-12-02T00:00:00+01:00``, ...) as an
    inclusive start and an exclusive end. A date is a day in the tenant's time zone; a time of
    day must carry its zone."""
    since: datetime | None = None
    until: datetime | None = None
    for raw in values:
        prefix = raw[:2] if raw[:2] in {"eq", "ge", "gt", "le", "lt"} else "eq"
        text = raw[2:] if raw[:2] == prefix else raw
        try:
            if "T" in text:
                start = datetime.fromisoformat(text.replace("Z", "+00:00"))
                if start.utcoffset() is None:
                    raise FhirRequestError(400, "value", f"date={raw}: a time needs its zone")
                end = start + timedelta(seconds=1)
            else:
                day = date.fromisoformat(text)
                start = datetime.combine(day, time(), tz)
                end = datetime.combine(day + timedelta(days=1), time(), tz)
            # The record store compares in UTC; a bound with no UTC time is no date of ours.
            start.astimezone(UTC), end.astimezone(UTC)
        except ValueError:
            raise FhirRequestError(400, "value", f"date={raw}: not a FHIR date") from None
        except OverflowError:
            raise FhirRequestError(400, "value", f"date={raw}: out of range") from None
        if prefix in {"eq", "ge"}:
            since = start if since is None else max(since, start)
        if prefix == "gt":
            since = end if since is None else max(since, end)
        if prefix in {"eq", "le"}:
            until = end if until is None else min(until, end)
        if prefix == "lt":
            until = start if until is None else min(until, start)
    return since, until


def _units(rows: Sequence[ObservationRow]) -> list[list[ObservationRow]]:
    """Rows as one Observation each, a blood-pressure reading's values together."""
    units: list[list[ObservationRow]] = []
    for row in rows:
        last = units[-1][-1] if units else None
        if (
            last is not None
            and row.code in t.BLOOD_PRESSURE_COMPONENTS
            and last.code in t.BLOOD_PRESSURE_COMPONENTS
            and (row.gateway_id, row.device_id, row.time)
            == (last.gateway_id, last.device_id, last.time)
        ):
            units[-1].append(row)
        else:
            units.append([row])
    return units


def capability_statement(request: Request) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-12-06",
        "publisher": "Tryggheim",
        "kind": "instance",
        "software": {"name": "Tryggheim care platform"},
        "implementation": {
            "description": "Tryggheim FHIR R4 read API",
            "url": str(request.base_url).rstrip("/") + "/fhir/R4",
        },
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/"
                                    "restful-security-service",
                                    "code": "OAuth",
                                }
                            ]
                        }
                    ],
                    "description": "Bearer token (the platform's sign-in or its OIDC provider)",
                },
                "resource": [
                    {
                        "type": resource_type,
                        "interaction": [{"code": "search-type"}]
                        + ([{"code": "read"}] if resource_type == "Patient" else []),
                        "searchParam": [{"name": n, "type": kind} for n, kind in params],
                    }
                    for resource_type, params in _SEARCHES.items()
                ],
            }
        ],
    }


def fhir_router() -> APIRouter:
    router = APIRouter(prefix="/fhir/R4", tags=["fhir"], default_response_class=FhirResponse)

    def settings_of(request: Request) -> FhirSettings:
        fhir: FhirSettings = request.app.state.settings.fhir
        return fhir

    @router.get("/metadata")
    async def metadata(request: Request) -> FhirResponse:
        """What this server serves (no patient data: no sign-in needed)."""
        _check_format(request)
        return FhirResponse(capability_statement(request))

    @router.get("/Patient")
    async def search_patients(
        request: Request,
        principal: ListsPatients,
        registry: Registered,
        audit: Audit,
        identifier: Annotated[str | None, Query(max_length=200)] = None,
        id_: Annotated[str | None, Query(alias="_id", max_length=20)] = None,
        count: CountParam = None,
    ) -> FhirResponse:
        """The caller's patients, or the one with ``identifier`` (system|value) or ``_id``."""
        _check_format(request)
        patients = await registry.visible_patients(
            policy.visible_team_ids(principal, Action.LIST_PATIENTS)
        )
        if identifier is not None:
            system, value = _split_token(identifier)
            patients = [
                p
                for p in patients
                if p.national_id == value and system in (None, patient_ref(p).system)
            ]
        if id_ is not None:
            patients = [p for p in patients if str(p.id) == id_]
        await audit("fhir_search_patient", patients[0].id if len(patients) == 1 else None)
        shown = patients[: _count(count)]
        return FhirResponse(_searchset(request, [_patient(p) for p in shown], None))

    @router.get("/Patient/{patient_id}")
    async def read_patient(
        request: Request,
        patient_id: PathId,
        principal: ReadsPatient,
        registry: Registered,
        audit: Audit,
    ) -> FhirResponse:
        _check_format(request)
        patient = await patient_for(registry, principal, Action.READ_PATIENT, patient_id)
        await audit("fhir_read_patient", patient_id)
        return FhirResponse(_patient(patient))

    @router.get("/Observation")
    async def search_observations(
        request: Request,
        principal: ReadsPatient,
        store: Store,
        registry: Registered,
        audit: Audit,
        patient: PatientParam = None,
        subject: SubjectParam = None,
        patient_identifier: PatientIdentifierParam = None,
        code: Annotated[str | None, Query(max_length=500)] = None,
        date_: Annotated[list[str] | None, Query(alias="date", max_length=4)] = None,
        count: CountParam = None,
        page: PageParam = None,
    ) -> FhirResponse:
        """A patient's vital signs, newest first; ``code`` (LOINC or MDC, comma-separated),
        ``date`` (``ge``/``gt``/``le``/``lt``/``eq``), ``_count`` per page."""
        _check_format(request)
        found = await _patient_of_search(
            registry,
            store,
            principal,
            partial(audit.denied, "fhir_search_observation"),
            patient,
            subject,
            patient_identifier,
        )
        if found is None:
            return FhirResponse(_empty(request))
        tz = ZoneInfo((await registry.tenant(found.tenant_id)).timezone)
        since, until = date_bounds(date_ or [], tz)
        wanted = set(MEASURED_CODES)
        if code is not None:
            wanted = set().union(*(_codes_for(token) for token in code.split(",")))
        await audit("fhir_search_observation", found.id)
        if not wanted:
            return FhirResponse(_empty(request))
        per_page = _count(count)
        after = _cursor(page)
        # A reading is at most three rows (systolic, diastolic, mean): this many rows hold one
        # more whole Observation than the page shows, so the page never splits a reading.
        query = HistoryQuery(
            since=since, until=until, codes=tuple(sorted(wanted)), limit=3 * per_page + 3
        )
        units = _units(await store.observations(found.id, query, after=after))
        shown = units[:per_page]
        next_page = Cursor.after(shown[-1][-1]).encode() if len(units) > per_page else None
        devices = tuple(await devices_of(store, found.id))
        ctx = ObservationContext(
            patient_ref(found, server=True),
            settings_of(request).profiles,
            settings_of(request).organisations.get(found.tenant_id),
            Refs.SERVER,
            devices,
        )
        resources = [
            r
            for unit in shown
            for r in map_observations([row.observation() for row in unit], ctx).observations
        ]
        return FhirResponse(_searchset(request, resources, next_page))

    @router.get("/DetectedIssue")
    async def search_detected_issues(
        request: Request,
        principal: ReadsPatient,
        store: Store,
        registry: Registered,
        audit: Audit,
        patient: PatientParam = None,
        patient_identifier: PatientIdentifierParam = None,
        count: CountParam = None,
        page: PageParam = None,
    ) -> FhirResponse:
        """A patient's alarms, newest first: final once closed, else preliminary."""
        _check_format(request)
        found = await _patient_of_search(
            registry,
            store,
            principal,
            partial(audit.denied, "fhir_search_detected_issue"),
            patient,
            None,
            patient_identifier,
        )
        if found is None:
            return FhirResponse(_empty(request))
        before = None if page is None else _row_id(page)
        if page is not None and before is None:
            raise FhirRequestError(400, "value", "_page: not one this server handed out")
        await audit("fhir_search_detected_issue", found.id)
        per_page = _count(count)
        rows = await registry.alarms(
            policy.visible_team_ids(principal, Action.READ_PATIENT),
            patient_id=found.id,
            open_only=False,
            limit=per_page + 1,
            before_id=before,
        )
        ref = patient_ref(found, server=True)
        profiles = settings_of(request).profiles
        zone = ZoneInfo((await registry.tenant(found.tenant_id)).timezone)
        resources = [
            detected_issue(
                in_zone(alarm_of(row), zone),
                alarm_key(alarm_of(row), row.tenant_id),
                patient=ref,
                device=DeviceRef(row.device_id) if row.device_id else None,
                evidence=[],
                profiles=profiles,
                refs=Refs.SERVER,
            )
            for row in rows[:per_page]
            if row.code in ALARM_CODES
        ]
        next_page = str(rows[per_page - 1].id) if len(rows) > per_page else None
        return FhirResponse(_searchset(request, resources, next_page))

    @router.get("/Device")
    async def search_devices(
        request: Request,
        principal: ReadsPatient,
        store: Store,
        registry: Registered,
        audit: Audit,
        patient: PatientParam = None,
        patient_identifier: PatientIdentifierParam = None,
    ) -> FhirResponse:
        """The patient's paired devices and those her measurements came from."""
        _check_format(request)
        found = await _patient_of_search(
            registry,
            store,
            principal,
            partial(audit.denied, "fhir_search_device"),
            patient,
            None,
            patient_identifier,
        )
        if found is None:
            return FhirResponse(_empty(request))
        await audit("fhir_search_device", found.id)
        ref = patient_ref(found, server=True)
        resources = [device_resource(d, ref) for d in await devices_of(store, found.id)]
        return FhirResponse(_searchset(request, resources, None))

    return router


def _row_id(text: str) -> int | None:
    """A row id as a path or search gives it, bounded like the database column."""
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        return None
    number = int(text)
    return number if 1 <= number <= MAX_ROW_ID else None


def _cursor(text: str | None) -> Cursor | None:
    if text is None:
        return None
    try:
        return Cursor.decode(text)
    except ValueError:
        raise FhirRequestError(400, "value", "_page: not one this server handed out") from None


def _patient(patient: Patient) -> Resource:
    return patient_resource(
        patient_ref(patient, server=True),
        family=patient.family_name,
        given=patient.given_name,
        birth_date=patient.birth_date,
        gender=_GENDER.get(patient.sex or ""),
        active=patient.discharged_at is None and patient.merged_into_id is None,
    )
