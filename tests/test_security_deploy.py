"""Issue 16, the deployment findings, through real `kami` processes on a fresh SQLite data dir:
the sandbox is opt-in per process and answers this machine only; the data dir is the owner's
alone and its mail files hold no key; production needs EMAIL_URL; forwarding headers count only
from KAMI_TRUSTED_PROXIES (per-IP limits, HSTS); SQLite commits with synchronous=FULL."""
from __future__ import annotations

import html
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.db import connections

from tests.ports import free_port
from tests.test_newcomer import csrf

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.sqlite_only, pytest.mark.slow]
KEY_PATTERN = r"[2-9A-HJ-NP-Z]{4}(?:-[2-9A-HJ-NP-Z]{4}){3}"
TOO_MANY = "too many unpaid orders: pay or wait for them to expire"


def kami_env(data_dir: Path, **extra: str) -> dict:
    """A merchant's shell: no test settings, no KAMI_* but what the test gives."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    return {**{k: v for k, v in os.environ.items() if k in keep},
            "DJANGO_SETTINGS_MODULE": "kami.settings", "KAMI_DATA_DIR": str(data_dir), **extra}


def kami(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    # umask 022, a shell's usual one: whatever stays private, Kami made private itself.
    return subprocess.run([sys.executable, "-m", "kami", *args], cwd=ROOT, env=kami_env(data_dir, **env),
                          capture_output=True, text=True, timeout=300, umask=0o022)


@pytest.fixture
def template(demo_template) -> Path:
    """`kami demo --no-serve`, once for the run (tests/conftest.py): migrated, demo products and
    keys, the sandbox row enabled."""
    return demo_template


@pytest.fixture
def data_dir(template, tmp_path) -> Path:
    target = tmp_path / "var"
    shutil.copytree(template, target)  # modes copied too: what `kami demo` made
    return target


class Server:
    def __init__(self, data_dir: Path, *args: str, **env: str):
        self.port = free_port()
        self.log_path = data_dir.parent / f"serve-{self.port}.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "kami", "serve", "--port", str(self.port), *args], cwd=ROOT,
                                     env=kami_env(data_dir, **env), stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True, umask=0o022)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            assert self.proc.poll() is None, self.output()
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        raise AssertionError(f"kami serve did not answer: {self.output()}")

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


@pytest.fixture
def serve():
    started: list[Server] = []

    def start(data_dir: Path, *args: str, **env: str) -> Server:
        started.append(Server(data_dir, *args, **env))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def order_create(server: Server, *, email: str, forwarded_for: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return httpx.post(f"{server.base}/api/v1/orders", json={"product": "steam-50", "quantity": 1, "email": email,
                                                            "gateway": "sandbox"}, headers=headers, timeout=20)


def buyer_ips(data_dir: Path) -> dict[str, str]:
    with sqlite3.connect(data_dir / "kami.sqlite3") as db:
        return dict(db.execute("SELECT email, buyer_ip FROM orders_order"))


def order_status(data_dir: Path, order_no: str) -> str:
    with sqlite3.connect(data_dir / "kami.sqlite3") as db:
        return db.execute("SELECT status FROM orders_order WHERE order_no = ?", (order_no,)).fetchone()[0]


# ---- 1. the sandbox: opt-in per process, this machine only ------------------------------------


def test_a_plain_kami_serve_does_not_offer_the_sandbox_its_data_dir_has_enabled(data_dir, serve):
    # given a data dir where `kami demo` enabled the sandbox, served without KAMI_SANDBOX
    server = serve(data_dir, "--no-worker")
    # when
    home = httpx.get(f"{server.base}/", timeout=20)
    order = order_create(server, email="b@example.com")
    free_payment = httpx.get(f"{server.base}/pay/sandbox/checkout/K1?amount=48.00&currency=CNY", timeout=20)
    # then
    assert home.status_code == 200 and 'value="sandbox"' not in home.text
    assert order.status_code == 400
    assert free_payment.status_code == 404
    assert "THE SANDBOX GATEWAY IS ON" not in server.output()


def test_the_sandbox_answers_this_machine_only(data_dir, serve):
    # given a sandbox server behind a declared proxy on this machine, and a sandbox order
    server = serve(data_dir, "--no-worker", KAMI_SANDBOX="1", KAMI_TRUSTED_PROXIES="127.0.0.1")
    order = order_create(server, email="local@example.com").json()
    with httpx.Client(base_url=server.base, timeout=20) as local:
        page = local.get(order["payment"]["url"])
        form = {k: html.unescape(v) for k, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text)}
        # when a visitor the proxy forwards from the internet opens the page, or posts its form
        remote_page = local.get(order["payment"]["url"], headers={"X-Forwarded-For": "203.0.113.7"})
        remote_pay = local.post(order["payment"]["url"], data=form, headers={"X-Forwarded-For": "203.0.113.7"})
        status_after_remote = order_status(data_dir, order["order_no"])
        # and when someone at this machine does
        local_pay = local.post(order["payment"]["url"], data=form)
    # then the server said so loudly, the remote visitor got nothing, and the local one paid
    assert "THE SANDBOX GATEWAY IS ON" in server.output()
    assert page.status_code == 200
    assert (remote_page.status_code, remote_pay.status_code, status_after_remote) == (404, 404, "pending")
    assert local_pay.status_code == 302
    assert order_status(data_dir, order["order_no"]) == "fulfilled"


def test_a_proxy_kami_was_not_told_about_does_not_make_its_visitors_local(data_dir, serve):
    # given a sandbox server with no trusted proxy, behind an undeclared one on this machine
    server = serve(data_dir, "--no-worker", KAMI_SANDBOX="1")
    url = f"{server.base}/pay/sandbox/checkout/K1?amount=48.00&currency=CNY"
    # when
    relayed = httpx.get(url, headers={"X-Forwarded-For": "127.0.0.1"}, timeout=20)
    direct = httpx.get(url, timeout=20)
    # then: a request relayed by a peer Kami does not trust is not a local one, whatever it says
    assert (relayed.status_code, direct.status_code) == (404, 200)


def test_production_refuses_the_sandbox(data_dir):
    # when
    done = kami(data_dir, "serve", "--no-worker", KAMI_ENV="production", KAMI_SANDBOX="1",
                EMAIL_URL="smtp://127.0.0.1:9")
    # then
    assert done.returncode != 0
    assert "KAMI_SANDBOX=1 with KAMI_ENV=production" in done.stderr


# ---- 2. no plaintext keys on disk -------------------------------------------------------------


def test_a_fresh_shop_keeps_its_data_dir_private_and_its_mail_files_keyless(data_dir, serve):
    # given the demo shop just set up (under umask 022), served with its worker, without EMAIL_URL
    server = serve(data_dir, KAMI_SANDBOX="1")
    # when a buyer buys and pays in the sandbox
    with httpx.Client(base_url=server.base, follow_redirects=True, timeout=20) as browser:
        home = browser.get("/")
        pay_page = browser.post("/buy/steam-50", data={"csrfmiddlewaretoken": csrf(home.text), "email": "buyer@example.com",
                                                       "quantity": "1", "gateway": "sandbox"})
        form = {k: html.unescape(v) for k, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', pay_page.text)}
        order_page = browser.post(str(pay_page.url), data=form)
    key = re.search(rf'<code class="key">({KEY_PATTERN})</code>', order_page.text).group(1)
    order_no = re.search(r"/orders/([^/?\"]+)", str(order_page.url)).group(1)
    mails = _wait_for_mail(data_dir / "mail")
    # then the email was written without the key, the log says where it went
    text = "".join(m.read_text(errors="replace") for m in mails)
    assert order_no in text and key not in text
    assert "EMAIL_URL is not set: an email was written to a file" in server.output()
    # and nothing in the data dir (database, its journal, keys, mail) is open to other users
    entries = [data_dir, *data_dir.rglob("*")]
    assert {p.name for p in entries} >= {"var", "kami.sqlite3", "data_key", "secret_key", "mail"}
    assert [f"{p} {p.stat().st_mode & 0o777:o}" for p in entries if p.stat().st_mode & 0o077] == []


def _wait_for_mail(folder: Path) -> list[Path]:
    deadline = time.time() + 60
    while time.time() < deadline:
        found = list(folder.glob("*.log")) if folder.exists() else []
        if found and all(f.stat().st_size for f in found):
            return found
        time.sleep(0.5)
    raise AssertionError("no mail file was written")


def test_production_will_not_start_without_email_url(data_dir):
    # when
    served = kami(data_dir, "serve", KAMI_ENV="production", KAMI_BASE_URL="https://shop.example")
    worked = kami(data_dir, "worker", "--once", KAMI_ENV="production")
    # then: one line, naming the setting
    for done in (served, worked):
        assert done.returncode == 2
        assert done.stderr.strip().splitlines()[-1].startswith("CommandError: EMAIL_URL is not set")


# ---- 3. KAMI_TRUSTED_PROXIES ------------------------------------------------------------------


def test_behind_a_trusted_proxy_each_client_has_its_own_pending_limit(data_dir, serve):
    # given a proxy at 127.0.0.1, declared; one unpaid order allowed per client address
    server = serve(data_dir, "--no-worker", KAMI_SANDBOX="1", KAMI_TRUSTED_PROXIES="127.0.0.1", KAMI_PENDING_LIMIT_IP="1")
    # when two clients of the proxy order
    first = order_create(server, email="a1@example.com", forwarded_for="203.0.113.7")
    again = order_create(server, email="a2@example.com", forwarded_for="203.0.113.7")
    other = order_create(server, email="b1@example.com", forwarded_for="198.51.100.1, 203.0.113.8")
    # then
    assert (first.status_code, again.status_code, other.status_code) == (201, 400, 201)
    assert again.json()["fields"] == {"ip": TOO_MANY}
    assert buyer_ips(data_dir) == {"a1@example.com": "203.0.113.7", "b1@example.com": "203.0.113.8"}


def test_an_underscore_twin_of_x_forwarded_for_cannot_choose_the_buyer_address(data_dir, serve):
    # given a proxy at 127.0.0.1 that sets X-Forwarded-For and passes on what it does not know,
    # here a client's `X_Forwarded_For` (as a CGI name it is X-Forwarded-For: a2wsgi merged the two)
    server = serve(data_dir, "--no-worker", KAMI_SANDBOX="1", KAMI_TRUSTED_PROXIES="127.0.0.1")
    headers = [("X-Forwarded-For", "203.0.113.7"), ("X_Forwarded_For", "6.6.6.6")]
    # when the client orders through it
    answer = httpx.post(f"{server.base}/api/v1/orders", json={"product": "steam-50", "quantity": 1, "gateway": "sandbox",
                                                              "email": "twin@example.com"}, headers=headers, timeout=20)
    # then the address is the one the proxy gave
    assert answer.status_code == 201, answer.text
    assert buyer_ips(data_dir) == {"twin@example.com": "203.0.113.7"}


def test_forged_forwarding_headers_from_an_untrusted_peer_change_nothing(data_dir, serve):
    # given no trusted proxy; one unpaid order allowed per client address
    server = serve(data_dir, "--no-worker", KAMI_SANDBOX="1", KAMI_PENDING_LIMIT_IP="1")
    # when one client claims to be two
    first = order_create(server, email="a1@example.com", forwarded_for="203.0.113.7")
    second = order_create(server, email="b1@example.com", forwarded_for="203.0.113.8")
    # then both are the peer they are
    assert (first.status_code, second.status_code) == (201, 400)
    assert buyer_ips(data_dir) == {"a1@example.com": "127.0.0.1"}


@pytest.mark.parametrize("trusted, hsts", [("127.0.0.0/8", True), ("", False)])
def test_https_at_a_trusted_proxy_gets_hsts_in_production(data_dir, serve, trusted, hsts):
    # given a production shop at an https address, TLS ended at a proxy on this machine
    server = serve(data_dir, "--no-worker", KAMI_ENV="production", KAMI_BASE_URL="https://shop.example",
                   EMAIL_URL="smtp://127.0.0.1:9", KAMI_ADMIN_EMAIL="me@shop.example", KAMI_TRUSTED_PROXIES=trusted)
    # when the proxy says the request came over https
    answer = httpx.get(f"{server.base}/healthz", headers={"X-Forwarded-Proto": "https"}, timeout=20)
    plain = httpx.get(f"{server.base}/healthz", timeout=20)
    # then HSTS is sent when the proxy is trusted, and never for plain http
    assert ("Strict-Transport-Security" in answer.headers) is hsts
    assert "Strict-Transport-Security" not in plain.headers


# ---- 4. SQLite durability ---------------------------------------------------------------------


@pytest.mark.django_db
def test_the_embedded_sqlite_commits_with_synchronous_full():
    # given a fresh connection made from the settings
    fresh = connections.create_connection("default")
    try:
        fresh.ensure_connection()
        with fresh.cursor() as cursor:
            # when
            cursor.execute("PRAGMA synchronous")
            level = cursor.fetchone()[0]
    finally:
        fresh.close()
    # then 2 = FULL: an acknowledged payment survives power loss
    assert level == 2
