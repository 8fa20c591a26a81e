"""Fixtures for the simulated-firmware tests: a virtual radio, a bleak backend (the gateway's
side, in-process) on it, and an inbox that collects notified/indicated values per UUID.

No ``__init__.py`` here (as in tests/edge): it would make this directory a package named
``firmware_sim`` that shadows the real one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sim_helpers import Inbox

from edge.ble.backends.bumble import BumbleBackend, bumble_backend
from firmware_sim.ble.radio import VirtualRadio


@pytest.fixture
async def radio() -> AsyncIterator[VirtualRadio]:
    async with VirtualRadio() as radio:
        yield radio


@pytest.fixture
async def backend(radio: VirtualRadio) -> AsyncIterator[BumbleBackend]:
    async with bumble_backend(radio.open_central_transport()) as backend:
        yield backend


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()
