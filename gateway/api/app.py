"""REST + live-stream API of the care platform, and the nurse page. Routes stay thin: the record
store and registry do the work; who may do what is decided in gateway/api/deps.py and
gateway/auth/policy.py only."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import datetime
from importlib import resources
from typing import Annotated

from fastapi import FastAPI, HTTPException, Query, Response
from fastapi.responses import PlainTextResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.alarms.careplan import CarePlan
from gateway.alarms.service import AlarmService
from gateway.api.deps import (
    ApiStats,
    Audit,
    EditsCarePlan,
    ExportsMeasurements,
    ListsPatients,
    PathId,
    ReadsPatient,
    ReadsPlatformStatus,
    Registered,
    Store,
    ViewsAudited,
    patient_for,
)
from gateway.api.errors import document_errors, install_error_handlers, invalid_query
from gateway.api.routes.alarms import alarms_router
from gateway.api.routes.fhir import fhir_router
from gateway.api.routes.fhir_queue import fhir_outbound_router
from gateway.api.routes.hl7 import hl7_router
from gateway.api.routes.nurse import nurse_router
from gateway.api.routes.registry import registry_router
from gateway.api.routes.stream import stream_router
from gateway.api.schemas import (
    CareTeamAssignment,
    ObservationOut,
    PatientOut,
    PlatformStatusOut,
    Readiness,
)
from gateway.auth import Action, BearerVerifier, policy
from gateway.auth.sessions import RefreshSessions
from gateway.auth.web import token_router
from gateway.live.events import EventBus
from gateway.observability import Probes, database_reachable, platform_problems
from gateway.records.models import ObservationRow
from gateway.records.store import Cursor, HistoryQuery, RecordStore
from gateway.registry.service import Registry
from gateway.settings import GatewaySettings
from tryggheim.errors import ConfigError

log = logging.getLogger(__name__)

CSV_COLUMNS = [
    "time",
    "code",
    "mdc",
    "display",
    "value",
    "unit",
    "device_id",
    "source",
    "time_source",
    "flags",
]
CSV_PAGE = 5000


def csv_line(values: Sequence[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(values)
    return buffer.getvalue()


def history_query(
    since: Annotated[datetime | None, Query(description="from this time (inclusive)")] = None,
    until: Annotated[datetime | None, Query(description="to this time (exclusive)")] = None,
    code: Annotated[list[str] | None, Query(description="only these codes")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
) -> HistoryQuery:
    for name, moment in (("since", since), ("until", until)):
        if moment is not None and moment.tzinfo is None:
            raise invalid_query(name, "must carry a time zone", moment.isoformat())
    return HistoryQuery(since=since, until=until, codes=tuple(code or ()), limit=limit)


def _cursor(text: str | None) -> Cursor | None:
    if text is None:
        return None
    try:
        return Cursor.decode(text)
    except ValueError:
        raise invalid_query("cursor", "not one this API handed out", text) from None


def _verifier(settings: GatewaySettings) -> BearerVerifier:
    try:
        return BearerVerifier.from_settings(settings.auth)
    except ValueError:
        raise ConfigError(
            "platform settings",
            "auth",
            "neither the password flow nor OIDC is configured: set auth.signing_key "
            "(TRYGGHEIM_GATEWAY_AUTH__SIGNING_KEY) or an [auth.oidc] table",
        ) from None


def create_app(
    store: RecordStore,
    events: EventBus,
    settings: GatewaySettings,
    *,
    probes: Probes | None = None,
) -> FastAPI:
    app = FastAPI(title="Tryggheim care platform", version="0.2.0")
    registry = Registry(store, session_check_cache_s=settings.auth.session_check_cache_s)
    app.state.store = store
    app.state.events = events
    app.state.registry = registry
    app.state.alarms = AlarmService(store)
    app.state.settings = settings
    app.state.verifier = _verifier(settings)
    app.state.stats = ApiStats()
    app.state.views_audited = ViewsAudited()

    install_error_handlers(app)
    document_errors(app)

    if settings.auth.password_flow_enabled:
        app.include_router(
            token_router(
                settings.auth,
                registry.user_record,
                on_rehash=registry.rehash,
                sessions=RefreshSessions(store, settings.auth),
            )
        )
    app.include_router(alarms_router())
    app.include_router(nurse_router())
    app.include_router(registry_router())
    app.include_router(hl7_router())
    app.include_router(stream_router())
    app.include_router(fhir_outbound_router())
    app.include_router(fhir_router())
    _care_routes(app)

    probes = probes or Probes({"database": lambda: database_reachable(store)})
    _operations_routes(app, probes)
    _platform_status_route(app, probes)

    static = resources.files("dashboards") / "static"
    app.mount("/", StaticFiles(directory=str(static), html=True), name="nurse-page")
    return app


def _operations_routes(app: FastAPI, probes: Probes) -> None:
    """Liveness, readiness and metrics: for the orchestrator and Prometheus, without a token
    (they carry no patient data); keep the port off the public network."""

    @app.get("/healthz", tags=["operations"])
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], responses={503: {"model": Readiness}})
    async def ready(response: Response) -> Readiness:
        """Readiness: the record store answers and every part is connected."""
        checks = {name: await check() for name, check in probes.checks.items()}
        ready = all(checks.values())
        if not ready:
            response.status_code = 503
        return Readiness(status="ready" if ready else "not ready", checks=checks)

    @app.get(
        "/metrics",
        tags=["operations"],
        response_class=PlainTextResponse,
        responses={404: {"description": "This process serves no metrics"}},
    )
    async def metrics() -> PlainTextResponse:
        """Prometheus text format."""
        if probes.metrics is None:
            raise HTTPException(404, "metrics are served by the platform service")
        return PlainTextResponse(probes.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def _platform_status_route(app: FastAPI, probes: Probes) -> None:
    @app.get("/api/v1/platform/status", tags=["operations"], response_model=PlatformStatusOut)
    async def platform_status(principal: ReadsPlatformStatus) -> PlatformStatusOut:
        """Whether the platform itself is degraded (the coordinators' banner): from the
        readiness checks and the metrics' last read of the record store. No patient data, so
        not audited."""
        checks = {name: await check() for name, check in probes.checks.items()}
        snapshot = probes.metrics.snapshot if probes.metrics is not None else None
        problems = platform_problems(checks, snapshot)
        return PlatformStatusOut(degraded=bool(problems), problems=problems)


def _care_routes(app: FastAPI) -> None:
    @app.get("/api/v1/patients", response_model=list[PatientOut], tags=["care"])
    async def list_patients(
        principal: ListsPatients, store: Store, registry: Registered, audit: Audit
    ) -> list[PatientOut]:
        """The caller's patients (her care teams; a coordinator's whole municipality) with
        their latest values and open alarms."""
        patients = await registry.visible_patients(
            policy.visible_team_ids(principal, Action.LIST_PATIENTS)
        )
        ids = [p.id for p in patients]
        await audit.viewed("list_patients", ids)
        by_patient: dict[int, list[ObservationRow]] = {}
        for row in await store.latest_values(ids):
            if row.patient_id is not None:
                by_patient.setdefault(row.patient_id, []).append(row)
        alarms = await registry.open_alarm_counts(ids)
        return [PatientOut.of(p, by_patient.get(p.id, []), alarms.get(p.id, [])) for p in patients]

    @app.get(
        "/api/v1/patients/{patient_id}/observations",
        response_model=list[ObservationOut],
        tags=["care"],
    )
    async def patient_observations(
        patient_id: PathId,
        principal: ReadsPatient,
        store: Store,
        registry: Registered,
        audit: Audit,
        response: Response,
        since: Annotated[datetime | None, Query(description="from (inclusive)")] = None,
        until: Annotated[datetime | None, Query(description="to (exclusive)")] = None,
        code: Annotated[list[str] | None, Query(description="only these codes")] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
        cursor: Annotated[str | None, Query(description="X-Next-Cursor of the last page")] = None,
    ) -> list[ObservationOut]:
        """A patient's observations, newest first, a page at a time: when a page is full the
        ``X-Next-Cursor`` response header continues the listing."""
        query = history_query(since, until, code, limit)
        after = _cursor(cursor)
        await patient_for(registry, principal, Action.READ_PATIENT, patient_id)
        await audit.viewed("read_observations", [patient_id])
        rows = await store.observations(patient_id, query, after=after)
        if len(rows) == query.limit:
            response.headers["X-Next-Cursor"] = Cursor.after(rows[-1]).encode()
        return [ObservationOut.of(row) for row in rows]

    @app.get(
        "/api/v1/patients/{patient_id}/observations.csv",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/csv": {}}}},
        tags=["care"],
    )
    async def patient_observations_csv(
        patient_id: PathId,
        principal: ExportsMeasurements,
        store: Store,
        registry: Registered,
        audit: Audit,
        since: Annotated[datetime | None, Query(description="from (inclusive)")] = None,
        until: Annotated[datetime | None, Query(description="to (exclusive)")] = None,
        code: Annotated[list[str] | None, Query(description="only these codes")] = None,
    ) -> StreamingResponse:
        """All of a patient's observations in the range as CSV (UTF-8, one row per value)."""
        page = replace(history_query(since, until, code), limit=CSV_PAGE)
        await patient_for(registry, principal, Action.EXPORT_MEASUREMENTS, patient_id)
        await audit("export_csv", patient_id)

        async def lines() -> AsyncIterator[str]:
            yield csv_line(CSV_COLUMNS)
            after: Cursor | None = None
            while rows := await store.observations(patient_id, page, after=after):
                for row in rows:
                    out = ObservationOut.of(row)
                    yield csv_line(
                        [
                            out.time.isoformat(),
                            out.code,
                            out.mdc,
                            out.display,
                            out.value,
                            out.unit,
                            out.device_id,
                            out.source,
                            out.time_source,
                            " ".join(out.flags),
                        ]
                    )
                after = Cursor.after(rows[-1])

        return StreamingResponse(
            lines(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="patient-{patient_id}.csv"'},
        )

    @app.get("/api/v1/patients/{patient_id}/care-plan", response_model=CarePlan, tags=["care"])
    async def get_care_plan(
        patient_id: PathId, principal: ReadsPatient, registry: Registered, audit: Audit
    ) -> CarePlan:
        """Personal thresholds, measurement schedule and combined rules (docs/alarms.md)."""
        patient = await patient_for(registry, principal, Action.READ_PATIENT, patient_id)
        await audit.viewed("read_care_plan", [patient_id])
        return CarePlan.model_validate_json(patient.care_plan)

    @app.put("/api/v1/patients/{patient_id}/care-plan", response_model=CarePlan, tags=["care"])
    async def put_care_plan(
        patient_id: PathId,
        plan: CarePlan,
        principal: EditsCarePlan,
        registry: Registered,
        audit: Audit,
    ) -> CarePlan:
        await patient_for(registry, principal, Action.EDIT_CARE_PLAN, patient_id)
        await registry.set_care_plan(principal.tenant_id, patient_id, plan)
        await audit("edit_care_plan", patient_id)
        return plan

    @app.put("/api/v1/patients/{patient_id}/care-team", status_code=204, tags=["care"])
    async def assign_care_team(
        patient_id: PathId,
        body: CareTeamAssignment,
        principal: EditsCarePlan,
        registry: Registered,
        audit: Audit,
    ) -> None:
        await patient_for(registry, principal, Action.EDIT_CARE_PLAN, patient_id)
        await registry.update_patient(
            principal.tenant_id, patient_id, care_team_id=body.care_team_id
        )
        await audit("assign_care_team", patient_id)
