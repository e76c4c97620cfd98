"""What the merchant endpoints answer, and that writes run through the back office's services,
audited under the token's name."""
from __future__ import annotations

from decimal import Decimal

from kami.audit.models import AuditLog
from kami.delivery.models import OutboxMessage
from kami.orders.models import Order
from kami.stock.models import Key
from tests.api.conftest import assert_problem, fulfilled_order
from tests.factories import add_keys, make_orders


def test_products_and_one_product(api_as, make_product):
    # given
    make_product("gift-10", name="Gift card", price=Decimal("10.00"), low_stock=5)
    api = api_as("read")
    # when
    listing, one, missing = api.get("/products"), api.get("/products/gift-10"), api.get("/products/nope")
    # then
    assert [p["slug"] for p in listing.json()] == ["gift-10"]
    assert one.json() == {"slug": "gift-10", "name": "Gift card", "kind": "unique", "price": "10.00",
                               "currency": "CNY", "min_qty": 1, "max_qty": 10, "low_stock": 5, "active": True}
    assert "kami product list" in assert_problem(missing, 404, "not-found")["detail"]


def test_stock_counts_per_product(api_as, make_product):
    # given
    product = make_product("gift-10", low_stock=5)
    add_keys(product, ["A", "B", "C"])
    # when
    rows = api_as("read").get("/stock").json()
    # then
    assert rows == [{"product": "gift-10", "available": 3, "sold": 0, "void": 0, "awaiting": 0, "low": True}]


def test_orders_search_by_status_email_product_and_trade_no_newest_first_in_pages(api_as, make_product):
    # given
    product, other = make_product("gift-10"), make_product("other")
    paid = fulfilled_order(product)
    add_keys(product, ["A", "B"])
    add_keys(other, ["C"])
    pending = make_orders(product, [1, 1])
    make_orders(other, [1])
    api = api_as("read")
    # when / then
    assert [o["order_no"] for o in api.get("/orders", status="fulfilled").json()["orders"]] == [paid.order_no]
    assert [o["order_no"] for o in api.get("/orders", trade_no=f"T-{paid.order_no}").json()["orders"]] == [paid.order_no]
    assert len(api.get("/orders", email="BUYER0@example.com ").json()["orders"]) == 3  # each make_orders call: buyer0
    page = api.get("/orders", product="gift-10", limit=2).json()
    assert [o["order_no"] for o in page["orders"]] == [pending[1].order_no, pending[0].order_no]
    rest = api.get("/orders", product="gift-10", limit=2, before=page["next_before"]).json()
    assert [o["order_no"] for o in rest["orders"]] == [paid.order_no] and rest["next_before"] is None
    assert_problem(api.get("/orders", status="lost"), 422, "invalid")


def test_order_detail_has_payments_key_fingerprints_and_timeline_never_the_key(api_as, make_product):
    # given
    order = fulfilled_order(make_product("gift-10"), keys=["SECRET-KEY-TEXT"])
    # when
    response = api_as("read").get(f"/orders/{order.order_no}")
    # then
    body = response.json()
    assert body["status"] == "fulfilled" and body["payments"][0]["trade_no"] == f"T-{order.order_no}"
    assert [k["status"] for k in body["keys"]] == ["sold"] and len(body["keys"][0]["fingerprint"]) == 12
    assert body["timeline"] and all(e["kind"] for e in body["timeline"])
    assert b"SECRET-KEY-TEXT" not in response.content


def test_import_keys_reports_like_the_importer_fulfils_waiting_orders_and_audits_the_token(api_as, make_product,
                                                                                       make_token):
    # given
    product = make_product("gift-10")
    add_keys(product, ["OLD"])
    waiting = _awaiting_stock_order(product)
    api = api_as("stock")
    # when
    response = api.post("/stock/gift-10/keys", {"keys": ["NEW-1", "NEW-2", "NEW-1", "OLD", "", "x" * 1025]})
    # then
    report = response.json()
    assert response.status_code == 200, report
    assert (report["imported"], report["duplicates_in_request"], report["duplicates_stored"], report["invalid"],
            report["blank"]) == (2, 1, 1, 1, 1)
    assert report["duplicate_items"] == [3, 4] and report["invalid_items"][0]["item"] == 6
    assert report["orders_fulfilled"] == 1
    waiting.refresh_from_db()
    assert waiting.status == Order.Status.FULFILLED
    audit = AuditLog.objects.get(action="keys.import")
    assert audit.actor.startswith("api:t")


def test_a_key_with_a_line_break_is_refused_naming_the_item(api_as, make_product):
    # given
    make_product("gift-10")
    # when
    response = api_as("stock").post("/stock/gift-10/keys", {"keys": ["A", "B\nC"]})
    # then
    assert "keys item 2" in assert_problem(response, 422, "invalid")["detail"]
    assert not Key.objects.exists()


def test_resend_queues_a_new_key_email_audited_with_the_token_name(make_token, make_product):
    # given
    from tests.api.conftest import Api
    order = fulfilled_order(make_product("gift-10"))
    api = Api(make_token("orders", name="crm"))
    # when
    response = api.post(f"/orders/{order.order_no}/resend")
    # then
    assert response.status_code == 200, response.content
    row = OutboxMessage.objects.get(pk=response.json()["delivery_id"])
    assert row.dedupe_key == f"order_keys:{order.pk}:resend:1"
    assert AuditLog.objects.get(action="order.resend_delivery").actor == "api:crm"


