"""deploy/container/: no container engine can run here (no image registry to pull a base image
from: docs/operations.md, "Container"), so the image's entry point is run outside a container,
against a real PostgreSQL database of its own and a temporary data dir, as the image runs it
(`kami` and `python` on PATH, everything else from the environment). The Dockerfile, compose.yaml
and the container's Caddyfile are checked statically."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
CONTAINER = ROOT / "deploy" / "container"
ENTRYPOINT = CONTAINER / "entrypoint.sh"
HOST = "shop.example"
pytestmark = [pytest.mark.sqlite_only, pytest.mark.engine_free, pytest.mark.slow]  # its own PostgreSQL database, whatever the engine


def server_url() -> str:
    """The PostgreSQL server the tests use (KAMI_TEST_DATABASE_URL's, when it is PostgreSQL)."""
    url = os.environ.get("KAMI_TEST_DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        return url.rsplit("/", 1)[0]
    return "postgres://postgres@127.0.0.1:5432"


@pytest.fixture
def database():
    """A fresh, empty PostgreSQL database; dropped afterwards."""
    name = f"kami_entrypoint_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(f"{server_url()}/postgres", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server at {server_url()}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{server_url()}/{name}"
        finally:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def environment(database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """What the image's ENV and compose.yaml give the entry point: no test settings."""
    keep = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "LC_ALL", "TMPDIR")}
    return {**keep, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "DATABASE_URL": database_url,
            "KAMI_DATA_DIR": str(data_dir), "KAMI_ALLOWED_HOSTS": HOST, "KAMI_HOST": "127.0.0.1",
            "KAMI_WORKER_HEARTBEAT_SECONDS": "1", **extra}


class Entrypoint:
    def __init__(self, tmp_path: Path, env: dict[str, str], *args: str):
        self.log_path = tmp_path / f"entrypoint-{args[0] if args else 'none'}-{time.monotonic_ns()}.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(["sh", str(ENTRYPOINT), *args], cwd=tmp_path, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()
        return self.proc.returncode


@pytest.fixture
def entrypoint(tmp_path):
    started: list[Entrypoint] = []

    def start(env: dict[str, str], *args: str) -> Entrypoint:
        started.append(Entrypoint(tmp_path, env, *args))
        return started[-1]

    yield start
    for one in started:
        one.stop()


def run(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(ENTRYPOINT), *args], env=env, capture_output=True, text=True, timeout=timeout)


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def query(database_url: str, sql: str) -> list[tuple]:
    with psycopg.connect(database_url) as db:
        return db.execute(sql).fetchall()


def compose() -> dict:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load((CONTAINER / "compose.yaml").read_text())


