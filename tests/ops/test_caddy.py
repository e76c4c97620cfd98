"""HTTPS in front (issue 13): Debian's `caddy` runs deploy/Caddyfile as shipped (plus test-only
global options: `tls internal` for every site, test ports, no admin API, its data in a tmp dir)
in front of a real `kami serve` on loopback, and buyers reach the shop only through https.

Kami trusts the proxy at 127.0.0.1 (KAMI_BEHIND_PROXY=1); the buyers connect to Caddy from
127.0.0.2 and 127.0.0.3, so each is its own client to every per-IP rule, and the sandbox, which
answers this machine only, takes their payments."""
from __future__ import annotations

import html
import os
import re
import shutil
import signal
import sqlite3
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.ports import free_port
from tests.test_newcomer import csrf
from tests.test_security_deploy import KEY_PATTERN, TOO_MANY, serve  # noqa: F401 (serve: a fixture)

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.sqlite_only, pytest.mark.slow]


class Caddy:
    """`caddy run` on deploy/Caddyfile: the shipped site block, its name and upstream swapped for
    127.0.0.1 and the test's ports."""

    def __init__(self, workdir: Path, *, upstream_port: int, https_port: int):
        binary = shutil.which("caddy")
        if binary is None:
            pytest.skip("caddy is not installed (apt-get install caddy; `./dev test` installs it): "
                        "the HTTPS-in-front tests did NOT run")
        self.port, self.store = https_port, workdir / "caddy-data"
        self.config = workdir / "Caddyfile"
        self.config.write_text(self._config(upstream_port, free_port()))
        self.log = open(workdir / "caddy.log", "wb")
        env = {"PATH": os.environ["PATH"], "HOME": str(workdir), "XDG_DATA_HOME": str(workdir / "xdg-data"),
               "XDG_CONFIG_HOME": str(workdir / "xdg-config")}
        self.proc = subprocess.Popen([binary, "run", "--config", str(self.config), "--adapter", "caddyfile"],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.base = f"https://127.0.0.1:{self.port}"
        self.root_cert = self.store / "pki" / "authorities" / "local" / "root.crt"
        self._wait()

    def _config(self, upstream_port: int, http_port: int) -> str:
        shipped = (ROOT / "deploy" / "Caddyfile").read_text()
        assert shipped.count("shop.example.com {") == 1 and shipped.count("127.0.0.1:8000") >= 1
        test_globals = (f"{{\n\tadmin off\n\thttp_port {http_port}\n\thttps_port {self.port}\n\tdefault_bind 127.0.0.1\n"
                        f"\tlocal_certs\n\tskip_install_trust\n\tstorage file_system {self.store}\n")
        return (shipped.replace("{\n", test_globals, 1).replace("shop.example.com {", "127.0.0.1 {")
                .replace("127.0.0.1:8000", f"127.0.0.1:{upstream_port}"))

    def _wait(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            if self.root_cert.exists():
                try:
                    if httpx.get(f"{self.base}/healthz", verify=self.trust(), timeout=2).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        raise AssertionError(f"caddy did not answer: {self.output()}")

    def trust(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.root_cert))

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def client(self, source: str) -> httpx.Client:
        """A buyer at `source` (a loopback address), trusting only Caddy's internal CA."""
        transport = httpx.HTTPTransport(verify=self.trust(), local_address=source)
        return httpx.Client(base_url=self.base, transport=transport, timeout=20, follow_redirects=True,
                            headers={"Origin": self.base})  # what a browser sends with a form's POST

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=20)
        self.log.close()


@pytest.fixture
def shop_behind_caddy(demo_shop, serve, tmp_path):  # noqa: F811
    """Start `kami serve` (sandbox on, the proxy on this machine trusted, an https base URL),
    then Caddy in front of it; yields (caddy, kami server)."""
    started: list[Caddy] = []

    def start(**env: str):
        https_port = free_port()
        server = serve(demo_shop, KAMI_SANDBOX="1", KAMI_BEHIND_PROXY="1",
                       KAMI_BASE_URL=f"https://127.0.0.1:{https_port}", **env)
        started.append(Caddy(tmp_path, upstream_port=server.port, https_port=https_port))
        return started[-1], server

    yield start
    for caddy in started:
        caddy.stop()


def _hidden_fields(page: str) -> dict[str, str]:
    return {k: html.unescape(v) for k, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page)}


