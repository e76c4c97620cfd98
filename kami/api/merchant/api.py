"""The merchant API's NinjaAPI: bearer tokens with scopes, a per-token rate limit, every error as
RFC 9457 problem details, the OpenAPI 3.1 schema at /api/v1/openapi.json and its interactive
docs at /api/v1/docs (Swagger UI from our own static files: nothing from a CDN)."""
from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from kami.api.merchant.buyer_schema import buyer_schema_add
from kami.api.merchant.idempotency import idempotency_key_missing
from kami.api.merchant.problems import MEDIA_TYPE, Problem, problem_from_error, problem_response
from kami.core.errors import KamiError

log = logging.getLogger("kami.api")
DESCRIPTION = """The merchant API of a Kami shop: products, stock, orders.

Authenticate with `Authorization: Bearer kami_…` (a token from `kami api token add NAME --scopes …`).
Every POST takes an `Idempotency-Key` header. Errors are RFC 9457 problem details
(`application/problem+json`). See docs/api.md.
"""


class MerchantAPI(NinjaAPI):
    def get_openapi_schema(self, *, path_prefix=None, path_params=None):
        """Ninja's schema, with error responses declared as application/problem+json, and the
        buyer API (older plain views, their own error shape) described beside it."""
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                for code, response in operation.get("responses", {}).items():
                    content = response.get("content", {})
                    if int(code) >= 400 and "application/json" in content:
                        content[MEDIA_TYPE] = content.pop("application/json")
        return buyer_schema_add(schema)


api = MerchantAPI(title="Kami merchant API", version="1", description=DESCRIPTION, urls_namespace="merchant-api")


@api.exception_handler(Problem)
def _problem(request, exc: Problem):
    return problem_response(request, exc)


@api.exception_handler(KamiError)
def _kami_error(request, exc: KamiError):
    return problem_response(request, problem_from_error(exc))


@api.exception_handler(AuthenticationError)
def _unauthenticated(request, exc):
    problem = Problem(401, "unauthorized", "send a valid, unrevoked token: Authorization: Bearer kami_…",
                      headers={"WWW-Authenticate": "Bearer"})
    return problem_response(request, problem)


@api.exception_handler(ValidationError)
def _invalid(request, exc: ValidationError):
    errors = [{"location": ".".join(str(part) for part in e.get("loc", ())), "message": e.get("msg", "")}
              for e in exc.errors]
    if any(e["location"] == "header.Idempotency-Key" for e in errors):
        return problem_response(request, idempotency_key_missing())
    first = errors[0] if errors else {"location": "", "message": "invalid"}
    detail = f"{first['location']}: {first['message']}" + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")
    return problem_response(request, Problem(422, "invalid", detail, errors=errors))


@api.exception_handler(RequestDataTooBig)
def _too_large(request, exc):
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return problem_response(request, Problem(413, "too-large", f"the body is over {limit:,} bytes; send fewer items "
                                                               "per request"))


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    kind = {404: "not-found", 409: "conflict", 429: "rate-limited"}.get(exc.status_code, "invalid")
    detail = str(exc)
    if detail == "Cannot parse request body":  # ninja's words for a body that is not JSON
        detail = "the body is not valid JSON: send a JSON object with Content-Type: application/json"
    return problem_response(request, Problem(exc.status_code, kind, detail))


@api.exception_handler(Exception)
def _unexpected(request, exc: Exception):
    # Logged with its traceback like any server error; the merchant gets the one error shape.
    log.error("merchant API: unexpected error on %s %s", request.method, request.path, exc_info=exc)
    return problem_response(request, Problem(500, "server-error", "the shop failed to answer; it has been logged. "
                                                                  "Retry with the same Idempotency-Key"))


from kami.api.merchant import imports, orders, products, stock, webhooks  # noqa: E402  (routers register on `api`)

api.add_router("/merchant/products", products.router)
api.add_router("/merchant/stock", stock.router)
api.add_router("/merchant/orders", orders.router)
api.add_router("/merchant/webhooks", webhooks.router)
api.add_router("/merchant", imports.router)
