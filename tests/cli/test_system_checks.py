"""Django's system checks (models, admin, URL confs, templates, caches) pass. Kami's own commands
skip them to start faster (kami/cli/base.py), so this is where a broken urls.py or model shows."""
from __future__ import annotations

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.sqlite_only  # the code and settings.py, not the database


def test_the_system_checks_find_nothing(capsys):
    # when
    call_command("check", "--fail-level", "WARNING")
    # then
    assert "System check identified no issues" in capsys.readouterr().out
