"""`kami keys export --format csv`: a cell a spreadsheet would run as a formula starts with `'`
(OWASP CSV injection); `--format txt` gives the keys back byte for byte."""
from __future__ import annotations

import csv
import io

import pytest
from django.core.management import call_command

from kami.fulfilment.backfill import restock_backfill
from tests.stock.helpers import awaiting_order, import_lines

pytestmark = pytest.mark.django_db(transaction=True)
STARTS = ["=", "+", "-", "@", "\t", "\r"]


def kami(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def _sold_key(product, key: str, order_no: str) -> None:
    import_lines(product, [key])
    awaiting_order(product, quantity=1, order_no=order_no)
    assert restock_backfill(product_id=product.pk) == 1


@pytest.mark.parametrize("first", STARTS)
def test_csv_export_escapes_each_formula_start(make_product, first):
    # given: a sold key and its order number both starting with the character (a key cannot
    # start with a tab or a CR: the import strips white space and refuses control characters)
    product = make_product("p")
    key = f"{first}cmd|' /C calc'!A0" if first not in "\t\r" else "PLAIN-KEY"
    _sold_key(product, key, order_no=f"{first}SUM(1+1)")
    # when
    text = kami("keys", "export", "p", "--status", "sold", "--format", "csv")
    # then
    [header, row] = list(csv.reader(io.StringIO(text, newline="")))
    assert header == ["key", "status", "order_no", "sold_at"]
    assert row[0] == (f"'{key}" if first not in "\t\r" else key)
    assert row[1:3] == ["sold", f"'{first}SUM(1+1)"]


def test_txt_export_keeps_formula_keys_exact(make_product):
    product = make_product("p")
    keys = ["=1+1", "+41 79 000 00 00", "-5", "@user", "'=quoted", "A=B"]
    import_lines(product, keys)
    assert kami("keys", "export", "p") == "".join(f"{k}\n" for k in keys)
    rows = list(csv.reader(io.StringIO(kami("keys", "export", "p", "--format", "csv"), newline="")))
    assert [r[0] for r in rows[1:]] == ["'=1+1", "'+41 79 000 00 00", "'-5", "'@user", "'=quoted", "A=B"]
