"""`kami product`, `kami keys`, `kami stock`: what the merchant types and what they read back."""
from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from kami.audit.models import AuditLog
from kami.catalog.models import Product
from kami.orders.models import Order, OrderKey
from kami.stock.models import Key
from kami.stock.vault import key_fingerprint
from tests.stock.helpers import awaiting_order, import_lines, stored_keys

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


def kami(*args, **options) -> tuple[str, str]:
    """Run a command in-process; return (stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def kami_fails(*args, **options) -> CommandError:
    with pytest.raises(CommandError) as caught:
        kami(*args, **options)
    return caught.value


def keys_file(tmp_path: Path, data: bytes | str, name: str = "keys.txt") -> str:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return str(path)


# --- kami product --------------------------------------------------------------------------

def test_product_add_creates_the_product():
    # when
    out, _ = kami("product", "add", "steam-50", "--name", "Steam ¥50", "--price", "29.9", "--kind", "reusable",
                  "--max-qty", "5", "--low-stock", "10", "--description", "Steam wallet code")
    # then
    product = Product.objects.get(slug="steam-50")
    assert (product.name, product.price, product.currency, product.kind) == ("Steam ¥50", Decimal("29.90"), "CNY", "reusable")
    assert (product.min_qty, product.max_qty, product.low_stock, product.description) == (1, 5, 10, "Steam wallet code")
    assert out.startswith("added steam-50: Steam ¥50 · 29.90 CNY · reusable\n")
    assert "kami keys import steam-50 FILE" in out


@pytest.mark.parametrize("price", ["abc", "1e3", "29,90", "NaN"])
def test_product_add_refuses_a_bad_price_with_exit_2(price):
    error = kami_fails("product", "add", "x", "--name", "X", "--price", price)
    assert error.returncode == 2
    assert "--price" in str(error) and "decimal number like 29.90" in str(error)
    assert not Product.objects.exists()


def test_product_add_refuses_a_taken_slug_and_a_bad_currency(make_product):
    make_product("taken")
    assert kami_fails("product", "add", "taken", "--name", "X", "--price", "1").returncode == 2
    error = kami_fails("product", "add", "new", "--name", "X", "--price", "1", "--currency", "¥")
    assert error.returncode == 2 and "currency" in str(error)


def test_product_list_shows_price_kind_and_available_stock(make_product):
    # given
    product = make_product("netflix-1m", name="Netflix 1 month", price=Decimal("45.00"))
    import_lines(product, [f"K{i}" for i in range(1234)])
    make_product("empty", name="Nothing yet")
    # when
    out, _ = kami("product", "list")
    # then
    lines = [line for line in out.splitlines() if "netflix-1m" in line or "empty" in line]
    assert len(lines) == 2
    assert all(word in lines[0] for word in ("netflix-1m", "Netflix 1 month", "45.00", "CNY", "unique", "yes", "1,234"))
    assert "Nothing yet" in lines[1] and lines[1].rstrip("│ ").endswith("0")


def test_product_list_with_no_products_says_how_to_add_one():
    out, _ = kami("product", "list")
    assert "kami product add" in out


# --- kami keys import ----------------------------------------------------------------------

def test_keys_import_prints_the_summary_and_problem_lines(make_product, tmp_path):
    # given: a stored key, then a file with a duplicate of it, an in-file duplicate, bad lines, blanks
    product = make_product("steam-50")
    import_lines(product, ["OLD"])
    data = b"NEW-1\r\nOLD\r\n\r\nNEW-1\r\n" + b"L" * 1025 + b"\r\nNEW-2\r\n\xc3\x28\r\n   \r\n"
    # when
    out, _ = kami("keys", "import", "steam-50", keys_file(tmp_path, data))
    # then
    assert out.splitlines() == [
        "imported 2 · duplicates 2 (in file 1, already stored 1) · invalid 2 (line 5: line longer than 1024 characters; "
        "line 7: not valid UTF-8 (save the file as UTF-8)) · blank 2",
        "  duplicate in file: lines 4",
        "  already stored: lines 2",
        "awaiting-stock orders fulfilled: 0",
    ]
    assert stored_keys(product) == ["OLD", "NEW-1", "NEW-2"]
    assert AuditLog.objects.filter(action="keys.import", actor="cli").count() == 2


def test_keys_import_reads_stdin(make_product):
    product = make_product("p")
    out, _ = kami("keys", "import", "p", "-", stdin=io.BytesIO("中文-1\n🎉-2\n".encode()))
    assert out.startswith("imported 2 · ")
    assert stored_keys(product) == ["中文-1", "🎉-2"]
    assert Key.objects.get(pk=Key.objects.first().pk).batch.source == "stdin"


def test_keys_import_of_a_missing_file_exits_2(make_product, tmp_path):
    make_product("p")
    missing = str(tmp_path / "nope.txt")
    error = kami_fails("keys", "import", "p", missing)
    assert error.returncode == 2
    assert str(error).startswith(f"no such file: {missing}")


def test_keys_import_of_a_directory_or_unknown_product_exits_2(make_product, tmp_path):
    make_product("p")
    assert "is a directory" in str(kami_fails("keys", "import", "p", str(tmp_path)))
    error = kami_fails("keys", "import", "nope", keys_file(tmp_path, "K\n"))
    assert error.returncode == 2 and "no product 'nope'" in str(error)


def test_import_fulfils_awaiting_orders_in_payment_order(make_product, tmp_path):
    # given: three paid orders waiting for keys, created in an order different from payment order
    product = make_product("p")
    late = awaiting_order(product, quantity=2, paid_minutes_ago=1, order_no="LATE")
    first = awaiting_order(product, quantity=2, paid_minutes_ago=30, order_no="FIRST")
    second = awaiting_order(product, quantity=2, paid_minutes_ago=20, order_no="SECOND")
    # when: five keys arrive: enough for two orders
    out, _ = kami("keys", "import", "p", keys_file(tmp_path, "K1\nK2\nK3\nK4\nK5\n"))
    # then: first paid, first served; the last one keeps waiting
    assert out.splitlines()[-1] == "awaiting-stock orders fulfilled: 2 · still waiting: 1 (import more keys)"
    statuses = dict(Order.objects.values_list("order_no", "status"))
    assert statuses == {"FIRST": "fulfilled", "SECOND": "fulfilled", "LATE": "awaiting_stock"}
    keys = Key.objects.order_by("id").values_list("id", flat=True)
    assert list(OrderKey.objects.filter(order=first).values_list("key_id", flat=True)) == list(keys[:2])
    assert list(OrderKey.objects.filter(order=second).values_list("key_id", flat=True)) == list(keys[2:4])
    assert not OrderKey.objects.filter(order=late).exists()


# --- kami keys generate --------------------------------------------------------------------

def test_keys_generate_prints_what_it_made_and_backfills(make_product):
    product = make_product("p")
    awaiting_order(product, quantity=3)
    out, _ = kami("keys", "generate", "p", "--count", "50")
    assert out.splitlines() == [
        "generated 50 keys · pattern XXXX-XXXX-XXXX-XXXX (80 bits) · collisions redrawn 0",
        "awaiting-stock orders fulfilled: 1",
    ]
    assert Key.objects.filter(product=product, status="available").count() == 47


def test_keys_generate_refuses_a_weak_pattern_with_exit_2(make_product):
    make_product("p")
    error = kami_fails("keys", "generate", "p", "--count", "5", "--pattern", "PIN-XXXX")
    assert error.returncode == 2
    assert "20 bits of randomness; use at least 8 X" in str(error)
    assert not Key.objects.exists()


# --- kami keys export / void ---------------------------------------------------------------

def test_keys_export_txt_to_stdout_is_audited(make_product):
    product = make_product("p")
    import_lines(product, ["中文-卡密-1", "🎉-2", "PLAIN-3"])
    out, err = kami("keys", "export", "p")
    assert out == "中文-卡密-1\n🎉-2\nPLAIN-3\n"
    assert err == "exported 3 available keys of p as txt (recorded in the audit log)\n"
    audit = AuditLog.objects.get(action="keys.export")
    assert (audit.actor, audit.detail) == ("cli", {"status": "available", "format": "txt", "count": 3})


def test_keys_export_csv_of_sold_keys(make_product, tmp_path):
    product = make_product("p")
    order = awaiting_order(product, quantity=1, order_no="ORDER-42")
    kami("keys", "import", "p", keys_file(tmp_path, "SOLD-1\nFREE-2\n"))
    out, _ = kami("keys", "export", "p", "--status", "sold", "--format", "csv")
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["key", "status", "order_no", "sold_at"]
    assert rows[1][:3] == ["SOLD-1", "sold", order.order_no] and rows[1][3]
    assert len(rows) == 2


def test_keys_void_by_prefix_and_by_id(make_product):
    product = make_product("p")
    import_lines(product, ["BAD-1", "BAD-2"])
    prefix = key_fingerprint("BAD-1")[:8]
    out, _ = kami("keys", "void", "p", prefix, "--reason", "leaked")
    key = Key.objects.get(fingerprint__startswith=prefix)
    assert out == f"voided key #{key.pk} ({prefix}) of p\n"
    assert (key.status, key.void_reason) == ("void", "leaked")
    other = Key.objects.exclude(pk=key.pk).get()
    kami("keys", "void", "p", f"#{other.pk}")
    assert Key.objects.get(pk=other.pk).status == "void"


def test_keys_void_of_a_sold_key_exits_2_and_says_why(make_product, tmp_path):
    product = make_product("p")
    awaiting_order(product, order_no="ORDER-5")
    kami("keys", "import", "p", keys_file(tmp_path, "SOLD\n"))
    key = Key.objects.get()
    error = kami_fails("keys", "void", "p", f"#{key.pk}")
    assert error.returncode == 2
    assert "is sold (order ORDER-5) and stays sold" in str(error)
    assert kami_fails("keys", "void", "p", "#x1").returncode == 2
    assert Key.objects.get().status == "sold"


# --- kami stock ----------------------------------------------------------------------------

def test_stock_table_marks_low_stock_and_waiting_orders(make_product):
    # given
    plenty = make_product("plenty", low_stock=2)
    low = make_product("running-low", low_stock=10)
    waiting = make_product("sold-out")
    import_lines(plenty, ["A", "B", "C"])
    import_lines(low, ["D"])
    awaiting_order(waiting, quantity=2)
    # when
    out, _ = kami("stock")
    # then
    row = {slug: next(line for line in out.splitlines() if slug in line) for slug in ("plenty", "running-low", "sold-out")}
    assert "low" not in row["plenty"].replace("plenty", "")
    assert "low (< 10)" in row["running-low"]
    assert [cell.strip() for cell in row["sold-out"].strip("│ ").split("│")][:6] == ["sold-out", "unique", "0", "0", "0", "1"]
    assert "kami keys import sold-out FILE" in out


# --- a real process ------------------------------------------------------------------------

def test_python_m_kami_keys_import_in_a_real_process(make_product, tmp_path):
    # given: the test database, reached from a child process through DATABASE_URL
    product = make_product("real")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "kami.settings", "DATABASE_URL": _test_database_url()}
    path = keys_file(tmp_path, "REAL-1\nREAL-2\nREAL-1\n")
    # when
    done = subprocess.run([sys.executable, "-m", "kami", "keys", "import", "real", path],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    missing = subprocess.run([sys.executable, "-m", "kami", "keys", "import", "real", path + ".gone"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    # then
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("imported 2 · duplicates 1 (in file 1, already stored 0) · invalid 0 · blank 0\n")
    assert stored_keys(product) == ["REAL-1", "REAL-2"]
    assert missing.returncode == 2
    assert f"no such file: {path}.gone" in missing.stderr
    assert "REAL-1" not in done.stderr + missing.stderr


def _test_database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    scheme = "postgres" if connection.vendor == "postgresql" else "mysql"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"{scheme}://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
