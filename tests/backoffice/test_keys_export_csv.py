"""The back office's key download: CSV cells that would start a spreadsheet formula get a
leading `'` (OWASP CSV injection); the txt download is byte-exact."""
from __future__ import annotations

import csv
import io

import pytest

from kami.fulfilment.backfill import restock_backfill
from tests.backoffice.staffing import admin_url
from tests.backoffice.staffing import signed_in as signed_in_as
from tests.stock.helpers import awaiting_order, import_lines

pytestmark = pytest.mark.django_db(transaction=True)


def _download(product, *, status: str, fmt: str) -> str:
    client = signed_in_as("owner", "olga")
    response = client.post(admin_url("keys/export/"), {"product": product.pk, "status": status, "fmt": fmt})
    assert response.status_code == 200 and response.streaming
    return b"".join(response.streaming_content).decode("utf-8")


@pytest.mark.parametrize("first", ["=", "+", "-", "@", "\t", "\r"])
def test_csv_download_escapes_each_formula_start(make_product, first):
    # given: a sold key and its order number starting with the character (keys never start
    # with a tab or a CR: the import strips white space and refuses control characters)
    product = make_product("gift")
    key = f"{first}HYPERLINK(\"http://evil\")" if first not in "\t\r" else "GIFT-0001"
    import_lines(product, [key])
    awaiting_order(product, quantity=1, order_no=f"{first}ORDER-1")
    assert restock_backfill(product_id=product.pk) == 1
    # when
    body = _download(product, status="sold", fmt="csv")
    # then
    [_, row] = list(csv.reader(io.StringIO(body, newline="")))
    assert row[0] == (f"'{key}" if first not in "\t\r" else key)
    assert row[2] == f"'{first}ORDER-1"


def test_txt_download_is_byte_exact(make_product):
    product = make_product("gift")
    keys = ["=1+1", "+A", "-B", "@C", "中文,\"引号\"", "plain"]
    import_lines(product, keys)
    assert _download(product, status="available", fmt="txt") == "".join(f"{k}\n" for k in keys)


@pytest.mark.parametrize("language,says", [("en", "never runs it as a formula"), ("zh-hans", "绝不会当作公式执行")])
def test_the_export_page_says_what_the_csv_does_to_formula_cells(make_product, language, says):
    client = signed_in_as("owner", "olga")
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = language
    assert says in client.get(admin_url("keys/export/")).content.decode()
