"""A newcomer's first command, for real: copy the repository to a fresh directory, run
`./dev demo` there, and buy a key over HTTP the way a browser does (forms, CSRF cookie,
redirects). The second command (`./dev test`) is the one running this suite."""
from __future__ import annotations

import html
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.ports import free_port

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.newcomer, pytest.mark.sqlite_only, pytest.mark.engine_free, pytest.mark.slow]  # its own directory and processes



def fresh_copy(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.split("\n")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).write_bytes(src.read_bytes())
            (dest / name).chmod(src.stat().st_mode)


def clean_env() -> dict:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONFIG_FILE",
            "PYENV_ROOT", "PYENV_VERSION", "TMPDIR")
    return {k: v for k, v in os.environ.items() if k in keep}


def csrf(page: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)


def test_first_command_serves_a_shop_where_a_key_can_be_bought(tmp_path):
    # given a fresh directory holding the repository, and nothing else
    fresh_copy(tmp_path)
    port = free_port()
    log = open(tmp_path / "demo.log", "wb")
    server = subprocess.Popen(["./dev", "demo", "--port", str(port)], cwd=tmp_path, env=clean_env(),
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 600
        while time.time() < deadline:
            assert server.poll() is None, (tmp_path / "demo.log").read_text()[-3000:]
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        # when a buyer picks a product, pays in the sandbox and follows the redirects
        with httpx.Client(base_url=base, follow_redirects=True, timeout=20) as browser:
            home = browser.get("/")
            assert home.status_code == 200 and "steam-50" in home.text
            pay_page = browser.post("/buy/steam-50", data={"csrfmiddlewaretoken": csrf(home.text), "email": "new@example.com",
                                                           "quantity": "1", "gateway": "sandbox"})
            assert "Simulate" in pay_page.text or "模拟" in pay_page.text, pay_page.text[:500]
            form = {k: html.unescape(v) for k, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', pay_page.text)}
            order_page = browser.post(str(pay_page.url), data=form)
        # then the order page shows the key
        assert order_page.status_code == 200
        assert re.search(r'<code class="key">[2-9A-HJ-NP-Z]{4}(-[2-9A-HJ-NP-Z]{4}){3}</code>', order_page.text), order_page.text[:2000]
        assert order_page.headers["Cache-Control"] == "no-store"
        assert (tmp_path / "var" / "data_key").stat().st_mode & 0o077 == 0
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()
