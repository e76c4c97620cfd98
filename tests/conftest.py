"""Shared fixtures: factories over fixture files, real databases, gateways played by the tests."""
from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection

from kami.catalog.services import product_create
from tests import flush

flush.install()  # transactional tests keep content types and permissions through the flush (tests/flush.py)


def engine() -> str:
    return connection.vendor  # sqlite | postgresql | mysql


@pytest.fixture
def server_db():
    """Skip unless the run is against PostgreSQL or MariaDB (row locks and SKIP LOCKED)."""
    if connection.vendor == "sqlite":
        pytest.skip("needs PostgreSQL or MariaDB: run with KAMI_TEST_DATABASE_URL set (./dev test does)")


@pytest.fixture
def keys_truncated():
    """For a test that stores a million keys: the key table is emptied at once when it ends, before
    the flush's row-by-row DELETE (28–62 s for a million keys on the server engines)."""
    yield
    flush.keys_truncate(connection)


@pytest.fixture
def make_product(db):
    counter = iter(range(1, 10**6))

    def make(slug: str | None = None, **fields):
        fields.setdefault("name", "Test product")
        fields.setdefault("price", Decimal("29.90"))
        return product_create(slug=slug or f"p{next(counter)}", **fields)

    return make


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory):
    """One `kami demo --no-serve` data dir for the whole run (migrated, demo products and keys,
    the sandbox row enabled; ~3 s of CPU each): tests copy it, never write to it."""
    from tests.test_security_deploy import kami

    data_dir = tmp_path_factory.mktemp("demo-template") / "var"
    done = kami(data_dir, "demo", "--no-serve")
    assert done.returncode == 0, done.stderr[-3000:]
    return data_dir
