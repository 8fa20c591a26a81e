"""Ids beyond what the record store's columns hold (32-bit on PostgreSQL) are a 422, on both
databases — schemathesis found them reaching the database as a 500."""

from __future__ import annotations

import httpx
import pytest
from access import platform_settings, signed_in
from chain import serving_app

from gateway.api.app import create_app
from gateway.auth import Role
from gateway.live.events import EventBus
from gateway.records.store import RecordStore

TOO_BIG = [2**31, 2**63, 10**30]


@pytest.mark.parametrize("big", TOO_BIG)
async def test_an_id_too_big_for_the_database_is_a_422(store: RecordStore, big: int) -> None:
    app = create_app(store, EventBus(), platform_settings())
    async with serving_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        coordinator = await signed_in(store, Role.COORDINATOR)
        admin = await signed_in(store, Role.ADMIN)
        calls = [
            ("GET", f"/api/v1/patients/{big}/observations", coordinator, None),
            ("GET", f"/api/v1/alarms/{big}", coordinator, None),
            ("GET", f"/api/v1/alarms?patient_id={big}", coordinator, None),
            ("POST", f"/api/v1/alarms/{big}/resolve", coordinator, {"note": "x"}),
            ("PUT", f"/api/v1/patients/{big}/care-plan", coordinator, {}),
            ("DELETE", f"/api/v1/registry/care-teams/{big}", admin, None),
            ("PATCH", f"/api/v1/registry/patients/{big}", admin, {"family_name": "N"}),
            ("POST", "/api/v1/registry/gateways", admin, {"id": "gw-1", "patient_id": big}),
            (
                "POST",
                "/api/v1/registry/users",
                admin,
                {
                    "username": "u",
                    "display_name": "U",
                    "roles": ["nurse"],
                    "care_team_ids": [big],
                    "password": "a long enough password",
                },
            ),
        ]
        for method, path, headers, body in calls:
            response = await client.request(method, path, headers=headers, json=body)
            assert response.status_code == 422, (method, path, response.text)
        # The largest id that fits is an ordinary "not found".
        fits = await client.get(f"/api/v1/alarms/{2**31 - 1}", headers=coordinator)
        assert fits.status_code == 404
