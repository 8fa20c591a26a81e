"""Access that ends (issue 12 #6) and an audit log that names the patients shown (#11), against
the platform's API on a real uvicorn server, with the record store on SQLite and PostgreSQL.

A token the platform issued is checked against its user's row on every request: disabling her,
or changing her roles, care teams or password, ends it on her next request, and her open live
stream closes too; the stream also closes when the token expires."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio
from access import auth_settings, bearer_of, care_team_of, platform_settings, signed_in, user
from chain import serving_app
from sqlalchemy import delete, select, update

import gateway.api.routes.stream
from gateway.api.app import create_app
from gateway.auth import Role
from gateway.live.events import EventBus, observation_event
from gateway.records.models import AuditEntry, Patient, User, user_teams
from gateway.records.store import RecordStore
from gateway.records.unit_of_work import PatientScope
from gateway.registry.service import Registry

pytestmark = pytest.mark.asyncio

LIFETIME_S = auth_settings().access_token_lifetime_s
SESSION_CHECK_CACHE_S = auth_settings().session_check_cache_s


@dataclass
class Platform:
    store: RecordStore
    events: EventBus
    client: httpx.AsyncClient
    team_a: int
    team_b: int
    patients: dict[str, int]
    """Patients by name: "a1", "a2" in team A, "b1" in team B."""

    def observation(self, name: str) -> None:
        """An observation event for the patient, as ingest publishes it after commit."""
        team = self.team_a if name.startswith("a") else self.team_b
        self.events.publish(observation_event(self.patients[name], PatientScope("default", team)))


@pytest_asyncio.fixture
async def platform(store: RecordStore) -> AsyncIterator[Platform]:
    patients: dict[str, int] = {}
    async with store.session() as s:
        for number, name in enumerate(("a1", "a2", "b1"), start=1):
            patient = Patient(
                national_id=f"{20_000_000_000 + number}",
                family_name=name,
                given_name="Test",
                care_plan="{}",
            )
            s.add(patient)
            await s.flush()
            patients[name] = patient.id
    team_a = await care_team_of(store, patients["a1"], "Team A")
    await care_team_of(store, patients["a2"], "Team A")
    team_b = await care_team_of(store, patients["b1"], "Team B")
    events = EventBus()
    app = create_app(store, events, platform_settings())
    async with serving_app(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield Platform(store, events, client, team_a, team_b, patients)


async def listed(platform: Platform, headers: dict[str, str]) -> httpx.Response:
    return await platform.client.get("/api/v1/patients", headers=headers)


# --- access ends on the next request ----------------------------------------------------------


async def test_a_disabled_users_token_is_refused_on_her_next_request(platform: Platform) -> None:
    nurse = await user(platform.store, Role.NURSE, teams=(platform.team_a,), name="kari")
    headers = bearer_of(nurse)
    admin = await signed_in(platform.store, Role.ADMIN)
    assert (await listed(platform, headers)).status_code == 200

    user_id = int(nurse.subject.removeprefix("user:"))
    disabled = await platform.client.patch(
        f"/api/v1/registry/users/{user_id}", json={"disabled": True}, headers=admin
    )
    assert disabled.status_code == 200, disabled.text

    refused = await listed(platform, headers)
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["error"] == "invalid_token"
    assert "disabled" in refused.json()["detail"]
    assert refused.headers["WWW-Authenticate"].startswith('Bearer realm="tryggheim"')


async def test_a_nurse_moved_to_another_team_loses_her_old_teams_patients_at_once(
    platform: Platform,
) -> None:
    nurse = await user(platform.store, Role.NURSE, teams=(platform.team_a,), name="moved")
    old_token = bearer_of(nurse)
    admin = await signed_in(platform.store, Role.ADMIN)
    a1 = platform.patients["a1"]
    url = f"/api/v1/patients/{a1}/observations"
    assert (await platform.client.get(url, headers=old_token)).status_code == 200

    user_id = int(nurse.subject.removeprefix("user:"))
    moved = await platform.client.patch(
        f"/api/v1/registry/users/{user_id}",
        json={"care_team_ids": [platform.team_b]},
        headers=admin,
    )
    assert moved.status_code == 200, moved.text

    assert (await platform.client.get(url, headers=old_token)).status_code == 401
    # Signed in again, she sees her new team only.
    again = await user_again(platform, nurse.username)
    assert {p["id"] for p in (await listed(platform, again)).json()} == {platform.patients["b1"]}
    assert (await platform.client.get(url, headers=again)).status_code == 404


async def user_again(platform: Platform, username: str) -> dict[str, str]:
    """A fresh token for the user as she is now (what signing in again gives her)."""
    record = await Registry(platform.store).user_record(username)
    assert record is not None
    return bearer_of(record)


async def test_changes_that_do_not_touch_access_keep_the_token(platform: Platform) -> None:
    nurse = await user(platform.store, Role.NURSE, teams=(platform.team_a,), name="renamed")
    headers = bearer_of(nurse)
    admin = await signed_in(platform.store, Role.ADMIN)
    user_id = int(nurse.subject.removeprefix("user:"))
    same = await platform.client.patch(
        f"/api/v1/registry/users/{user_id}",
        json={"display_name": "Kari Nordmann", "care_team_ids": [platform.team_a]},
        headers=admin,
    )
    assert same.status_code == 200
    assert (await listed(platform, headers)).status_code == 200


@pytest.mark.parametrize("change", ["roles", "password", "team deleted", "user deleted"])
async def test_each_change_to_access_ends_the_token(platform: Platform, change: str) -> None:
    nurse = await user(platform.store, Role.NURSE, teams=(platform.team_a,), name="changed")
    headers = bearer_of(nurse)
    admin = await signed_in(platform.store, Role.ADMIN)
    user_id = int(nurse.subject.removeprefix("user:"))
    assert (await listed(platform, headers)).status_code == 200
    users = f"/api/v1/registry/users/{user_id}"
    if change == "roles":
        response = await platform.client.patch(
            users, json={"roles": ["coordinator"]}, headers=admin
        )
    elif change == "password":
        response = await platform.client.patch(
            users, json={"password": "a new long password 123"}, headers=admin
        )
    elif change == "team deleted":
        response = await platform.client.delete(
            f"/api/v1/registry/care-teams/{platform.team_a}", headers=admin
        )
    else:  # by another process or by hand: the row is gone
        async with platform.store.session() as s:
            await s.execute(delete(user_teams).where(user_teams.c.user_id == user_id))
            await s.execute(delete(User).where(User.id == user_id))
        # This process learns of it when its memory of the last check runs out.
        await asyncio.sleep(SESSION_CHECK_CACHE_S)
        response = httpx.Response(204)
    assert response.status_code in (200, 204), response.text
    assert (await listed(platform, headers)).status_code == 401


# --- the live stream ends -----------------------------------------------------------------


async def stream_lines(
    platform: Platform,
    headers: dict[str, str],
    until_s: float,
    streaming: asyncio.Event | None = None,
) -> tuple[list[str], float]:
    """The stream's lines until it ends (or ``until_s``), and how long it stayed open;
    ``streaming`` is set at its first observation."""
    lines: list[str] = []
    started = time.monotonic()
    async with platform.client.stream("GET", "/api/v1/stream", headers=headers) as response:
        assert response.status_code == 200

        async def read() -> None:
            async for line in response.aiter_lines():
                if line:
                    lines.append(line)
                if streaming is not None and line == "event: observation":
                    streaming.set()

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(read(), until_s)
    return lines, time.monotonic() - started


async def keep_publishing(platform: Platform, name: str) -> None:
    while True:
        platform.observation(name)
        await asyncio.sleep(0.2)


async def test_the_stream_closes_when_its_token_expires(platform: Platform) -> None:
    nurse = await user(platform.store, Role.NURSE, teams=(platform.team_a,), name="expiring")
    # Issued so long ago that it has two seconds left.
    headers = bearer_of(nurse, now=datetime.now(UTC) - timedelta(seconds=LIFETIME_S - 2))
    publisher = asyncio.create_task(keep_publishing(platform, "a1"))
    try:
        lines, open_s = await stream_lines(platform, headers, until_s=8)
    finally:
        publisher.cancel()
    assert "event: observation" in lines, "the stream delivered nothing while valid"
    assert open_s < 4, f"the stream stayed open {open_s:.1f} s past its token's end"
    assert lines[-1] == ": closed: the access token expired"


async def test_the_stream_closes_when_the_user_is_disabled(platform: Platform) -> None:
    nurse = await user(platform.store, Role.NURSE, teams=(platform.team_a,), name="streamer")
    headers = bearer_of(nurse)
    admin = await signed_in(platform.store, Role.ADMIN)
    user_id = int(nurse.subject.removeprefix("user:"))
    publisher = asyncio.create_task(keep_publishing(platform, "a1"))
    streaming = asyncio.Event()
    disabled_at: list[float] = []

    async def disable_once_it_streams() -> None:
        # Once her stream has delivered (a fixed delay raced the stream's start under load).
        await streaming.wait()
        disabled_at.append(time.monotonic())
        response = await platform.client.patch(
            f"/api/v1/registry/users/{user_id}", json={"disabled": True}, headers=admin
        )
        assert response.status_code == 200

    disabler = asyncio.create_task(disable_once_it_streams())
    try:
        lines, _ = await stream_lines(platform, headers, until_s=15, streaming=streaming)
        closed_at = time.monotonic()
    finally:
        publisher.cancel()
        if not disabler.done():
            disabler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await disabler
    assert disabled_at, "the stream delivered nothing while she had access"
    open_s = closed_at - disabled_at[0]
    assert open_s < 2, f"the stream stayed open {open_s:.1f} s after the user was disabled"
    assert lines[-1] == ": closed: access token no longer valid: the account is disabled"


async def test_the_stream_rechecks_access_changed_elsewhere(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change no event announces (another platform process without a relay, or by hand in
    the database) is found by the periodic check."""
    monkeypatch.setattr(gateway.api.routes.stream, "STREAM_ACCESS_CHECK_S", 0.5)
    nurse = await user(platform.store, Role.NURSE, teams=(platform.team_a,), name="elsewhere")
    headers = bearer_of(nurse)
    user_id = int(nurse.subject.removeprefix("user:"))

    async def disable_in_the_database() -> None:
        await asyncio.sleep(1)
        async with platform.store.session() as s:
            await s.execute(update(User).where(User.id == user_id).values(disabled=True))

    changer = asyncio.create_task(disable_in_the_database())
    try:
        lines, open_s = await stream_lines(platform, headers, until_s=10)
    finally:
        await changer
    limit = 1 + 0.5 + SESSION_CHECK_CACHE_S + 1
    assert open_s < limit, f"the stream stayed open {open_s:.1f} s"
    assert lines[-1].startswith(": closed:")


