"""RFC 9457 problem details: every error of the merchant API in one JSON shape.

`type` is a stable URN per kind of problem (docs/api.md lists them), `title` is stable for that
type, `detail` says what went wrong and what to do, `instance` is the request's path.
"""
from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse

from kami.core.errors import BadInput, Conflict, KamiError, NotFound, Retryable, SoldOut

MEDIA_TYPE = "application/problem+json"
TITLES = {
    "unauthorized": "Missing or invalid API token",
    "forbidden": "The token lacks a scope",
    "not-found": "Not found",
    "invalid": "Invalid request",
    "conflict": "Conflict",
    "rate-limited": "Too many requests",
    "idempotency-key-missing": "Idempotency-Key header required",
    "idempotency-key-reused": "Idempotency-Key reused with another request",
    "idempotency-key-in-progress": "A request with this Idempotency-Key is still running",
    "too-large": "Request body too large",
    "unavailable": "Service unavailable, retry later",
    "refused": "Refused by an outside service",
    "server-error": "Internal error",
}


class Problem(Exception):
    """Raised anywhere under the API; rendered by `problem_response`."""

    def __init__(self, status: int, kind: str, detail: str, *, headers: dict | None = None, **extra):
        super().__init__(detail)
        self.status, self.kind, self.detail, self.headers, self.extra = status, kind, detail, headers or {}, extra


def problem_body(*, status: int, kind: str, detail: str, instance: str = "", **extra) -> dict:
    return {"type": f"urn:kami:problem:{kind}", "title": TITLES[kind], "status": status, "detail": detail,
            "instance": instance, **extra}


def problem_response(request: HttpRequest, problem: Problem) -> HttpResponse:
    body = problem_body(status=problem.status, kind=problem.kind, detail=problem.detail, instance=request.path,
                        **problem.extra)
    response = HttpResponse(json.dumps(body), status=problem.status, content_type=MEDIA_TYPE)
    response["Cache-Control"] = "no-store"
    for name, value in problem.headers.items():
        response[name] = value
    return response


def problem_from_error(exc: KamiError) -> Problem:
    """A service's error as the problem a merchant reads: the message is already the fix."""
    if isinstance(exc, NotFound):
        return Problem(404, "not-found", str(exc) or "not found")
    if isinstance(exc, BadInput):
        return Problem(422, "invalid", str(exc))
    if isinstance(exc, (Conflict, SoldOut)):
        return Problem(409, "conflict", str(exc))
    if isinstance(exc, Retryable):
        return Problem(503, "unavailable", "an outside service (gateway, database lock) did not answer; retry in a "
                                           "moment", headers={"Retry-After": "5"})
    return Problem(502, "refused", str(exc) or "an outside service refused the request")
