"""Talking to Journalføringstjenesten (JFT): ``POST {base}/v1/Bundle`` and polling the
``$status`` it names, each with a HelseID DPoP-bound token (:mod:`gateway.fhir.helseid`), and
what each answer means for the queue (:mod:`gateway.fhir.outbound`). No state: the queue
records what happened.

``$status`` is read as FHIR's asynchronous request pattern: 202 still processing, 200 done (an
OperationOutcome with an ``error``/``fatal`` issue in it: failed), 4xx failed with an
OperationOutcome. JFT's exact ``$status`` body is not in its public pages; see docs/fhir.md."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urljoin

from gateway.fhir.helseid import HelseIdClient, HelseIdError, Reply, Unreachable
from gateway.fhir.terminology import FHIR_JSON

#: A client error that says "not now" rather than "not this document".
_TRANSIENT_CLIENT_ERRORS = frozenset({401, 403, 408, 425, 429})


class Verdict(StrEnum):
    ACCEPTED = "accepted"
    """POST: taken for processing (202 + Location)."""
    IN_PROGRESS = "in_progress"
    """$status: not done yet."""
    DONE = "done"
    """$status (or a POST to an endpoint that is not polled): journaled."""
    REFUSED = "refused"
    """This document will not be journaled as it is (400 + OperationOutcome): park it."""
    TRANSIENT = "transient"
    """Try again later (5xx, timeout, connection lost, no token)."""


@dataclass(frozen=True, slots=True)
class Answer:
    verdict: Verdict
    status: int | None
    location: str | None = None
    outcome: str | None = None
    """The OperationOutcome the destination sent (JSON text), if any."""
    error: str | None = None
    """What went wrong, for the queue's ``last_error``."""


def _outcome(response: Reply) -> tuple[dict[str, Any] | None, str | None]:
    try:
        body = response.json()
    except ValueError:
        return None, None
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        return body, json.dumps(body, ensure_ascii=False)
    return None, None


def _issues(outcome: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The issues that are objects (a server may send anything in their place)."""
    issues = outcome.get("issue") if outcome is not None else None
    return [i for i in issues if isinstance(i, dict)] if isinstance(issues, list) else []


def _issue_text(issue: dict[str, Any]) -> str:
    details = issue.get("details")
    for text in (
        issue.get("diagnostics"),
        details.get("text") if isinstance(details, dict) else None,
        issue.get("code"),
    ):
        if isinstance(text, str) and text:
            return text
    return "?"


def outcome_summary(outcome: dict[str, Any] | None) -> str:
    """The issues' diagnostics (or details, or codes), for a log line and ``last_error``."""
    if outcome is None:
        return "no OperationOutcome"
    return "; ".join(_issue_text(i) for i in _issues(outcome))[:2000] or "empty OperationOutcome"


def _failed(outcome: dict[str, Any] | None) -> bool:
    return any(i.get("severity") in ("error", "fatal") for i in _issues(outcome))


class JftClient:
    """A FHIR endpoint that takes Bundles: JFT (``POST {base}/v1/Bundle`` → 202, polled) by
    default; with ``path=""`` and ``polled=False`` PMD (``POST {base}`` → 200/201, done)."""

    def __init__(
        self,
        base_url: str,
        helseid: HelseIdClient,
        *,
        timeout_s: float,
        path: str = "/v1/Bundle",
        polled: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._post_url = f"{self.base_url}{path}" if path else base_url
        self._helseid = helseid
        self._timeout_s = timeout_s
        self._polled = polled

    async def _request(self, method: str, url: str, body: bytes | None = None) -> Reply:
        headers = {"Accept": FHIR_JSON}
        if body is not None:
            headers["Content-Type"] = FHIR_JSON
        return await self._helseid.request(
            method, url, content=body, headers=headers, timeout=self._timeout_s
        )

    async def post_bundle(self, body: bytes) -> Answer:
        try:
            response = await self._request("POST", self._post_url, body)
        except (Unreachable, HelseIdError) as exc:
            return Answer(Verdict.TRANSIENT, None, error=str(exc))
        outcome, text = _outcome(response)
        status = response.status_code
        if status in (200, 201) and not self._polled:
            return Answer(Verdict.DONE, status, None, text)
        if status in (200, 201, 202):
            location = response.headers.get("Location")
            if not location:
                return Answer(Verdict.TRANSIENT, status, None, text, f"{status} without Location")
            return Answer(Verdict.ACCEPTED, status, urljoin(self.base_url + "/", location), text)
        return self._failure(status, outcome, text)

    async def poll(self, location: str) -> Answer:
        try:
            response = await self._request("GET", location)
        except (Unreachable, HelseIdError) as exc:
            return Answer(Verdict.TRANSIENT, None, error=str(exc))
        outcome, text = _outcome(response)
        status = response.status_code
        if status == 202:
            return Answer(Verdict.IN_PROGRESS, status, location, text)
        if status == 200:
            if _failed(outcome):
                return Answer(Verdict.REFUSED, status, location, text, outcome_summary(outcome))
            return Answer(Verdict.DONE, status, location, text)
        return self._failure(status, outcome, text)

    @staticmethod
    def _failure(status: int, outcome: dict[str, Any] | None, text: str | None) -> Answer:
        error = f"HTTP {status}: {outcome_summary(outcome)}"
        if status >= 500 or status in _TRANSIENT_CLIENT_ERRORS:
            return Answer(Verdict.TRANSIENT, status, None, text, error)
        return Answer(Verdict.REFUSED, status, None, text, error)
