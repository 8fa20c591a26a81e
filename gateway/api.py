"""REST + live-stream API of the care platform, and the nurse page. Routes stay thin: the record
store does the work, dependencies carry state in."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from importlib import resources
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from fastapi.staticfiles import StaticFiles

from gateway.events import EventBus
from gateway.models import ObservationRow
from gateway.schemas import ObservationOut, PatientOut, Problem
from gateway.store import Cursor, HistoryQuery, RecordStore

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
            raise HTTPException(422, f"{name} must carry a time zone")
    return HistoryQuery(since=since, until=until, codes=tuple(code or ()), limit=limit)


History = Annotated[HistoryQuery, Depends(history_query)]


def _cursor(text: str | None) -> Cursor | None:
    if text is None:
        return None
    try:
        return Cursor.decode(text)
    except ValueError:
        raise HTTPException(422, "cursor: not one this API handed out") from None


async def _known_patient(store: RecordStore, patient_id: int) -> None:
    if await store.patient(patient_id) is None:
        raise HTTPException(404, f"no patient {patient_id}")


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
        query: History,
        response: Response,
        cursor: Annotated[str | None, Query(description="X-Next-Cursor of the last page")] = None,
    ) -> list[ObservationOut]:
        """A patient's observations, newest first, a page at a time: when a page is full the
        ``X-Next-Cursor`` response header continues the listing."""
        after = _cursor(cursor)
        await _known_patient(store, patient_id)
        await audit("read_observations", patient_id)
        rows = await store.observations(patient_id, query, after=after)
        if len(rows) == query.limit:
            response.headers["X-Next-Cursor"] = Cursor.after(rows[-1]).encode()
        return [ObservationOut.of(row) for row in rows]

    @app.get(
        "/api/v1/patients/{patient_id}/observations.csv",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/csv": {}}}},
    )
    async def patient_observations_csv(
        patient_id: int, store: Store, audit: Audit, query: History
    ) -> StreamingResponse:
        """All of a patient's observations in the range as CSV (UTF-8, one row per value)."""
        await _known_patient(store, patient_id)
        await audit("export_csv", patient_id)
        page = replace(query, limit=CSV_PAGE)

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
