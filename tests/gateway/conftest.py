"""Fixtures the platform's wings share in their tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from access import platform_settings, signed_in
from chain import serving_app

from gateway.api.app import create_app
from gateway.auth import Role
from gateway.live.events import EventBus
from gateway.records.store import RecordStore


@pytest_asyncio.fixture
async def admin(store: RecordStore) -> AsyncIterator[httpx.AsyncClient]:
    """An admin's HTTP client of the platform's API, served by uvicorn on ``store``."""
    app = create_app(store, EventBus(), platform_settings())
    headers = await signed_in(store, Role.ADMIN)
    async with serving_app(app) as url, httpx.AsyncClient(base_url=url, headers=headers) as client:
        yield client
