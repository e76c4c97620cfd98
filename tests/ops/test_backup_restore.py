"""`kami backup` / `kami restore`, and the restore drill on each engine (run it with
KAMI_TEST_DATABASE_URL for PostgreSQL and MariaDB): import keys, sell some, back up, wipe,
restore, then the sold keys still open on their order pages, the unsold still sell, and nothing
was sold twice. The commands run as real processes against the test database."""
from __future__ import annotations

import os
import re

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder

from kami.catalog.models import Product
from kami.core.errors import BadInput, SoldOut
from kami.orders.models import Order, OrderKey
from kami.ops.backup import backup_restore, backup_write
from kami.orders.services import order_create
from kami.stock.models import Key
from tests.factories import add_keys
from tests.faults.processes import database_url, kami_run
from tests.sandbox_play import enable_sandbox, sandbox_notify

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
PASSPHRASE = "correct horse battery staple"


def buy(client, product, quantity: int, email: str) -> tuple[Order, str]:
    order, token = order_create(product=product, quantity=quantity, email=email, gateway="sandbox")
    assert sandbox_notify(client, order_no=order.order_no, amount=str(order.amount)).status_code == 200
    order.refresh_from_db()
    return order, token


def keys_on_page(client, order: Order, token: str) -> list[str]:
    page = client.get(f"/orders/{order.order_no}", {"token": token})
    assert page.status_code == 200
    return re.findall(r'<code class="key">(DRILL-[0-9]+)</code>', page.content.decode())


def wipe() -> None:
    """Drop every table: the database as a new server (or a new, empty database) has it."""
    tables = connection.introspection.table_names()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        elif connection.vendor == "mysql":
            cursor.execute("SET FOREIGN_KEY_CHECKS = 0")
            for table in tables:
                cursor.execute(f"DROP TABLE `{table}`")
            cursor.execute("SET FOREIGN_KEY_CHECKS = 1")
        else:
            cursor.execute("PRAGMA foreign_keys = OFF")
            for table in tables:
                cursor.execute(f'DROP TABLE "{table}"')
    assert connection.introspection.table_names() == []


def test_the_restore_drill(client, make_product, tmp_path):
    # given six keys, three of them sold to two orders
    enable_sandbox()
    product = make_product("drill")
    add_keys(product, [f"DRILL-{n}" for n in range(6)])
    sold = [buy(client, product, 1, "a@example.com"), buy(client, product, 2, "b@example.com")]
    before = {order.order_no: keys_on_page(client, order, token) for order, token in sold}
    passphrase = tmp_path / "passphrase"
    passphrase.write_text(PASSPHRASE + "\n")
    backup = tmp_path / "shop.kamibak"
    env = {"DATABASE_URL": database_url()}
    # when the shop is backed up, its database wiped, and restored into a new data dir
    backed = kami_run(["backup", str(backup), "--passphrase-file", str(passphrase)],
                      env={**env, "KAMI_DATA_DIR": str(tmp_path / "old")}, timeout=120)
    assert backed.returncode == 0, backed.stderr[-3000:]
    wipe()
    new_dir = tmp_path / "new"
    restored = kami_run(["restore", str(backup), "--passphrase-file", str(passphrase)],
                        env={**env, "KAMI_DATA_DIR": str(new_dir), "KAMI_DATA_KEY": ""}, timeout=120)
    assert restored.returncode == 0, restored.stderr[-3000:]
    connection.close()
    # then the data key came back with the database, and the sold keys open on their order pages
    assert (new_dir / "data_key").read_text().strip() == os.environ["KAMI_DATA_KEY"]
    assert {order.order_no: keys_on_page(client, order, token) for order, token in sold} == before
    assert sorted(map(len, before.values())) == [1, 2]
    # and the restore said the database is at this Kami's migrations (nothing to migrate)
    assert "Next: kami doctor" in restored.stdout, restored.stdout
    # and the unsold keys still sell, each once, and then the product is sold out
    third, token = buy(client, product, 3, "c@example.com")
    new_keys = keys_on_page(client, third, token)
    assert third.status == "fulfilled"
    assert len(set(new_keys)) == 3 and not set(new_keys) & {k for keys in before.values() for k in keys}
    with pytest.raises(SoldOut):
        order_create(product=product, quantity=1, email="d@example.com", gateway="sandbox")
    assert Key.objects.filter(product=product, status="sold").count() == 6
    links = list(OrderKey.objects.filter(key__product=product).values_list("key_id", flat=True))
    assert len(links) == len(set(links)) == 6


