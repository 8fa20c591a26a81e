"""Schemathesis against the live OpenAPI document of the care platform: requests generated from
the schema (valid ones, and ones that break it) sent to a real uvicorn server with an admin's, a
coordinator's, a nurse's and an integration's token. Whatever arrives, the answer must not be a
5xx, and must be as the schema documents it (status, content type, headers, body).

Bounded for the test suite: a fixed number of examples per operation and generation mode,
derandomized (the same requests every run), no example database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import schemathesis
from access import platform_settings, signed_in
from chain import serving_app
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Err

from gateway.api.app import create_app
from gateway.auth import Role
from gateway.live.events import EventBus
from gateway.records.models import CareTeam, Patient
from gateway.records.store import RecordStore
from tryggheim.codes import DeviceProfile
from tryggheim.domain import Observation

pytestmark = pytest.mark.asyncio(loop_scope="module")

GATEWAY = "gw-schema"
DEVICE = "C0:20:00:00:00:01"

#: Operations not fuzzed, and why.
EXCLUDED = {
    # The password flow: every request runs Argon2 (tens of ms of CPU by design), and it has
    # tests of its own (tests/gateway/auth/test_auth_web.py, test_auth_fuzz.py).
    ("POST", "/api/v1/auth/token"),
    # Server-sent events: the response never ends, so a call would never return.
    ("GET", "/api/v1/stream"),
}

#: No 5xx, and every answer as documented: status, content type, headers and body.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

EXAMPLES_PER_OPERATION = 12
"""Per operation, caller and generation mode: 12 valid + 12 invalid requests per operation."""

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    database=None,
    # No shrinking: its time is unbounded, and a failure's report names the request anyway.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)


@dataclass(frozen=True)
class Platform:
    url: str
    callers: dict[Role, dict[str, str]]
    """Bearer headers of one user per role, made before any request can delete her team."""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    path: Path = tmp_path_factory.mktemp("api-schema") / "records.db"
    store = RecordStore(f"sqlite+aiosqlite:///{path}")
    await store.migrate()
    # A patient in a care team with a device, values and an open alarm, so that generated ids
    # (small integers) find something to read, change or erase now and then.
    async with store.session() as s:
        team = CareTeam(tenant_id="default", name="Team A")
        s.add(team)
        await s.flush()
        patient = Patient(
            national_id="01014090011",
            family_name="Ødegård",
            given_name="Kari",
            care_team_id=team.id,
            care_plan="{}",
        )
        s.add(patient)
        await s.flush()
        team_id, patient_id = team.id, patient.id
    await store.pair_device(
        device_id=DEVICE,
        patient_id=patient_id,
        gateway_id=GATEWAY,
        profile=DeviceProfile.PULSE_OXIMETER,
    )
    now = datetime.now(UTC)
    values = [("MDC_PULS_OXIM_PULS_RATE", "74", "{beat}/min"), ("MDC_PULS_OXIM_SAT_O2", "85", "%")]
    await store.commit_batch(
        GATEWAY,
        [
            Observation(
                gateway_id=GATEWAY,
                device_id=DEVICE,
                source="ble:2A5F",
                code=code,
                value=Decimal(value),
                unit=unit,
                time=now - timedelta(minutes=1),
                seq=seq,
            )
            for seq, (code, value, unit) in enumerate(values, start=1)
        ],
        now,
    )
    app = create_app(store, EventBus(), platform_settings())
    async with serving_app(app) as url:
        callers = {
            role: await signed_in(store, role, teams=(team_id,), name=f"fuzz-{role}")
            for role in Role
        }
        yield Platform(url, callers)
    await store.close()


@dataclass
class Report:
    fuzzed: list[tuple[str, str]] = field(default_factory=list)
    """(method, path) of each operation fuzzed."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    no_invalid_data: list[str] = field(default_factory=list)
    """Operations with nothing to make invalid (no parameters, no body)."""
    failures: list[str] = field(default_factory=list)


def fuzz(url: str, headers: dict[str, str]) -> Report:
    """Every operation of the live schema but the excluded ones, with valid and with invalid
    data. Runs in a thread: Schemathesis calls with ``requests`` (blocking) while the server
    lives in the test's event loop."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    report = Report()
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            report.failures.append(f"the schema has an invalid operation: {result.err()}")
            continue
        operation = result.ok()
        key = (operation.method.upper(), operation.path)
        if key in EXCLUDED:
            report.skipped.append(key)
            continue
        report.fuzzed.append(key)
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @FUZZ_SETTINGS
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: schemathesis.Case[Any]) -> None:
                case.call_and_validate(headers=headers, checks=CHECKS, timeout=30)

            # Every operation's failures, rather than stop at the first.
            try:
                run()
            except Unsatisfiable:
                if mode is not schemathesis.GenerationMode.NEGATIVE:
                    raise
                report.no_invalid_data.append(operation.label)
            except (AssertionError, BaseExceptionGroup) as e:  # a Failure or a FailureGroup
                report.failures.append(f"{operation.label} ({mode.value} data): {e}")
    return report


# The admin last: her requests delete care teams and erase patients, which ends the others'
# tokens or leaves them nothing to read.
@pytest.mark.parametrize("role", [Role.COORDINATOR, Role.NURSE, Role.INTEGRATION, Role.ADMIN])
async def test_no_generated_request_gets_a_server_error(platform: Platform, role: Role) -> None:
    report = await asyncio.to_thread(fuzz, platform.url, platform.callers[role])
    assert set(report.skipped) == EXCLUDED, "an excluded operation left the schema"
    assert len(report.fuzzed) >= 30, "the live schema lost its operations"
    assert len(report.no_invalid_data) < len(report.fuzzed) / 2
    assert not report.failures, "\n\n".join(report.failures)
