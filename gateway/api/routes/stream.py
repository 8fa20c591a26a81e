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
from collections import deque
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
    audited: set[int] = set()
    # Events taken from the subscription and not yet handled: after an access change the rest
    # waits here until access has been checked again.
    pending: deque[dict[str, Any] | None] = deque()
    last_sent = next_check = time.monotonic()
    async with events.subscription() as inbox:
        # "connected" only once the subscription is on the bus: the app reloads when it reads
        # it, and an event committed in between would otherwise reach neither.
        yield ": connected\n\n"
        while True:
            now = time.monotonic()
            if now >= next_check or _expired(principal):
                if (reason := await access_ended(principal, registry)) is not None:
                    log.info("live stream of %s closed: %s", principal.subject, reason)
                    yield f": closed: {reason}\n\n"
                    return
                next_check = now + STREAM_ACCESS_CHECK_S
            if not pending:
                wait = min(last_sent + STREAM_KEEPALIVE_S, next_check) - now
                if principal.expires_at is not None:
                    wait = min(wait, principal.expires_at.timestamp() - time.time())
                try:
                    pending.extend(await asyncio.wait_for(inbox.waiting(), max(wait, 0.0)))
                except TimeoutError:
                    if time.monotonic() >= last_sent + STREAM_KEEPALIVE_S:
                        yield ": keepalive\n\n"
                        last_sent = time.monotonic()
                    elif principal.expires_at is not None:
                        next_check = time.monotonic()  # the token's end: check at once
                    continue
            # Everything waiting goes out in one write (a round's events for a whole team):
            # one packet to the tablet, not one per patient, and one audit transaction for the
            # patients it shows for the first time, not one each.
            shown: list[dict[str, Any]] = []
            newly_seen: set[int] = set()
            dropped = False
            while pending:
                event = pending.popleft()
                if event is None:  # dropped by the bus as too slow
                    dropped = True
                    break
                if event["type"] == ACCESS_CHANGED:
                    next_check = time.monotonic()
                    break
                if (visible := _shown(scope, event)) is None:
                    continue
                event, shows_patient = visible
                shown.append(event)
                patient_id = event.get("patient_id")
                if shows_patient and isinstance(patient_id, int) and patient_id not in audited:
                    newly_seen.add(patient_id)
            if newly_seen:
                try:
                    await audit.once("live_stream", sorted(newly_seen))
                except STORE_UNAVAILABLE:
                    # Nothing is shown that the audit log does not record.
                    yield ": closed: the record store is not reachable\n\n"
                    return
                audited |= newly_seen
            if shown:
                yield "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in shown)
                last_sent = time.monotonic()
            if dropped:
                return


def _shown(scope: TeamScope, event: dict[str, Any]) -> tuple[dict[str, Any], bool] | None:
    """The event as the caller's stream shows it, and whether it shows her a patient; None
    when it is not hers to see."""
    visible = _allows(scope, event, "care_team_id")
    if event["type"] == PATIENT_MOVED:
        # Her old team is told too, so that its apps drop the patient; nothing of the patient
        # is shown to them (no audit row), only that she is not theirs.
        if not visible and not _allows(scope, event, "from_care_team_id"):
            return None
        return {**event, "visible": visible}, visible
    return (event, True) if visible else None


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
