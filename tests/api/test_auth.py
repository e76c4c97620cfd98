"""Every merchant endpoint: no token or a revoked one → 401, a token without the endpoint's scope →
403, the scope → through; all as problem details. And the per-token rate limit."""
from __future__ import annotations

import pytest

from kami.api.models import SCOPES
from kami.api.tokens import api_token_create, api_token_revoke
from tests.api.conftest import Api, assert_problem

pytestmark = pytest.mark.sqlite_only  # token scopes and answers; the endpoints run on every engine in test_endpoints.py

# (method, path, scope, body)
ENDPOINTS = [
    ("get", "/products", "read", None),
    ("get", "/products/p1", "read", None),
    ("get", "/stock", "read", None),
    ("get", "/orders", "read", None),
    ("get", "/orders/K123", "read", None),
    ("post", "/stock/p1/keys", "stock", {"keys": ["A"]}),
    ("get", "/stock/p1/keys", "read", None),
    ("post", "/stock/p1/generate", "stock", {"count": 2}),
    ("post", "/stock/p1/void", "stock", {"fingerprint": "abcdef"}),
    ("post", "/orders/K123/resend", "orders", {}),
    ("post", "/orders/K123/refund", "refunds", {"reason": "test"}),
    ("post", "/orders/K123/keys/1/replace", "orders", {"reason": "test"}),
    ("post", "/products", "products", {"slug": "p-new", "name": "New", "price": "1.00"}),
    ("patch", "/products/p1", "products", {"active": False}),
    ("upload", "/stock/p1/imports", "stock", b"K-1\n"),
    ("get", "/imports/1", "stock", None),
    ("get", "/imports/1/report", "stock", None),
]
# What a token with the scope gets (the order K123 and the import job 1 do not exist).
THROUGH = {("get", "/orders/K123"): 404, ("post", "/orders/K123/resend"): 404, ("post", "/orders/K123/refund"): 404,
           ("post", "/orders/K123/keys/1/replace"): 404, ("post", "/stock/p1/void"): 404, ("post", "/products"): 201,
           ("upload", "/stock/p1/imports"): 202, ("get", "/imports/1"): 404, ("get", "/imports/1/report"): 404}
IDS = [f"{m} {p}" for m, p, _, _ in ENDPOINTS]


def call(api: Api, method: str, path: str, body):
    if method == "upload":
        return api.upload(path, body)
    return api.get(path) if method == "get" else getattr(api, method)(path, body)


@pytest.mark.parametrize(("method", "path", "scope", "body"), ENDPOINTS, ids=IDS)
def test_a_token_without_the_scope_gets_403_problem(make_token, make_product, method, path, scope, body):
    # given
    make_product("p1")
    others = ",".join(s for s in SCOPES if s != scope)
    # when
    response = call(Api(make_token(others)), method, path, body)
    # then
    problem = assert_problem(response, 403, "forbidden")
    assert f"'{scope}' scope" in problem["detail"] and problem["instance"] == f"/api/v1/merchant{path}"


@pytest.mark.parametrize(("method", "path", "scope", "body"), ENDPOINTS, ids=IDS)
def test_no_token_a_wrong_one_or_a_revoked_one_gets_401_problem(db, make_product, method, path, scope, body):
    # given
    make_product("p1")
    revoked = api_token_create(name="old", scopes=list(SCOPES), actor="test").secret
    api_token_revoke(name="old", actor="test")
    # when / then
    for secret in (None, "kami_not-a-token", revoked):
        response = call(Api(secret), method, path, body)
        assert_problem(response, 401, "unauthorized")
        assert response["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path", "scope", "body"), ENDPOINTS, ids=IDS)
def test_a_token_with_the_scope_gets_through(make_token, make_product, method, path, scope, body):
    # given
    make_product("p1")
    # when
    response = call(Api(make_token(scope)), method, path, body)
    # then: through auth; the unknown order K123 is a 404 problem, the rest succeed
    expected = THROUGH.get((method, path), 200)
    if expected == 404:
        assert_problem(response, 404, "not-found")
    else:
        assert response.status_code == expected, response.content


def test_each_token_has_its_own_rate_limit(make_token, settings):
    # given
    settings.KAMI_API_RATE_LIMIT = 3
    busy, calm = Api(make_token("read")), Api(make_token("read"))
    # when
    answers = [busy.get("/products").status_code for _ in range(4)]
    # then
    assert answers == [200, 200, 200, 429]
    limited = busy.get("/products")
    assert_problem(limited, 429, "rate-limited")
    assert limited["Retry-After"] == "60"
    assert calm.get("/products").status_code == 200
