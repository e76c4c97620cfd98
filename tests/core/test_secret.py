"""A decrypted key never shows itself by accident: every way Python turns it into text gives a
mask; only `reveal()` gives the plaintext (STYLE.md: secrets are typed)."""
from __future__ import annotations

import logging

import pytest

from kami.core.crypto import Secret

pytestmark = pytest.mark.sqlite_only  # no database

PLAIN = "CARD-KEY-1234-SECRET"


def test_every_accidental_formatting_is_masked():
    # given
    secret = Secret(PLAIN)
    # when
    shown = [repr(secret), str(secret), f"{secret}", f"{secret!s}", f"{secret:>30}", "%s" % secret,
             "{}".format(secret), format(secret), str([secret]), str({"key": secret})]
    # then
    assert all(PLAIN not in text for text in shown), shown
    assert all("***" in text for text in shown)


def test_a_log_line_with_the_secret_shows_the_mask(caplog):
    # given
    caplog.set_level(logging.INFO)
    # when
    logging.getLogger("kami.test").info("key %s failed; %r", Secret(PLAIN), Secret(PLAIN))
    # then
    assert PLAIN not in caplog.text and "Secret(***)" in caplog.text


def test_reveal_is_the_one_way_to_the_plaintext():
    # given
    secret = Secret(PLAIN)
    # when
    plain = secret.reveal()
    # then: a plain str, usable anywhere
    assert plain == PLAIN and type(plain) is str and f"{plain}" == PLAIN
