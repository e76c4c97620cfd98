"""The merchant API's tests: tokens made by the service, requests through Django's test client."""
from __future__ import annotations

import itertools
import json
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from kami.api.tokens import api_token_create
from tests.factories import add_keys, make_orders
from tests.sandbox_play import enable_sandbox, sandbox_notify

_names = itertools.count(1)


@pytest.fixture
def make_token(db):
    """make_token("read,stock") → the bearer secret of a new token with those scopes."""
    def make(scopes: str = "read", name: str | None = None) -> str:
        return api_token_create(name=name or f"t{next(_names)}", scopes=scopes, actor="test").secret

    return make


class Api:
    """A merchant's HTTP client: bearer token, JSON bodies, a fresh Idempotency-Key per POST."""

    def __init__(self, secret: str | None):
        # CSRF checks on, as a real server runs them: a bearer-token API must not need a CSRF token.
        self.client, self.secret = Client(enforce_csrf_checks=True), secret

    def _auth(self) -> dict:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.secret}"} if self.secret else {}

    def get(self, path: str, **params):
        return self.client.get(f"/api/v1/merchant{path}", params, **self._auth())

    def post(self, path: str, body: dict | None = None, *, key: str | None = "new"):
        headers = self._auth()
        if key is not None:
            headers["HTTP_IDEMPOTENCY_KEY"] = uuid.uuid4().hex if key == "new" else key
        return self.client.post(f"/api/v1/merchant{path}", json.dumps(body if body is not None else {}),
                                content_type="application/json", **headers)

    def patch(self, path: str, body: dict):
        return self.client.patch(f"/api/v1/merchant{path}", json.dumps(body), content_type="application/json",
                                 **self._auth())

    def upload(self, path: str, content: bytes, *, name: str = "keys.txt", key: str | None = "new", **fields):
        """A multipart upload, as `curl -F file=@keys.txt` sends it."""
        headers = self._auth()
        if key is not None:
            headers["HTTP_IDEMPOTENCY_KEY"] = uuid.uuid4().hex if key == "new" else key
        return self.client.post(f"/api/v1/merchant{path}", {"file": SimpleUploadedFile(name, content), **fields},
                                **headers)


@pytest.fixture
def api_as(make_token):
    """api_as("read") → an Api client holding a new token with those scopes."""
    return lambda scopes="read": Api(make_token(scopes))


def fulfilled_order(product, *, keys=("KEY-1",), quantity=1):
    """A paid, fulfilled order of `product`, paid through the sandbox like a real gateway."""
    enable_sandbox()
    add_keys(product, keys)
    order = make_orders(product, [quantity])[0]
    assert sandbox_notify(Client(), order_no=order.order_no, amount=str(order.amount)).content == b"ok"
    order.refresh_from_db()
    return order


def assert_problem(response, status: int, kind: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == f"urn:kami:problem:{kind}" and body["status"] == status and body["title"] and body["detail"]
    return body
