from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest

from kami.delivery.links import order_link_signature, order_link_signed, order_link_verify

pytestmark = pytest.mark.sqlite_only  # no database


def test_signed_link_verifies_for_its_order_only():
    url = urlparse(order_link_signed("2511270001"))
    sig = parse_qs(url.query)["sig"][0]
    assert url.scheme == "http" and url.netloc == "testserver" and url.path == "/orders/2511270001"
    assert order_link_verify("2511270001", sig)
    assert not order_link_verify("2511270002", sig)
    assert not order_link_verify("2511270001", sig[:-1] + ("A" if sig[-1] != "A" else "B"))
    assert not order_link_verify("2511270001", "")
    assert not order_link_verify("", sig)
    assert not order_link_verify("2511270001", None)


def test_signature_depends_on_the_secret_key_and_survives_rotation_with_fallbacks(settings):
    old, old_key = order_link_signature("2511270001"), settings.SECRET_KEY
    settings.SECRET_KEY = "a-new-secret-key-for-rotation-test-0123456789"
    assert not order_link_verify("2511270001", old)
    settings.SECRET_KEY_FALLBACKS = [old_key]
    assert order_link_verify("2511270001", old)


def test_a_link_works_for_the_configured_days_then_expires(settings):
    from datetime import timedelta

    from kami.core import clock
    from kami.delivery.links import LinkCheck, order_link_check

    # given a link made now, with links working for 2 days
    settings.KAMI_ORDER_LINK_DAYS = 2
    sig = order_link_signature("2511270001")
    try:
        # then it opens its order until the days have passed, and is told apart from a forgery after
        clock.travel(timedelta(days=2, minutes=-61))
        assert order_link_check("2511270001", sig) is LinkCheck.OK
        clock.travel(timedelta(days=2, minutes=1))
        assert order_link_check("2511270001", sig) is LinkCheck.EXPIRED
        assert order_link_check("2511270002", sig) is LinkCheck.BAD
        assert not order_link_verify("2511270001", sig)
    finally:
        clock.travel(None)


def test_a_never_expiring_link_from_before_counts_as_expired():
    from django.core import signing

    from kami.delivery.links import LinkCheck, order_link_check

    legacy = signing.Signer(salt="order-link").signature("2511270001")
    assert order_link_check("2511270001", legacy) is LinkCheck.EXPIRED
    assert order_link_check("2511270002", legacy) is LinkCheck.BAD
