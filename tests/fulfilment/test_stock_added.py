"""Keys added from any entry point serve the orders waiting for them at once (fulfilment's
`stock_added`), not at the next sweep: CLI import and generate, the upload job, the back
office's generate page and key restore, `kami demo`. (The merchant API's import is tested with
the API, tests/api.)"""
from __future__ import annotations

import io
from io import StringIO

import pytest
from django.core.management import call_command

from kami.fulfilment.imports import import_jobs_run_due
from kami.orders.models import Order, OrderKey
from kami.stock.jobs import import_job_create
from kami.stock.services import key_void
from tests.backoffice.staffing import admin_url, signed_in
from tests.factories import add_keys
from tests.stock.helpers import awaiting_order

pytestmark = pytest.mark.django_db(transaction=True)


def served(order) -> bool:
    return (Order.objects.get(pk=order.pk).status == Order.Status.FULFILLED
            and OrderKey.objects.filter(order=order).count() == order.quantity)


def test_cli_import_serves_a_waiting_order(make_product, tmp_path):
    # given
    product = make_product("p")
    order = awaiting_order(product, quantity=2)
    keys = tmp_path / "keys.txt"
    keys.write_text("K-1\nK-2\n")
    # when
    call_command("keys", "import", "p", str(keys), stdout=StringIO(), stderr=StringIO())
    # then
    assert served(order)


def test_cli_generate_serves_a_waiting_order(make_product):
    # given
    product = make_product("p")
    order = awaiting_order(product, quantity=3)
    out = StringIO()
    # when
    call_command("keys", "generate", "p", "--count", "3", stdout=out, stderr=StringIO())
    # then
    assert served(order)
    assert out.getvalue().splitlines()[-1] == "awaiting-stock orders fulfilled: 1"


def test_the_upload_job_serves_a_waiting_order(make_product):
    # given
    product = make_product()
    order = awaiting_order(product)
    import_job_create(product=product, stream=io.BytesIO(b"UP-1\n"), filename="keys.txt", actor="alice")
    # when
    import_jobs_run_due()
    # then
    assert served(order)


def test_the_back_office_generate_page_serves_a_waiting_order(make_product):
    # given
    product = make_product()
    order = awaiting_order(product, quantity=2)
    client = signed_in("operator")
    # when
    response = client.post(admin_url("keys/generate/"), {"product": product.pk, "count": 2,
                                                          "pattern": "KAMI-XXXX-XXXX-XXXX"})
    # then
    assert response.status_code == 302
    assert served(order)


def test_restoring_a_key_in_the_back_office_serves_a_waiting_order(make_product):
    # given: the product's one key was voided by mistake, and an order paid meanwhile waits
    product = make_product()
    [key] = add_keys(product, ["ONLY-KEY"])
    key_void(product=product, key_pk=key.pk, reason="mistake", actor="test")
    order = awaiting_order(product)
    client = signed_in("operator")
    # when
    response = client.post(admin_url(f"keys/{key.pk}/restore/"))
    # then: the restored key goes straight to the waiting order
    assert response.status_code == 302
    assert served(order)
    assert list(OrderKey.objects.filter(order=order).values_list("key_id", flat=True)) == [key.pk]


def test_kami_demo_serves_a_waiting_order_of_a_demo_product(make_product, settings, monkeypatch):
    # given: a demo product already exists with an order waiting for keys
    settings.KAMI_SANDBOX = False  # through the fixture, so what `kami demo` sets is undone after
    monkeypatch.setenv("KAMI_SANDBOX", "")
    product = make_product("steam-50", max_qty=5)
    order = awaiting_order(product, quantity=2)
    # when
    call_command("demo", "--no-serve", stdout=StringIO(), stderr=StringIO())
    # then
    assert served(order)