# --- the audit log names the patients shown -----------------------------------------------


async def audit_of(platform: Platform, subject: str) -> list[tuple[str, int | None, str]]:
    async with platform.store.session() as s:
        entries = await s.scalars(
            select(AuditEntry).where(AuditEntry.actor == subject).order_by(AuditEntry.id)
        )
        return [(e.action, e.patient_id, e.outcome) for e in entries]


@pytest.mark.parametrize(
    ("path", "action"),
    [
        ("/api/v1/patients", "list_patients"),
        ("/api/v1/thresholds", "list_thresholds"),
        ("/api/v1/alarms?state=all", "list_alarms"),
    ],
)
async def test_a_list_is_audited_with_each_patient_it_showed(
    platform: Platform, path: str, action: str
) -> None:
    nurse = await user(platform.store, Role.NURSE, teams=(platform.team_a,), name="lister")
    response = await platform.client.get(path, headers=bearer_of(nurse))
    assert response.status_code == 200
    shown = {platform.patients["a1"], platform.patients["a2"]}
    if action == "list_alarms":  # no alarms yet: the reading is recorded, naming nobody
        assert response.json() == []
        assert await audit_of(platform, nurse.subject) == [(action, None, "allowed")]
    else:
        assert await audit_of(platform, nurse.subject) == [
            (action, p, "allowed") for p in sorted(shown)
        ]


async def test_the_stream_is_audited_with_each_patient_it_delivered(platform: Platform) -> None:
    nurse = await user(platform.store, Role.NURSE, teams=(platform.team_a,), name="watcher")
    headers = bearer_of(nurse, now=datetime.now(UTC) - timedelta(seconds=LIFETIME_S - 2))

    async def publish() -> None:
        for _ in range(10):
            for name in ("a1", "b1", "a2"):
                platform.observation(name)
            await asyncio.sleep(0.1)

    publisher = asyncio.create_task(publish())
    try:
        lines, _ = await stream_lines(platform, headers, until_s=8)
    finally:
        await publisher
    assert lines.count("event: observation") >= 4
    a1, a2 = platform.patients["a1"], platform.patients["a2"]
    entries = await audit_of(platform, nurse.subject)
    assert entries[0] == ("open_live_stream", None, "allowed")
    # Once per patient delivered; never the other team's patient.
    assert sorted(entries[1:]) == sorted(
        [("live_stream", a1, "allowed"), ("live_stream", a2, "allowed")]
    )