def _mail_text(folder: Path, order_no: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = "".join(m.read_text(errors="replace") for m in folder.glob("*.log")) if folder.exists() else ""
        text = text.replace("=\n", "").replace("=3D", "=")  # quoted-printable soft breaks
        if order_no in text:
            return text
        time.sleep(0.5)
    raise AssertionError("no email about the order was written")


def _db(data_dir: Path, sql: str, *params) -> list[tuple]:
    with sqlite3.connect(data_dir / "kami.sqlite3") as db:
        return db.execute(sql, params).fetchall()


def test_a_buyer_buys_a_key_over_https_through_caddy(demo_shop, shop_behind_caddy):
    # given Kami behind Caddy, with an https base URL
    caddy, _ = shop_behind_caddy()
    with caddy.client("127.0.0.2") as buyer:
        # when a buyer orders, pays in the sandbox and lands on the order page
        home = buyer.get("/")
        pay_page = buyer.post("/buy/steam-50", data={"csrfmiddlewaretoken": csrf(home.text), "email": "tls@example.com",
                                                     "quantity": "1", "gateway": "sandbox"})
        order_page = buyer.post(str(pay_page.url), data=_hidden_fields(pay_page.text))
        static = buyer.get(re.search(r'"(/static/[^"]+\.css)"', home.text).group(1))
    order_no = re.search(r"/orders/([^/?\"]+)", str(order_page.url)).group(1)
    mail = _mail_text(demo_shop / "mail", order_no)
    # then every step went over https, and the order page shows the key
    assert [str(r.url).split("/")[2] for r in (home, pay_page, order_page)] == [f"127.0.0.1:{caddy.port}"] * 3
    assert all(str(r.url).startswith("https://") for r in (home, pay_page, order_page, *order_page.history))
    assert re.search(rf'<code class="key">{KEY_PATTERN}</code>', order_page.text)
    assert _db(demo_shop, "SELECT status, buyer_ip FROM orders_order WHERE order_no = ?", order_no) == [("fulfilled", "127.0.0.2")]
    # and the email's link to the order is the https address
    assert f"https://127.0.0.1:{caddy.port}/orders/{order_no}?sig=" in mail
    assert "http://127.0.0.1" not in mail
    # and static files came compressed, the page with the key did not (BREACH)
    assert static.status_code == 200 and static.headers.get("content-encoding") in ("gzip", "zstd")
    assert "content-encoding" not in order_page.headers
    # and the shop sent HSTS and marked its cookies Secure
    assert home.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    cookies = home.headers.get_list("set-cookie") + pay_page.history[0].headers.get_list("set-cookie")
    assert {c.split("=")[0] for c in cookies} >= {"csrftoken"} and len(cookies) >= 2
    assert [c for c in cookies if "; Secure" not in c] == []
    # and each request went in under the id Caddy gave it (a UUID), which Kami answered with
    ids = {r.headers.get("x-request-id") for r in (home, pay_page, order_page)}
    assert len(ids) == 3 and all(re.fullmatch(r"[0-9a-f-]{36}", i or "") for i in ids), ids


def test_each_buyer_behind_caddy_has_their_own_limits_and_cannot_forge_an_address(demo_shop, shop_behind_caddy):
    # given one unpaid order and one lookup per client address
    caddy, _ = shop_behind_caddy(KAMI_PENDING_LIMIT_IP="1", KAMI_LOOKUP_LIMIT_IP="1")
    order = {"product": "steam-50", "quantity": 1, "gateway": "sandbox"}
    with caddy.client("127.0.0.2") as first, caddy.client("127.0.0.3") as second:
        # when the first buyer orders twice, the second time claiming another address, and the second orders once
        a1 = first.post("/api/v1/orders", json={**order, "email": "a1@example.com"})
        a2 = first.post("/api/v1/orders", json={**order, "email": "a2@example.com"},
                        headers={"X-Forwarded-For": "203.0.113.9"})
        b1 = second.post("/api/v1/orders", json={**order, "email": "b1@example.com"},
                         headers={"X-Forwarded-For": "127.0.0.2"})
        # and each looks an order up twice, the second time with a forged address
        lookups = []
        for client in (first, second):
            page = client.get("/lookup")
            for forged in ({}, {"X-Forwarded-For": "198.51.100.4"}):
                lookups.append(client.post("/lookup", data={"csrfmiddlewaretoken": csrf(page.text), "order_no": "K1",
                                                            "email": "x@example.com"}, headers=forged).status_code)
        # and a forged gateway notification comes through Caddy to the notify path
        forged = second.post("/pay/sandbox/notify", content=b'{"order_no": "K1"}',
                             headers={"Content-Type": "application/json", "X-Sandbox-Signature": "0" * 64,
                                      "X-Forwarded-For": "127.0.0.1"})
        # and a buyer sends a body larger than any buyer needs
        huge = first.post("/api/v1/orders", content=b"x" * (2 * 1024 * 1024), headers={"Content-Type": "application/json"})
    # then each address had its own limit, and no header changed whose limit it was
    assert (a1.status_code, a2.status_code, b1.status_code) == (201, 400, 201)
    assert a2.json()["fields"] == {"ip": TOO_MANY}
    assert lookups == [200, 429, 200, 429]
    assert dict(_db(demo_shop, "SELECT email, buyer_ip FROM orders_order WHERE email LIKE '%1@example.com'")) == {
        "a1@example.com": "127.0.0.2", "b1@example.com": "127.0.0.3"}
    # and the notification reached Kami, which refused it and recorded who really sent it
    assert (forged.status_code, forged.text) == (400, "fail")
    assert _db(demo_shop, "SELECT gateway, verified, remote_addr FROM payments_notification") == [("sandbox", 0, "127.0.0.3")]
    # and Caddy cut the oversized body off before Kami read it (Debian 12's Caddy 2.6 answers 502, newer ones 413)
    assert huge.status_code in (413, 502)
    assert _db(demo_shop, "SELECT count(*) FROM orders_order") == [(2,)]