def test_refund_voids_the_keys_and_a_second_refund_is_a_problem(make_token, make_product):
    # given
    from tests.api.conftest import Api
    order = fulfilled_order(make_product("gift-10"))
    api = Api(make_token("refunds", name="desk"))
    # when
    first = api.post(f"/orders/{order.order_no}/refund", {"reason": "buyer asked"})
    again = api.post(f"/orders/{order.order_no}/refund", {"reason": "buyer asked"})
    # then
    assert first.status_code == 200, first.content
    assert first.json() | {"gateway_ref": "?"} == {"order_no": order.order_no, "manual": False, "keys_voided": 1,
                                                 "gateway_ref": "?"}
    assert first.json()["gateway_ref"]  # the sandbox has a refund API
    assert "already refunded" in assert_problem(again, 422, "invalid")["detail"]
    assert AuditLog.objects.get(action="order.refund").actor == "api:desk"


def _awaiting_stock_order(product):
    from django.test import Client

    from tests.sandbox_play import enable_sandbox, sandbox_notify

    enable_sandbox()
    order = make_orders(product, [1])[0]
    Key.objects.filter(product=product).update(status=Key.Status.VOID)  # no key left to claim
    assert sandbox_notify(Client(), order_no=order.order_no, amount=str(order.amount)).content == b"ok"
    order.refresh_from_db()
    assert order.status == Order.Status.AWAITING_STOCK
    return order


def test_bodies_that_are_not_json_too_large_or_wrong_are_problems_naming_the_fix(api_as, make_product, settings):
    # given
    from tests.api.conftest import Api

    make_product("gift-10")
    api: Api = api_as("stock")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {api.secret}", "HTTP_IDEMPOTENCY_KEY": "k1"}
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    # when
    not_json = api.client.post("/api/v1/merchant/stock/gift-10/keys", "keys: A", content_type="application/json",
                               **headers)
    too_large = api.post("/stock/gift-10/keys", {"keys": ["K" * 100] * 20})
    wrong = api.post("/stock/gift-10/keys", {"keys": "A"})
    # then
    assert "not valid JSON" in assert_problem(not_json, 400, "invalid")["detail"]
    assert "send fewer items" in assert_problem(too_large, 413, "too-large")["detail"]
    problem = assert_problem(wrong, 422, "invalid")
    assert problem["errors"][0]["location"] == "body.payload.keys"
    assert not Key.objects.exists()


def test_generate_then_list_then_void_by_fingerprint(api_as, make_product):
    # given
    make_product("gift-10")
    api = api_as("read,stock")
    # when
    generated = api.post("/stock/gift-10/generate", {"count": 3, "pattern": "GIFT-XXXX-XXXX-XXXX"})
    listed = api.get("/stock/gift-10/keys", status="available").json()
    voided = api.post("/stock/gift-10/void", {"fingerprint": listed[0]["fingerprint"], "reason": "leaked"})
    again = api.post("/stock/gift-10/void", {"fingerprint": listed[0]["fingerprint"], "reason": "leaked"})
    # then
    assert generated.json()["generated"] == 3 and len(listed) == 3
    assert voided.status_code == 200, voided.content
    assert voided.json()["id"] == listed[0]["id"] and voided.json()["status"] == "void"
    assert "already void" in assert_problem(again, 409, "conflict")["detail"]
    assert Key.objects.filter(status="void").count() == 1
    assert AuditLog.objects.get(action="keys.void").actor.startswith("api:")
    assert AuditLog.objects.get(action="keys.generate").actor.startswith("api:")


def test_nul_characters_are_refused_before_the_database_sees_them(api_as, make_product, client):
    # given: PostgreSQL refuses NUL in text; schemathesis found a 500 there
    make_product("gift-10")
    api = api_as("read,refunds")
    # when
    search = api.get("/orders", email="a\x00b")
    path = api.get("/products/gift\x0010")
    refund = api.post("/orders/K1/refund", {"reason": "x\x00"})
    buyer_read = client.get("/api/v1/orders/K1%00", HTTP_X_ORDER_TOKEN="t")
    buyer_create = client.post("/api/v1/orders", {"product": "gift\x0010", "email": "a@b.c", "gateway": "sandbox"},
                               content_type="application/json")
    # then
    for response in (search, path, refund):
        assert_problem(response, 422, "invalid")
    assert buyer_read.status_code == 404
    assert buyer_create.status_code == 400 and "NUL" in buyer_create.json()["message"]


def test_times_with_any_offset_are_searched_in_utc_and_out_of_range_ones_refused(api_as):
    # given: schemathesis sent an offset PostgreSQL cannot hold (-17:28)
    api = api_as("read")
    # when
    odd = api.get("/orders", created_before="0599-03-13T17:23:43.5-17:28")
    naive = api.get("/orders", created_after="2026-01-01T00:00:00")
    beyond = api.get("/orders", created_after="9999-12-31T23:59:59-05:00")
    # then
    assert odd.status_code == 200 and naive.status_code == 200
    assert "out of range" in assert_problem(beyond, 422, "invalid")["detail"]
