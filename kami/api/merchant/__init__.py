"""The merchant API (`/api/v1/merchant/…`), built with django-ninja: docs/api.md.

api.py          the NinjaAPI: exception handlers (every error a problem), the schema, the routers
auth.py         bearer tokens with scopes, the per-token rate limit
problems.py     RFC 9457 problem details: the one error shape
idempotency.py  Idempotency-Key on every POST
schemas.py      request and response shapes (the OpenAPI schema is made from them)
selectors.py    reads no domain selector offers yet
products.py stock.py orders.py imports.py  the endpoints: parse, call one service, render
"""
