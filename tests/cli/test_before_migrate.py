"""A command run before `kami migrate` says in one line that the database is not set up and
which command sets it up (exit 2), instead of a traceback ending in `no such table`."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder

from kami.cli.main import database_advice

COMMANDS = [
    ["gateway", "set", "epay", "--enable", "pid=1001", "key=abc", "url=https://pay.example/"],
    ["stock"],
    ["product", "list"],
    ["shop", "show"],
    ["worker", "--once"],
]


def fresh_env(data_dir) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}  # the test run's database
    env.update(DJANGO_SETTINGS_MODULE="kami.settings", KAMI_DATA_DIR=str(data_dir))
    return env


@pytest.mark.sqlite_only
def test_commands_before_migrate_say_how_to_set_the_database_up(tmp_path):
    # given fresh, empty data dirs (SQLite), one per command
    envs = [fresh_env(tmp_path / str(i)) for i in range(len(COMMANDS))]
    # when each command runs in its own (side by side, to keep the test short)
    runs = [subprocess.Popen([sys.executable, "-m", "kami", *args], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for args, env in zip(COMMANDS, envs)]
    # then each prints one line naming `kami migrate` and exits 2
    for args, run in zip(COMMANDS, runs):
        out, err = run.communicate(timeout=120)
        assert run.returncode == 2, (args, err[-2000:])
        assert err.splitlines() == ["CommandError: the database is not set up yet: run `kami migrate` first "
                                    "(it creates the tables)"], (args, err[-2000:])
        assert out == ""


@pytest.mark.django_db
def test_a_set_up_database_gets_no_such_advice():
    # the advice is only given when migrations are missing: other database errors keep their own message
    assert database_advice() is None


@pytest.mark.django_db
def test_a_database_behind_the_code_is_told_to_migrate():
    # given a database that lacks the newest migration (an upgrade without `kami migrate`)
    recorder = MigrationRecorder(connection)
    app, name = max(recorder.applied_migrations())
    recorder.record_unapplied(app, name)
    # then
    assert database_advice() == "the database is not up to date (1 migration(s) not applied): run `kami migrate`"