def test_web_migrates_and_serves_then_the_worker_starts_and_beats(database, tmp_path, entrypoint):
    # given an empty database and an empty data dir
    port = free_port()
    env = environment(database, tmp_path / "var", KAMI_PORT=str(port))
    # when the web container's command runs
    web = entrypoint(env, "web")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert web.proc.poll() is None, web.output()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", headers={"Host": HOST}, timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        raise AssertionError(f"the web never answered /healthz: {web.output()}")
    # then it migrated the database, and `kami serve --no-worker` replaced the shell (signals reach it)
    assert query(database, "SELECT count(*) FROM django_migrations WHERE app = 'delivery'")[0][0] >= 6
    assert "serve --no-worker" in cmdline(web.proc.pid), cmdline(web.proc.pid)
    # and compose.yaml's healthcheck for the web, run as the container runs it, passes
    check = compose()["services"]["web"]["healthcheck"]["test"]
    assert check[0] == "CMD"
    done = subprocess.run(check[1:], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    # when the worker container's command runs beside it
    worker = entrypoint(env, "worker")
    deadline = time.monotonic() + 60
    while not query(database, "SELECT name FROM delivery_workerheartbeat WHERE stopped_at IS NULL"):
        assert worker.proc.poll() is None and time.monotonic() < deadline, worker.output()
        time.sleep(0.3)
    # then a `kami worker` runs (its heartbeat is in the database), as the process the shell became
    assert "kami worker" in cmdline(worker.proc.pid), cmdline(worker.proc.pid)
    # and a SIGTERM (docker stop) stops both cleanly
    assert worker.stop() == 0, worker.output()
    assert query(database, "SELECT count(*) FROM delivery_workerheartbeat WHERE stopped_at IS NULL")[0][0] == 0
    assert web.stop() in (0, -signal.SIGTERM), web.output()


def test_a_worker_waits_for_the_migrations_then_gives_up_clearly(database, tmp_path):
    # given an empty database nobody migrates
    env = environment(database, tmp_path / "var", KAMI_DATABASE_WAIT_SECONDS="3")
    # when the worker's command runs
    started = time.monotonic()
    done = run(env, "worker")
    # then it waited its timeout, said for what, and failed without starting a worker
    assert done.returncode == 1
    assert time.monotonic() - started >= 3
    assert "migration(s) not applied yet (the web container applies them)" in done.stderr
    assert "gave up after 3s (KAMI_DATABASE_WAIT_SECONDS)" in done.stderr
    assert query(database, "SELECT count(*) FROM pg_tables WHERE tablename = 'delivery_workerheartbeat'")[0][0] == 0


def test_a_database_that_is_down_is_waited_for_then_named(tmp_path):
    # given a DATABASE_URL where nothing listens
    port = free_port()
    env = environment(f"postgres://kami@127.0.0.1:{port}/kami", tmp_path / "var", KAMI_DATABASE_WAIT_SECONDS="3")
    # when the web's command runs
    started = time.monotonic()
    done = run(env, "web")
    # then it waited (saying so once), gave up after its timeout with the fix, and never migrated
    assert done.returncode == 1
    assert 3 <= time.monotonic() - started < 60
    assert done.stderr.count("entrypoint: waiting for the postgresql database kami") == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("entrypoint: gave up after 3s (KAMI_DATABASE_WAIT_SECONDS) waiting for the postgresql "
                           "database kami: "), last
    assert last.endswith("check DATABASE_URL and that the database server runs")
    assert "Operations to perform" not in done.stdout


@pytest.mark.parametrize("args", [["frobnicate"], []])
def test_an_unknown_command_is_one_line_of_usage(tmp_path, args):
    # when
    done = run(environment("postgres://kami@127.0.0.1:1/kami", tmp_path / "var"), *args, timeout=30)
    # then one line on stderr, exit status 2 (bad usage), nothing started
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (f"entrypoint.sh: unknown command '{args[0] if args else ''}': "
                           "usage: entrypoint.sh web|worker|kami [ARGS...]\n")


def test_kami_commands_pass_through(database, tmp_path):
    # when a one-off command runs through the entry point (docker compose run web kami …), one
    # word of it holding spaces and quotes (the web test above runs `kami migrate` through it)
    code = "from django.db import connection as c; print(c.vendor, repr(c.settings_dict['NAME']))"
    done = run(environment(database, tmp_path / "var"), "kami", "shell", "-c", code)
    # then it ran as given, against the database the environment names
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == f"postgresql {database.rsplit('/', 1)[1]!r}", done.stdout


def test_the_dockerfile_runs_the_entrypoint_as_a_non_root_user():
    text = (CONTAINER / "Dockerfile").read_text()
    # the last USER is not root, and the image starts the entry point, `web` by default
    user = re.findall(r"^USER\s+(\S+)", text, re.M)[-1]
    assert user.split(":")[0] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["/opt/kami/entrypoint\.sh"\]$', text, re.M)
    assert re.search(r'^CMD \["web"\]$', text, re.M)
    assert "COPY deploy/container/entrypoint.sh /opt/kami/entrypoint.sh" in text
    # dependencies hash-checked from the lock, Kami itself without unlocked extras
    assert "pip install --require-hashes -r requirements.lock" in text
    assert "pip install --no-deps ." in text
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\}$", text, re.M) and "python:3.11-slim" in text
    assert os.access(ENTRYPOINT, os.X_OK)


def test_compose_names_the_services_volumes_and_healthchecks():
    spec = compose()
    services = spec["services"]
    assert set(services) == {"db", "web", "worker", "caddy"}
    assert set(spec["volumes"]) >= {"kami-db", "kami-data"}
    assert "kami-db:/var/lib/postgresql/data" in services["db"]["volumes"]
    for name, command in (("web", ["web"]), ("worker", ["worker"])):
        service = services[name]
        assert service["command"] == command
        assert "kami-data:/var/lib/kami" in service["volumes"]
        assert service["build"]["dockerfile"] == "deploy/container/Dockerfile"
        assert service["environment"]["DATABASE_URL"].endswith("@db:5432/kami")
        assert service["environment"]["KAMI_ENV"] == "production"
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])
    assert services["web"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["web"]["condition"] == "service_healthy"
    assert "./Caddyfile:/etc/caddy/Caddyfile:ro" in services["caddy"]["volumes"]


def test_the_container_caddyfile_is_deploy_s_with_the_host_and_upstream_from_compose():
    # deploy/Caddyfile is the one tests/ops/test_caddy.py runs; the container's differs in two lines only
    def body(path: Path) -> list[str]:
        lines = path.read_text().splitlines()
        return lines[next(i for i, line in enumerate(lines) if line == "{"):]

    expected = [line.replace("shop.example.com {", "{$KAMI_SHOP_HOST} {")
                .replace("reverse_proxy 127.0.0.1:8000 {", "reverse_proxy web:8000 {")
                for line in body(ROOT / "deploy" / "Caddyfile")]
    assert body(CONTAINER / "Caddyfile") == expected
    caddy = shutil.which("caddy")
    if caddy is None:
        return  # the text check above still ran
    done = subprocess.run([caddy, "adapt", "--config", str(CONTAINER / "Caddyfile")], capture_output=True, text=True,
                          env={**os.environ, "KAMI_SHOP_HOST": HOST}, timeout=30)
    assert done.returncode == 0, done.stderr
    assert f'"{HOST}"' in done.stdout and '"web:8000"' in done.stdout
