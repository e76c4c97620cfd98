"""Bearer tokens with scopes, and the per-token rate limit (KAMI_API_RATE_LIMIT a minute)."""
from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.utils import translation
from ninja.security import HttpBearer

from kami.api.merchant.problems import Problem
from kami.api.models import ApiToken
from kami.api.tokens import api_token_authenticate
from kami.core.ratelimit import ratelimit_hit


class ScopedToken(HttpBearer):
    """A valid, unrevoked token that holds `scope`. Counts one request against the token's limit."""

    def __init__(self, scope: str):
        super().__init__()
        self.scope = scope

    def __call__(self, request: HttpRequest):
        # Every merchant endpoint passes here first: its problems' `detail` is English unless the
        # caller asks for a language (docs/api.md), not the shop's default language for buyers.
        if "HTTP_ACCEPT_LANGUAGE" not in request.META:
            translation.activate("en")
            request.LANGUAGE_CODE = "en"
        return super().__call__(request)

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | None:
        found = api_token_authenticate(secret=token.strip())
        if found is None:
            return None
        limit = settings.KAMI_API_RATE_LIMIT
        if not ratelimit_hit(scope="api-token", identity=found.token_hash, limit=limit, window=60):
            raise Problem(429, "rate-limited", f"this token made more than {limit} requests in a minute; wait and "
                                               "retry, or spread the calls over more time", headers={"Retry-After": "60"})
        if self.scope not in found.scopes:
            raise Problem(403, "forbidden", f"this endpoint needs the {self.scope!r} scope; the token has "
                                            f"{', '.join(found.scopes)}. Make a token with it: "
                                            f"kami api token add NAME --scopes {self.scope}")
        return found


READ, STOCK, ORDERS, REFUNDS, PRODUCTS = (ScopedToken(s) for s in ("read", "stock", "orders", "refunds", "products"))
