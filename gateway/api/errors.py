"""One shape for every error the API answers: RFC 9457 problem details
(``application/problem+json``: ``type``, ``title``, ``status``, ``detail``, ``hint``, and
``error`` on 401/403 or ``errors`` on 422), documented in the OpenAPI for every route.

Each typed error has one handler here: refused credentials (401 + ``WWW-Authenticate``) and
roles (403), a patient outside the caller's scope (404), conflicts and races (404/409), bad
input (422), and an unreachable record store (503 + ``Retry-After``), whichever route meets it.
A refusal of patient data (403/404) is written to the audit log as ``denied``."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from sqlalchemy import exc as sa
from starlette.exceptions import HTTPException

from gateway.alarms import AlarmTransitionError, ResolutionNoteRequired
from gateway.api.deps import (
    PATIENT_DATA_ACTIONS,
    STORE_UNAVAILABLE,
    Auditor,
    NotVisible,
    api_stats,
)
from gateway.api.routes.fhir import FhirRequestError, operation_outcome
from gateway.api.schemas import MAX_ROW_ID, Problem
from gateway.auth import AuthError, PermissionDenied
from gateway.auth.web import auth_headers
from gateway.fhir.terminology import FHIR_JSON
from gateway.records.queues import QueuedMessageNotFound, QueuedMessageNotParked
from gateway.registry.broker_credentials import BrokerUserTaken
from gateway.registry.privacy import UnknownPatient
from gateway.registry.service import NotFound, RegistryError
from tryggheim.errors import TryggheimError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
#: Seconds a client should wait before retrying while the record store is unreachable.
RETRY_AFTER_S = 10


def problem(
    status: int,
    detail: str,
    *,
    hint: str | None = None,
    error: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = Problem(
        title=HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        hint=hint or None,
        error=error or None,
        errors=errors,
    )
    return JSONResponse(
        body.model_dump(mode="json"), status_code=status, headers=headers, media_type=PROBLEM_JSON
    )


def store_unavailable(request: Request, error: Exception) -> JSONResponse:
    api_stats(request).store_unavailable += 1
    log.warning(
        "record store unavailable during %s %s: %s",
        request.method,
        request.url.path,
        str(error).splitlines()[0] if str(error) else type(error).__name__,
    )
    return problem(
        503,
        "the record store is not reachable",
        hint=f"retry in {RETRY_AFTER_S} s; operators: check the database (GET /readyz)",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def _patient_in_request(request: Request) -> int | None:
    text = request.path_params.get("patient_id") or request.query_params.get("patient_id")
    if isinstance(text, str) and text.isdigit() and 0 < int(text) <= MAX_ROW_ID:
        return int(text)
    return None


async def _audit_denial(
    request: Request, action: str, patient_id: int | None
) -> JSONResponse | None:
    """Write the refusal to the audit log; a 503 answer when the log cannot be written."""
    if getattr(request.state, "principal", None) is None:
        return None
    api_stats(request).denied_patient_data += 1
    try:
        await Auditor(request, request.app.state.store).denied(action, patient_id)
    except STORE_UNAVAILABLE as e:
        return store_unavailable(request, e)
    return None


def _validation_summary(errors: Sequence[dict[str, Any]]) -> str:
    parts = [
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
        for e in errors[:3]
    ]
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more


def invalid_query(name: str, message: str, value: str) -> RequestValidationError:
    """A query parameter the route itself found invalid, answered like any other 422."""
    return RequestValidationError(
        [{"type": "value_error", "loc": ("query", name), "msg": message, "input": value}]
    )


def _jsonable(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Validation errors as JSON: pydantic puts the offending exception object in ``ctx``."""
    loaded: list[dict[str, Any]] = json.loads(json.dumps(list(errors), default=str))
    return loaded


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AuthError)
    async def auth_error(request: Request, exc: AuthError) -> JSONResponse:
        if isinstance(exc, PermissionDenied) and exc.action in PATIENT_DATA_ACTIONS:
            failed = await _audit_denial(request, exc.action, _patient_in_request(request))
            if failed is not None:
                return failed
        return problem(
            exc.status_code,
            str(exc.args[0]) if exc.args else type(exc).__name__,
            hint=exc.hint,
            error=exc.error or "unauthorized",
            headers=auth_headers(exc, app.state.settings.auth.realm),
        )

    @app.exception_handler(NotVisible)
    async def not_visible(request: Request, exc: NotVisible) -> JSONResponse:
        failed = await _audit_denial(request, exc.action, exc.patient_id)
        return failed or problem(404, str(exc.args[0]), hint=exc.hint)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        api_stats(request).bad_requests += 1
        errors = _jsonable(exc.errors())
        log.info("bad request %s %s: %s", request.method, request.url.path, errors[:3])
        if request.url.path.startswith("/fhir/"):
            # A FHIR client expects an OperationOutcome, and FHIR says 400 for a bad search.
            return operation_outcome(400, "value", _validation_summary(errors))
        return problem(422, _validation_summary(errors), errors=errors)

    @app.exception_handler(FhirRequestError)
    async def fhir_request_error(request: Request, exc: FhirRequestError) -> Response:
        api_stats(request).bad_requests += 1
        log.info("FHIR request refused %s: %s", request.url.path, exc.detail)
        return operation_outcome(exc.status_code, exc.code, str(exc.detail))

    @app.exception_handler(HTTPException)
    async def http_exception(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        return problem(exc.status_code, detail, headers=exc.headers)

    def typed(status: int | Callable[[Any], int]) -> Callable[[Request, Exception], Any]:
        async def handler(request: Request, exc: Exception) -> JSONResponse:
            assert isinstance(exc, TryggheimError)
            code = status(exc) if callable(status) else status
            return problem(code, str(exc.args[0]), hint=exc.hint)

        return handler

    @app.exception_handler(RegistryError)
    async def registry_error(request: Request, exc: RegistryError) -> JSONResponse:
        if isinstance(exc, NotFound) and exc.what == "patient" and isinstance(exc.key, int):
            # An administrator's read of a patient outside her tenant (or of none): refused.
            route = request.scope.get("route")
            action = getattr(route, "name", None) or request.url.path
            failed = await _audit_denial(request, action, exc.key)
            if failed is not None:
                return failed
        return problem(exc.status_code, str(exc.args[0]), hint=exc.hint)

    app.add_exception_handler(AlarmTransitionError, typed(409))
    app.add_exception_handler(BrokerUserTaken, typed(409))
    app.add_exception_handler(QueuedMessageNotFound, typed(404))
    app.add_exception_handler(QueuedMessageNotParked, typed(409))
    # A GDPR export or erasure that lost a race with an erasure: the patient is gone.
    app.add_exception_handler(UnknownPatient, typed(404))

    @app.exception_handler(ResolutionNoteRequired)
    async def note_required(request: Request, exc: ResolutionNoteRequired) -> JSONResponse:
        message = str(exc.args[0])
        missing = [{"type": "missing", "loc": ["body", "note"], "msg": message}]
        return problem(422, message, hint=exc.hint, errors=missing)

    @app.exception_handler(sa.IntegrityError)
    async def conflict(request: Request, exc: sa.IntegrityError) -> JSONResponse:
        # A race the route did not foresee (two requests writing the same row at once).
        log.info("conflict in %s %s: %s", request.method, request.url.path, exc.orig)
        return problem(
            409,
            "the change conflicts with another made at the same time",
            hint="reload and try again",
        )

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        return store_unavailable(request, exc)

    for error in STORE_UNAVAILABLE:
        app.add_exception_handler(error, unavailable)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        # Starlette logs the traceback after this answer; the client gets the usual shape.
        return problem(500, "internal error", hint="the error is logged; please report it")


# --- the OpenAPI document -------------------------------------------------------------------

_DESCRIPTIONS = {
    400: "The body cannot be parsed (e.g. not JSON)",
    401: "No valid bearer token (missing, malformed, expired, or its access has ended)",
    403: "The caller's roles do not allow this",
    404: "Not found, or outside the caller's tenant or care teams",
    406: "A ``_format`` other than JSON was asked for (FHIR API)",
    409: "Conflicts with the current state (or with a change made at the same time)",
    422: "Invalid input: ``errors`` names each invalid field",
    503: "The record store (or the identity provider's keys) cannot be reached: retry after "
    "``Retry-After`` seconds",
}


def _error_statuses(path: str, method: str, operation: dict[str, Any]) -> set[int]:
    statuses = {503}
    if operation.get("security"):
        statuses |= {401, 403}
    parameters = {p.get("name") for p in operation.get("parameters", [])}
    if "{" in path or "patient_id" in parameters:
        statuses.add(404)
    if method in ("post", "put", "patch", "delete"):
        statuses.add(409)
    if parameters or "requestBody" in operation:
        statuses.add(422)
    if "requestBody" in operation:
        statuses.add(400)
    return statuses


def _fhir_error_statuses(path: str, method: str, operation: dict[str, Any]) -> set[int]:
    """The FHIR API says 400 (an OperationOutcome) where the rest of the API says 422."""
    statuses = _error_statuses(path, method, operation) - {422}
    if operation.get("parameters"):
        statuses |= {400, 406}
    return statuses


def document_errors(app: FastAPI) -> None:
    """Replace ``app.openapi`` by one that documents the problem answers of every ``/api/``
    route (the token route keeps its RFC 6749 400), and gives the problem body to any error a
    route declares without one."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        content = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        # The FHIR API answers a bad search with an OperationOutcome; sign-in and the record
        # store answer as everywhere else.
        fhir_content = {**content, FHIR_JSON: {"schema": {"type": "object"}}}
        for path, item in schema.get("paths", {}).items():
            for method, operation in item.items():
                responses = operation.setdefault("responses", {})
                declared = {
                    int(code)
                    for code, answer in responses.items()
                    if code.isdigit() and int(code) >= 400 and "content" not in answer
                }
                if path.startswith("/api/"):
                    declared |= _error_statuses(path, method, operation)
                elif path.startswith("/fhir/"):
                    declared |= _fhir_error_statuses(path, method, operation)
                for status in sorted(declared):
                    documented = responses.get(str(status), {})
                    if status == 400 and documented:
                        continue
                    answer: dict[str, Any] = {
                        "description": documented.get("description") or _DESCRIPTIONS[status],
                        "content": fhir_content if path.startswith("/fhir/") else content,
                    }
                    if status == 401:
                        answer["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
                    if status == 503:
                        answer["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
                    responses[str(status)] = answer
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
