"""keys_export and key_void: every reveal is audited; sold keys stay sold."""
from __future__ import annotations

import csv
import io

import pytest

from kami.audit.models import AuditLog
from kami.core.errors import BadInput, Conflict, NotFound
from kami.fulfilment.backfill import restock_backfill
from kami.stock.models import Key
from kami.stock.services import key_void, keys_export
from kami.stock.vault import key_fingerprint
from tests.stock.helpers import awaiting_order, import_lines

pytestmark = pytest.mark.django_db(transaction=True)


def _sell(product, quantity: int, order_no: str):
    order = awaiting_order(product, quantity=quantity, order_no=order_no)
    assert restock_backfill(product_id=product.pk) == 1
    return order


def test_export_txt_writes_available_keys_and_audits(make_product):
    # given: four keys, one sold and one void
    product = make_product()
    import_lines(product, ["K-1", "K-2", "中文-K3", "🎉-K4"])
    _sell(product, 1, "ORDER-1")
    key_void(product=product, fingerprint_prefix=key_fingerprint("K-2")[:8], reason="leaked", actor="alice")
    out = io.StringIO()
    # when
    written = keys_export(product=product, status="available", fmt="txt", out=out, actor="alice", ip="10.0.0.9",
                          chunk_size=1)
    # then
    assert written == 2
    assert out.getvalue() == "中文-K3\n🎉-K4\n"
    audit = AuditLog.objects.get(action="keys.export")
    assert (audit.actor, audit.ip, audit.object_id) == ("alice", "10.0.0.9", product.slug)
    assert audit.detail == {"status": "available", "format": "txt", "count": 2}


def test_export_csv_has_status_order_and_sale_time(make_product):
    # given
    product = make_product()
    import_lines(product, ["K-1", "K,2 \"quoted\"", "K-3"])
    order = _sell(product, 2, "ORDER-7")
    out = io.StringIO()
    # when
    written = keys_export(product=product, status="all", fmt="csv", out=out, actor="cli")
    # then
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    sold_at = Key.objects.filter(status="sold").first().sold_at.isoformat()
    assert written == 3
    assert rows == [
        ["key", "status", "order_no", "sold_at"],
        ["K-1", "sold", order.order_no, sold_at],
        ["K,2 \"quoted\"", "sold", order.order_no, sold_at],
        ["K-3", "available", "", ""],
    ]
    assert AuditLog.objects.get(action="keys.export").detail == {"status": "all", "format": "csv", "count": 3}


def test_export_csv_of_a_reusable_key_lists_each_order(make_product):
    product = make_product(kind="reusable")
    import_lines(product, ["SHARED"])
    _sell(product, 1, "ORDER-A")
    _sell(product, 1, "ORDER-B")
    out = io.StringIO()
    assert keys_export(product=product, status="all", fmt="csv", out=out, actor="cli") == 1
    assert [r[:3] for r in csv.reader(io.StringIO(out.getvalue()))][1:] == [
        ["SHARED", "available", "ORDER-A"], ["SHARED", "available", "ORDER-B"]]


def test_export_of_nothing_is_still_audited(make_product):
    product = make_product()
    out = io.StringIO()
    assert keys_export(product=product, status="sold", out=out, actor="cli") == 0
    assert out.getvalue() == ""
    assert AuditLog.objects.filter(action="keys.export").count() == 1


@pytest.mark.parametrize("options", [{"status": "gone"}, {"fmt": "xlsx"}])
def test_export_refuses_unknown_status_or_format(make_product, options):
    with pytest.raises(BadInput):
        keys_export(product=make_product(), out=io.StringIO(), actor="cli", **options)
    assert not AuditLog.objects.filter(action="keys.export").exists()


def test_void_by_fingerprint_prefix_takes_the_key_off_sale(make_product):
    # given
    product = make_product()
    import_lines(product, ["LEAKED-KEY", "GOOD-KEY"])
    prefix = key_fingerprint("LEAKED-KEY")[:8]
    # when
    key = key_void(product=product, fingerprint_prefix=prefix.upper(), reason="posted on a forum", actor="alice")
    # then
    assert (key.status, key.void_reason) == ("void", "posted on a forum")
    assert Key.objects.filter(product=product, status="available").count() == 1
    audit = AuditLog.objects.get(action="keys.void")
    assert (audit.object_id, audit.detail["fingerprint"], audit.detail["reason"]) == (str(key.pk), prefix, "posted on a forum")


def test_void_by_id(make_product):
    product = make_product()
    import_lines(product, ["K-1"])
    key = Key.objects.get()
    assert key_void(product=product, key_pk=key.pk, actor="cli").status == "void"


def test_a_sold_key_stays_sold(make_product):
    # given
    product = make_product()
    import_lines(product, ["SOLD-KEY"])
    _sell(product, 1, "ORDER-9")
    key = Key.objects.get()
    # when / then
    with pytest.raises(Conflict, match=r"is sold \(order ORDER-9\) and stays sold; refund or replace"):
        key_void(product=product, key_pk=key.pk, actor="cli")
    assert Key.objects.get().status == "sold"
    assert not AuditLog.objects.filter(action="keys.void").exists()


def test_a_void_key_cannot_be_voided_again(make_product):
    product = make_product()
    import_lines(product, ["K-1"])
    key = Key.objects.get()
    key_void(product=product, key_pk=key.pk, actor="cli")
    with pytest.raises(Conflict, match="already void"):
        key_void(product=product, key_pk=key.pk, actor="cli")


def test_void_refuses_short_ambiguous_and_foreign_references(make_product):
    # given: a key of another product
    product, other = make_product(), make_product()
    import_lines(other, ["OTHER-KEY"])
    foreign = Key.objects.get(product=other)
    # then
    with pytest.raises(BadInput, match="at least 6 hex"):
        key_void(product=product, fingerprint_prefix="abc", actor="cli")
    with pytest.raises(BadInput, match="at least 6 hex"):
        key_void(product=product, fingerprint_prefix="zzzzzzzz", actor="cli")
    with pytest.raises(NotFound):
        key_void(product=product, key_pk=foreign.pk, actor="cli")
    with pytest.raises(NotFound):
        key_void(product=product, fingerprint_prefix=foreign.fingerprint[:12], actor="cli")


def test_void_refuses_a_prefix_matching_two_keys(make_product):
    # given: two keys whose fingerprints share 6 characters (found by search; HMAC is fixed by the test key)
    product = make_product()
    seen: dict[str, str] = {}
    i = 0
    while True:
        text = f"K-{i}"
        head = key_fingerprint(text)[:6]
        if head in seen:
            break
        seen[head] = text
        i += 1
    import_lines(product, [seen[head], text])
    # when / then
    with pytest.raises(BadInput, match="matches several keys"):
        key_void(product=product, fingerprint_prefix=head, actor="cli")
