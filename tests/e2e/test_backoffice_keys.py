"""The owner's key work in a real browser (Debian's Chromium): sign in with a TOTP code, upload a
key file, watch the progress bar while the worker's runner imports it, read the report; reveal
a key and find the reveal in the audit log. Screenshots go to test-output/e2e/backoffice/."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from django.db import connection

from kami.fulfilment.imports import import_jobs_run_due
from kami.stock.models import Key
from kami.stock.vault import key_fingerprint
from tests.backoffice.staffing import PASSWORD, admin_url, code_for, make_staff
from tests.e2e.chromium import SHOTS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite_only]

LINES = 20_000
OUT = SHOTS / "backoffice"


def _key_file(path: Path) -> Path:
    """20,000 lines: 19,997 keys, then a duplicate of line 3, a blank line and a NUL byte."""
    with path.open("w", encoding="utf-8") as f:
        f.writelines(f"E2E-{i:06d}-KEY\n" for i in range(LINES - 3))
        f.write("E2E-000002-KEY\n\nBAD\x00KEY\n")
    return path


def _run_worker_soon(delay: float) -> threading.Thread:
    """The worker's import runner, in a thread of its own, once the browser shows the job."""

    def run() -> None:
        try:
            time.sleep(delay)
            import_jobs_run_due(limit=1)
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _sign_in(page, base: str, user) -> None:
    page.goto(base + admin_url("login/"))
    page.fill("input[name=username]", user.get_username())
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=otp_token]", code_for(user))
    page.screenshot(path=str(OUT / "1-sign-in.png"), full_page=True)
    page.click("[type=submit]")
    page.wait_for_url(base + admin_url())


def test_the_owner_imports_a_file_and_reveals_a_key_on_record(browser, live_server, make_product, tmp_path):  # noqa: F811
    # given an owner with a TOTP device and a product
    OUT.mkdir(parents=True, exist_ok=True)
    owner = make_staff("owner", "olga")
    product = make_product("gift-card", name="Gift card 100")
    page = browser.new_context(locale="en-US", viewport={"width": 1440, "height": 900}).new_page()
    refused = []  # anything the Content-Security-Policy blocked: a page that needs it is broken
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    base = live_server.url
    # when the owner signs in with the code and uploads a key file
    _sign_in(page, base, owner)
    page.goto(f"{base}{admin_url('keys/import/')}?product={product.pk}")
    page.set_input_files("input[name=file]", str(_key_file(tmp_path / "keys.txt")))
    page.screenshot(path=str(OUT / "2-import-form.png"), full_page=True)
    page.click("#import-form [type=submit]")
    page.wait_for_selector("#job-progress")
    page.screenshot(path=str(OUT / "3-job-queued.png"), full_page=True)
    assert page.inner_text("#job-status").strip() == "queued"
    # and the worker runs the job while the page polls
    runner = _run_worker_soon(1.5)
    page.wait_for_selector("#job-summary", timeout=120_000)
    runner.join(timeout=60)
    # then the page ends with the summary and the report link
    page.screenshot(path=str(OUT / "4-job-done.png"), full_page=True)
    assert page.inner_text("#sum-imported").replace(",", "") == str(LINES - 3)
    assert (page.inner_text("#sum-duplicates"), page.inner_text("#sum-invalid")) == ("1", "1")
    assert page.get_attribute("#job-progress", "value") == "100"
    with page.expect_download() as download:
        page.click("#job-report")
    report = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    first = Key.objects.get(fingerprint=key_fingerprint("E2E-000002-KEY"))  # stored from an earlier chunk
    assert report == ["line,problem,detail", f"{LINES - 2},duplicate in the file,key #{first.pk}",
                      f"{LINES},contains a NUL byte,"]
    # when the owner opens the product's keys and presses Reveal on one of them
    key = Key.objects.get(fingerprint=key_fingerprint("E2E-000042-KEY"))
    page.goto(f"{base}{admin_url('stock/key/')}?product__id__exact={product.pk}&q={key.fingerprint[:8]}")
    page.screenshot(path=str(OUT / "5-keys.png"), full_page=True)
    assert "E2E-000042-KEY" not in page.content()
    page.click(f"button[form=key-reveal-{key.pk}]")
    # then the key's text is shown once
    page.wait_for_selector("#revealed-key")
    page.screenshot(path=str(OUT / "6-revealed.png"), full_page=True)
    assert page.inner_text("#revealed-key").strip() == "E2E-000042-KEY"
    # and the audit log shows who revealed which key, from where
    page.goto(f"{base}{admin_url('audit/auditlog/')}?action=keys.reveal")
    page.screenshot(path=str(OUT / "7-audit-log.png"), full_page=True)
    row = page.locator("#result_list tbody tr").first
    cells = row.inner_text()
    assert "olga" in cells and "keys.reveal" in cells and str(key.pk) in cells and "127.0.0.1" in cells
    assert refused == []
