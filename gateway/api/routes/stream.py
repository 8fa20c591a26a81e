"""The live stream (``GET /api/v1/stream``, server-sent events) of the caller's patients, and
its end: the stream closes when the caller's token expires, and when her access ends (her
account disabled or changed: checked every ``STREAM_ACCESS_CHECK_S`` and at once when an
access change is published on the event bus). Each patient whose events it delivered is
written to the audit log the first time: once per stream, or once per live session when the
stream is opened with the session's ``X-Tryggheim-View`` (the app's stream, reconnected at each
token renewal, is one session)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from gateway.api.deps import STORE_UNAVAILABLE, Audit, Auditor, Events, ReadsPatient, Registered
from gateway.auth import Action, AuthError, AuthMethod, Principal, TeamScope, policy
from gateway.live.events import ACCESS_CHANGED, PATIENT_MOVED, EventBus
from gateway.registry.service import Registry

log = logging.getLogger(__name__)

#: A comment line on the live stream when it has had nothing to send for this long, so that a
#: client can tell a quiet stream from a dead one (the nurse app: dashboards/static/stream.js).
STREAM_KEEPALIVE_S = 15.0
#: How often an open stream checks that its caller's access has not ended.
STREAM_ACCESS_CHECK_S = 15.0


def _expired(principal: Principal) -> bool:
    return principal.expires_at is not None and datetime.now(UTC) >= principal.expires_at


async def access_ended(principal: Principal, registry: Registry) -> str | None:
    """Why the caller may no longer read (None: she still may)."""
    if _expired(principal):
        return "the access token expired"
    if principal.auth_method is not AuthMethod.PASSWORD:
        return None  # the identity provider's token: it ends when it expires
    try:
        await registry.check_session(principal)
    except AuthError as e:
        return str(e.args[0])
    except STORE_UNAVAILABLE:
        return "the record store is not reachable to check access"
    return None


def _allows(scope: TeamScope, event: dict[str, Any], team_field: str) -> bool:
    team = event.get(team_field)
    return scope.allows(str(event.get("tenant_id")), None if team is None else str(team))


async def _events(
    principal: Principal, events: EventBus, registry: Registry, audit: Auditor
) -> AsyncIterator[str]:
    scope = policy.visible_team_ids(principal, Action.READ_PATIENT)
    # The subscription is read in a task of its own, so that waiting for an event can time
    # out (a keepalive line, an access check) without ending the subscription. The hand-over
    # queue holds one event: a slow reader still backs up the bus, which drops it.
    inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(1)

    async def receive() -> None:
        async for event in events.subscribe():
            await inbox.put(event)
        await inbox.put(None)

    receiver = asyncio.create_task(receive(), name="stream-subscription")
    audited: set[int] = set()
    last_sent = next_check = time.monotonic()
    try:
        # "connected" only once the subscription is on the bus: the app reloads when it reads
        # it, and an event committed in between would otherwise reach neither (the task's first
        # step, which subscribes, runs before this one resumes).
        await asyncio.sleep(0)
        yield ": connected\n\n"
        while True:
            now = time.monotonic()
            if now >= next_check or _expired(principal):
                if (reason := await access_ended(principal, registry)) is not None:
                    log.info("live stream of %s closed: %s", principal.subject, reason)
                    yield f": closed: {reason}\n\n"
                    return
                next_check = now + STREAM_ACCESS_CHECK_S
            wait = min(last_sent + STREAM_KEEPALIVE_S, next_check) - now
            if principal.expires_at is not None:
                wait = min(wait, principal.expires_at.timestamp() - time.time())
            try:
                event = await asyncio.wait_for(inbox.get(), max(wait, 0.0))
            except TimeoutError:
                if time.monotonic() >= last_sent + STREAM_KEEPALIVE_S:
                    yield ": keepalive\n\n"
                    last_sent = time.monotonic()
                elif principal.expires_at is not None:
                    next_check = time.monotonic()  # the token's end: check at once
                continue
            if event is None:
                return
            if event["type"] == ACCESS_CHANGED:
                next_check = time.monotonic()
                continue
            visible = _allows(scope, event, "care_team_id")
            if event["type"] == PATIENT_MOVED:
                # Her old team is told too, so that its apps drop the patient; nothing of
                # the patient is shown to them (no audit row), only that she is not theirs.
                if not visible and not _allows(scope, event, "from_care_team_id"):
                    continue
                event = {**event, "visible": visible}
            elif not visible:
                continue
            patient_id = event.get("patient_id")
            if visible and isinstance(patient_id, int) and patient_id not in audited:
                try:
                    await audit.once("live_stream", [patient_id])
                except STORE_UNAVAILABLE:
                    # Nothing is shown that the audit log does not record.
                    yield ": closed: the record store is not reachable\n\n"
                    return
                audited.add(patient_id)
            yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"
            last_sent = time.monotonic()
    finally:
        receiver.cancel()


def stream_router() -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["care"])

    @router.get("/stream")
    async def stream(
        principal: ReadsPatient, events: Events, registry: Registered, audit: Audit
    ) -> StreamingResponse:
        """Server-sent events for the caller's patients: ``observation`` when a patient has a
        new value, ``alarm`` when an alarm is raised, changes state or escalates, ``patient``
        when a patient is registered, ``patient_moved`` when a patient goes to another care team
        (to her old team's and her new team's streams, with ``visible``: whether she is now
        the caller's). The stream ends when the token expires or the caller's
        access ends (sign in again)."""
        await audit.once("open_live_stream", [])
        return StreamingResponse(
            _events(principal, events, registry, audit), media_type="text/event-stream"
        )

    return router
