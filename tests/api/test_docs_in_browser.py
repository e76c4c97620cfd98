"""The interactive API docs in a real browser (Debian's Chromium) under the shop's strict CSP:
Swagger UI renders every operation, nothing is blocked, nothing is fetched from elsewhere."""
from __future__ import annotations

import pytest

from tests.e2e.chromium import SHOTS
from tests.e2e.conftest import browser, chromium  # noqa: F401  (the fixtures)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite_only]


def test_swagger_ui_renders_under_the_csp_from_local_files(live_server, browser):  # noqa: F811
    # given
    page = browser.new_page()
    blocked, requested = [], []
    page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("request", lambda r: requested.append(r.url))
    # when
    page.goto(f"{live_server.url}/api/v1/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=15000)
    # then
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert "/api/v1/merchant/stock/{slug}/keys" in [p.replace("\u200b", "") for p in paths]
    assert blocked == []
    assert all(url.startswith(live_server.url) or url.startswith("data:") for url in requested), requested
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "api-docs.png"), full_page=False)
