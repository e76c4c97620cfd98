"""The one browser fixture of the browser tests: Debian's Chromium through Playwright."""
from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.e2e.chromium import ARGS, CHROMIUM


@pytest.fixture(scope="module")
def chromium():
    """One Chromium per test module (a launch took 1-2 s of each browser test's setup); each test
    opens its own context or page on it, and `browser` closes what a test left open.

    Playwright's sync API keeps an event loop running on this thread while it is started; the
    module's own ORM calls are still plain synchronous calls, which Django would otherwise refuse
    next to a loop. Module scope keeps both to the browser tests' modules."""
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed: apt-get install -y chromium (./dev test does)"
    with pytest.MonkeyPatch.context() as env, sync_playwright() as p:
        env.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        launched = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def browser(chromium):
    yield chromium
    for context in chromium.contexts:  # each test starts from a browser with nothing open
        context.close()
