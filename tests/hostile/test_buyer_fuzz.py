"""Issue 12, hostile buyers: every buyer-facing form and JSON endpoint, fed hypothesis-made input
(any Unicode, NUL, lone surrogates as raw bytes, 100,000-character values, missing and repeated
fields, arrays and objects where text is expected), answers with a page or a JSON error — never
a 500 — and oversized bodies get a 413 before anything reads them. Engine-agnostic: SQLite only."""
from __future__ import annotations

import json
from decimal import Decimal
from urllib.parse import quote_from_bytes

import pytest
from hypothesis import HealthCheck, given, settings as hyp_settings, strategies as st

from kami.catalog.custom_fields import product_custom_fields_set
from kami.catalog.coupons import coupon_create
from kami.orders.models import Order
from kami.stock.models import Key
from tests.factories import add_keys
from tests.sandbox_play import enable_sandbox

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite_only]
FUZZ = hyp_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                            HealthCheck.too_slow])
FORM = "application/x-www-form-urlencoded"

# Text a hostile buyer types: anything Unicode (surrogates excluded: they travel as raw bytes
# below), the characters that break naive code, and very long values.
NASTY = st.sampled_from(["\x00", "\u200b", "\u202e", "\ufeff", "ＢＵＹＥＲ＠ｅｘａｍｐｌｅ．ｃｏｍ", "𝔢𝔪𝔞𝔦𝔩", "' OR 1=1 --",
                         "<script>", "%00", "\r\n", "1e999", "-1", "NaN", "9" * 40, "a@b", "@", "..", "/"])
TEXT = st.one_of(st.text(st.characters(exclude_categories=["Cs"]), max_size=40), NASTY,
                 st.builds(lambda c, n: c * n, st.sampled_from(["a", "é", "漢", "\x00"]), st.integers(1000, 100_000)))
RAW = st.one_of(TEXT.map(lambda t: t.encode("utf-8")), st.binary(max_size=40),
                st.sampled_from([b"\xed\xa0\x80", b"\xff\xfe", b"\xc0\xaf", b"\xef\xbb\xbf"]))
BUY_FIELDS = ["quantity", "email", "gateway", "coupon", "lookup_password", "custom_game_id", "custom_server",
              "captcha_0", "captcha_1", "csrfmiddlewaretoken"]


def form_body(pairs: list[tuple[str, bytes]]) -> bytes:
    """Fields percent-encoded byte for byte, so invalid UTF-8 reaches the server as sent."""
    return "&".join(f"{quote_from_bytes(k.encode())}={quote_from_bytes(v)}" for k, v in pairs).encode("ascii")


def fields(names: list[str]):
    """A form: known and unknown names, some missing, some repeated, each with a nasty value."""
    return st.lists(st.tuples(st.one_of(st.sampled_from(names), st.text(max_size=12)), RAW), max_size=12)


JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), TEXT)
JSON_ANY = st.recursive(JSON_LEAF, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                        max_leaves=12)


@pytest.fixture
def shop(make_product, settings):
    settings.KAMI_PENDING_LIMIT_EMAIL = settings.KAMI_PENDING_LIMIT_IP = 0  # every example is checked, not counted
    settings.KAMI_LOOKUP_LIMIT_IP = settings.KAMI_LOOKUP_LIMIT_EMAIL = 0
    enable_sandbox()
    product = make_product("gift", name="Gift card", price=Decimal("10.00"), max_qty=5)
    product_custom_fields_set(product=product, actor="owner", fields=[
        {"name": "game_id", "label": "Game ID", "required": True, "max_length": 20},
        {"name": "server", "label": "Server", "required": False, "max_length": 100}])
    add_keys(product, ["G-1", "G-2"])
    coupon_create(code="SAVE20", kind="percent", value="20", usage_limit=5, actor="owner")
    return product


def assert_answered(response) -> None:
    assert response.status_code < 500, response.content[:500]


def keys_untouched() -> None:
    assert sorted(Key.objects.values_list("status", flat=True)) == ["available", "available"]


@FUZZ
@given(pairs=fields(BUY_FIELDS))
def test_the_buy_form_never_answers_500(client, shop, pairs):
    assert_answered(client.post("/buy/gift", form_body(pairs), content_type=FORM))
    keys_untouched()


@FUZZ
@given(pairs=fields(["email", "order_no", "password", "captcha_0", "captcha_1"]))
def test_the_lookup_never_answers_500(client, shop, pairs):
    assert_answered(client.post("/lookup", form_body(pairs), content_type=FORM))


@FUZZ
@given(pairs=fields(["coupon", "quantity", "lang"]))
def test_the_product_page_coupon_check_never_answers_500(client, shop, pairs):
    assert_answered(client.get("/p/gift?" + form_body(pairs).decode()))


@FUZZ
@given(body=st.one_of(
    st.fixed_dictionaries({}, optional={name: JSON_ANY for name in
                                        ["product", "quantity", "email", "gateway", "coupon", "lookup_password",
                                         "custom_values"]}).map(lambda d: json.dumps(d).encode()),
    st.fixed_dictionaries({"product": st.just("gift"), "email": st.just("b@example.com"), "gateway": st.just("sandbox"),
                           "custom_values": st.one_of(JSON_ANY, st.dictionaries(st.sampled_from(["game_id", "server"]),
                                                                                  JSON_ANY))})
    .map(lambda d: json.dumps(d).encode()),
    JSON_ANY.map(lambda v: json.dumps(v).encode()), RAW,
    st.just(b'{"product": "gift", "product": ["gift"], "email": "a@b.co", "email": {"$ne": 1}}')))
def test_the_order_api_never_answers_500(client, shop, body):
    assert_answered(client.post("/api/v1/orders", body, content_type="application/json"))
    keys_untouched()


@FUZZ
@given(order_no=TEXT, token=TEXT, path=st.sampled_from(["/orders/{}", "/orders/{}/status", "/orders/{}/keys.txt",
                                                          "/orders/{}/return", "/api/v1/orders/{}"]))
def test_order_pages_and_the_status_poll_never_answer_500(client, shop, order_no, token, path):
    number = quote_from_bytes(order_no.encode()[:300], safe="") or "x"
    assert_answered(client.get(path.format(number) + "?token=" + quote_from_bytes(token.encode()[:300], safe="")))


@pytest.mark.parametrize("path", ["/buy/gift", "/lookup", "/api/v1/orders", "/pay/sandbox/notify", "/orders/recent"])
def test_an_oversized_body_is_refused_with_413_before_it_is_read(client, shop, path):
    # given a 3 MiB body (buyer paths and notifications accept 2 MiB)
    body = b"email=" + b"a" * (3 * 1024 * 1024)
    # when
    response = client.post(path, body, content_type=FORM)
    # then 413 names the limit, and nothing was created
    assert response.status_code == 413
    assert "at most 2,097,152 accepted" in response.content.decode()
    assert not Order.objects.exists()


def test_the_back_office_may_receive_a_key_file_larger_than_a_buyer_form(client, shop, settings):
    # given a 3 MiB upload to the back office (not signed in): past the middleware, to sign-in
    response = client.post(f"/{settings.KAMI_ADMIN_PATH}/login/", b"a" * (3 * 1024 * 1024), content_type=FORM)
    assert response.status_code != 413
    # but past KAMI_REQUEST_MAX_BYTES even the back office answers 413
    settings.KAMI_REQUEST_MAX_BYTES = 1024 * 1024
    assert client.post(f"/{settings.KAMI_ADMIN_PATH}/login/", b"a" * (3 * 1024 * 1024),
                       content_type=FORM).status_code == 413
