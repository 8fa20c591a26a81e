"""REST + live-stream API of the care platform, and the nurse page. Routes stay thin: the record
store does the work, dependencies carry state in."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from importlib import resources
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from fastapi.staticfiles import StaticFiles

from gateway.events import EventBus
from gateway.models import ObservationRow
from gateway.schemas import ObservationOut, PatientOut, Problem
from gateway.store import RecordStore

#: Until the OAuth2/OIDC work lands (issue 5) every caller is recorded under this name, and the
#: service listens on loopback only by default.
UNAUTHENTICATED = "unauthenticated"


def get_store(request: Request) -> RecordStore:
    store: RecordStore = request.app.state.store
    return store


def get_events(request: Request) -> EventBus:
    events: EventBus = request.app.state.events
    return events


Store = Annotated[RecordStore, Depends(get_store)]
Events = Annotated[EventBus, Depends(get_events)]


class Auditor:
    """Writes one audit entry per read of patient data."""

    def __init__(self, request: Request, store: Store) -> None:
        self._store = store
        self._client = request.client.host if request.client else None

    async def __call__(self, action: str, patient_id: int | None) -> None:
        await self._store.audit(
            actor=UNAUTHENTICATED,
            action=action,
            patient_id=patient_id,
            purpose="care",
            client=self._client,
            now=datetime.now(UTC),
        )


Audit = Annotated[Auditor, Depends(Auditor)]


def create_app(store: RecordStore, events: EventBus) -> FastAPI:
    app = FastAPI(
        title="Tryggheim care platform",
        version="0.1.0",
        responses={404: {"model": Problem}},
    )
    app.state.store = store
    app.state.events = events

    @app.get("/api/v1/patients", response_model=list[PatientOut])
    async def list_patients(store: Store, audit: Audit) -> list[PatientOut]:
        await audit("list_patients", None)
        by_patient: dict[int, list[ObservationRow]] = {}
        for row in await store.latest_values():
            if row.patient_id is not None:
                by_patient.setdefault(row.patient_id, []).append(row)
        return [PatientOut.of(p, by_patient.get(p.id, [])) for p in await store.patients()]

    @app.get("/api/v1/patients/{patient_id}/observations", response_model=list[ObservationOut])
    async def patient_observations(
        patient_id: int,
        store: Store,
        audit: Audit,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
        before: datetime | None = None,
    ) -> list[ObservationOut]:
        if before is not None and before.tzinfo is None:
            raise HTTPException(422, "before must carry a time zone")
        if await store.patient(patient_id) is None:
            raise HTTPException(404, f"no patient {patient_id}")
        await audit("read_observations", patient_id)
        rows = await store.observations(patient_id, limit=limit, before=before)
        return [ObservationOut.of(row) for row in rows]

    @app.get("/api/v1/stream")
    async def stream(events: Events) -> StreamingResponse:
        """Server-sent events: ``observation`` whenever a patient has a new value."""

        async def lines() -> AsyncIterator[str]:
            yield ": connected\n\n"
            async for event in events.subscribe():
                yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"

        return StreamingResponse(lines(), media_type="text/event-stream")

    @app.get("/healthz")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    static = resources.files("dashboards") / "static"
    app.mount("/", StaticFiles(directory=str(static), html=True), name="nurse-page")
    return app
