"""Data-migration tests: one app taken back to an older migration while every other app stays at
its latest (the historical models then match the tables), and put back afterwards."""
from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def migrate_app(app: str, targets):
    """Migrate `app` to `targets` ([(app, name)]); returns the historical apps at that state."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    others = [node for node in executor.loader.graph.leaf_nodes() if node[0] != app]
    executor.migrate(targets)
    return executor.loader.project_state([*others, *targets]).apps


@pytest.fixture
def back_to_latest():
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