def test_a_restore_into_a_database_with_tables_is_refused(make_product, tmp_path):
    # given a backup of this database, which still has its tables (written in this process: the
    # drill above runs `kami backup` itself)
    make_product("kept")
    passphrase = tmp_path / "passphrase"
    passphrase.write_text(PASSPHRASE)
    env = {"DATABASE_URL": database_url(), "KAMI_DATA_DIR": str(tmp_path / "var")}
    backup_write(path=tmp_path / "b.kamibak", passphrase=PASSPHRASE)
    # when
    refused = kami_run(["restore", str(tmp_path / "b.kamibak"), "--passphrase-file", str(passphrase)], env=env, timeout=120)
    # then
    assert refused.returncode == 2
    assert "restore only into an empty database" in refused.stderr
    assert Product.objects.filter(slug="kept").exists()


def test_a_backup_without_the_data_key_of_stored_keys_is_refused(make_product, tmp_path, monkeypatch):
    # given stored keys, and a process that finds no data key (another data dir, no KAMI_DATA_KEY)
    add_keys(make_product(), ["ORPHAN-1"])
    monkeypatch.delenv("KAMI_DATA_KEY")
    monkeypatch.setenv("KAMI_DATA_DIR", str(tmp_path / "elsewhere"))
    # when / then: refused, and no new (useless) data key was made, no backup written
    with pytest.raises(BadInput, match="no data key .* keys are stored"):
        backup_write(path=tmp_path / "b.kamibak", passphrase=PASSPHRASE)
    assert not (tmp_path / "elsewhere" / "data_key").exists() and not (tmp_path / "b.kamibak").exists()


def test_a_backup_made_by_a_newer_kami_is_refused_before_anything_is_loaded(make_product, tmp_path):
    # given a backup whose database had a migration this Kami does not have
    make_product("kept")
    MigrationRecorder.Migration.objects.create(app="orders", name="0099_from_a_newer_kami")
    backup_write(path=tmp_path / "b.kamibak", passphrase=PASSPHRASE)
    wipe()
    try:
        # when / then: refused by name, and the empty database stays empty
        with pytest.raises(BadInput, match=r"made by a newer Kami \(migrations orders\.0099_from_a_newer_kami are unknown"):
            backup_restore(path=tmp_path / "b.kamibak", passphrase=PASSPHRASE)
        assert connection.introspection.table_names() == []
    finally:
        call_command("migrate", verbosity=0)


def test_a_backup_made_by_an_older_kami_restores_and_says_to_migrate(make_product, tmp_path):
    # given a backup taken before the orders app's latest migration was recorded
    make_product("kept")
    latest = MigrationRecorder.Migration.objects.filter(app="orders").latest("id")
    latest.delete()
    passphrase = tmp_path / "passphrase"
    passphrase.write_text(PASSPHRASE)
    env = {"DATABASE_URL": database_url(), "KAMI_DATA_DIR": str(tmp_path / "var")}
    backup_write(path=tmp_path / "b.kamibak", passphrase=PASSPHRASE)
    MigrationRecorder.Migration.objects.create(app="orders", name=latest.name)
    wipe()
    # when
    restored = kami_run(["restore", str(tmp_path / "b.kamibak"), "--passphrase-file", str(passphrase)], env=env,
                        timeout=120)
    # then: restored, and told which apps `kami migrate` brings up to this Kami
    assert restored.returncode == 0, restored.stderr[-3000:]
    assert "Next: kami migrate (this Kami is newer than the backup for orders), then kami doctor" in restored.stdout
    connection.close()
    assert Product.objects.filter(slug="kept").exists()
    MigrationRecorder.Migration.objects.get_or_create(app="orders", name=latest.name)
