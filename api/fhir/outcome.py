"""Every error under /fhir/ as an OperationOutcome, with the HTTP status it had.

The API's own handlers answer `{"detail": ...}`; for a FHIR path the same errors (401
from the bearer check, 403 for a role, 404, 422 of a parameter, 503 of the database)
become an OperationOutcome whose diagnostics carry that detail.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.limits import validation_error

FHIR_PREFIX = "/fhir/"
MEDIA_TYPE = "application/fhir+json"

_ISSUE_CODE = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    413: "too-costly",
    422: "invalid",
    503: "transient",
}


class FhirResponse(JSONResponse):
    media_type = MEDIA_TYPE


def operation_outcome(diagnostics: str, code: str, severity: str = "error") -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


def outcome_response(
    status: int, diagnostics: str, code: str | None = None, headers: dict[str, str] | None = None
) -> FhirResponse:
    return FhirResponse(
        operation_outcome(diagnostics, code or _ISSUE_CODE.get(status, "exception")),
        status_code=status,
        headers=headers,
    )


async def http_error(request: Request, exc: Exception) -> Response:
    """HTTPException (also an unknown path's 404): an OperationOutcome under /fhir/, the
    API's usual answer elsewhere."""
    assert isinstance(exc, StarletteHTTPException)
    if not request.url.path.startswith(FHIR_PREFIX):
        return await http_exception_handler(request, exc)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return outcome_response(
        exc.status_code,
        detail,
        getattr(exc, "fhir_code", None),
        headers=dict(exc.headers or {}),
    )


async def invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if not request.url.path.startswith(FHIR_PREFIX):
        return await validation_error(request, exc)
    reasons = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
    )
    return outcome_response(400, reasons or "invalid request")
