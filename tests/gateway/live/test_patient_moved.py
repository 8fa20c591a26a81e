"""A patient moved to another care team is told to the live streams at once (issue 16): the
nurse of her old team is told she is no longer hers (and is shown nothing of her), the nurse of
her new team that she now is, a coordinator that she still is; whether the admin moves her in
the registry or a coordinator assigns her team. Real uvicorn on SQLite and PostgreSQL, the
platform's publisher on the event bus, the stream as the nurse app reads it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from access import bearer_of, platform_settings, user
from chain import serving_app
from sqlalchemy import select

from gateway.api.app import create_app
from gateway.auth import Role
from gateway.live.events import EventBus
from gateway.live.publisher import LivePublisher
from gateway.records.models import DEFAULT_TENANT, AuditEntry
from gateway.records.store import RecordStore
from gateway.registry.service import Registry

pytestmark = pytest.mark.asyncio


async def next_event(lines: AsyncIterator[str]) -> dict[str, Any]:
    """The next event of a stream (its ``data`` line), within a few seconds."""

    async def read() -> dict[str, Any]:
        async for line in lines:
            if line.startswith("data: "):
                event: dict[str, Any] = json.loads(line.removeprefix("data: "))
                return event
        raise AssertionError("the stream ended")

    return await asyncio.wait_for(read(), timeout=5)


@pytest.mark.parametrize("door", ["registry", "care-team"])
async def test_a_patient_moved_to_another_team_leaves_one_stream_and_joins_the_other(
    store: RecordStore, door: str
) -> None:
    registry = Registry(store)
    old = (await registry.create_team(DEFAULT_TENANT, "Sone 1")).id
    new = (await registry.create_team(DEFAULT_TENANT, "Sone 2")).id
    patient = (
        await registry.create_patient(
            DEFAULT_TENANT,
            national_id="15076500565",
            family_name="Ødegård",
            given_name="Kari",
            care_team_id=old,
        )
    ).id
    bus = EventBus()
    store.unit_of_work.handler = LivePublisher(bus, Registry(store))
    siri = await user(store, Role.NURSE, teams=(old,), name="siri")
    nina = await user(store, Role.NURSE, teams=(new,), name="nina")
    kari = await user(store, Role.COORDINATOR, name="kari")
    mover = await user(store, Role.ADMIN if door == "registry" else Role.COORDINATOR)
    async with (
        serving_app(create_app(store, bus, platform_settings())) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
        client.stream("GET", "/api/v1/stream", headers=bearer_of(siri)) as old_stream,
        client.stream("GET", "/api/v1/stream", headers=bearer_of(nina)) as new_stream,
        client.stream("GET", "/api/v1/stream", headers=bearer_of(kari)) as all_stream,
    ):
        streams = [s.aiter_lines() for s in (old_stream, new_stream, all_stream)]
        for lines in streams:
            assert await anext(lines) == ": connected"
        async with store.session() as s:
            before = await s.scalar(select(AuditEntry.id).order_by(AuditEntry.id.desc()))
        if door == "registry":
            moved = await client.patch(
                f"/api/v1/registry/patients/{patient}",
                json={"care_team_id": new},
                headers=bearer_of(mover),
            )
        else:
            moved = await client.put(
                f"/api/v1/patients/{patient}/care-team",
                json={"care_team_id": new},
                headers=bearer_of(mover),
            )
        assert moved.is_success, moved.text
        left, joined, kept = [await next_event(lines) for lines in streams]
        # A change that is not a move (a new name) is not a move on any stream.
        renamed = await client.patch(
            f"/api/v1/registry/patients/{patient}",
            json={"family_name": "Ødegård-Lie"},
            headers=bearer_of(await user(store, Role.ADMIN)),
        )
        assert renamed.status_code == 200
    common = {
        "type": "patient_moved",
        "patient_id": patient,
        "tenant_id": DEFAULT_TENANT,
        "care_team_id": new,
        "from_care_team_id": old,
    }
    assert left == {**common, "visible": False}
    assert joined == {**common, "visible": True}
    assert kept == {**common, "visible": True}
    # The old team's nurse was shown nothing of the patient: no row says she was.
    async with store.session() as s:
        shown = (
            await s.execute(
                select(AuditEntry.actor, AuditEntry.patient_id).where(
                    AuditEntry.id > (before or 0), AuditEntry.action == "live_stream"
                )
            )
        ).all()
    assert sorted(shown) == sorted([(nina.subject, patient), (kari.subject, patient)])
