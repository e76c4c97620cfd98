"""Where PayPal's signing certificate may come from, and what a flood of forgeries can make Kami
fetch: PayPal's certificate path only, sandbox hosts only for a sandbox account, a failed URL
not fetched again for a while, and a small budget of new URLs a minute."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import RequestFactory

from kami.core import clock
from kami.core.edge import inbound_from
from kami.core.errors import VerificationFailed
from kami.payments.gateways import paypal
from kami.payments.gateways.paypal import PayPalGateway
from tests.payments.paypal_play import CLIENT_ID, CLIENT_SECRET, WEBHOOK_ID, capture_event, signed_headers
from tests.payments.paypal_play import fake_paypal  # noqa: F401 (a fixture)

pytestmark = pytest.mark.sqlite_only  # where certificates come from: the same on every engine

BODY = capture_event(order_no="261127120000000009", value="5.00")


def gateway(api_base: str = "https://api-m.paypal.com") -> PayPalGateway:
    return PayPalGateway(config={"client_id": CLIENT_ID, "webhook_id": WEBHOOK_ID, "api_base": api_base},
                         secrets={"client_secret": CLIENT_SECRET})


def notification(cert_url: str, body: bytes = BODY):
    return inbound_from(RequestFactory().post("/pay/paypal/notify", data=body, content_type="application/json",
                                              **signed_headers(body, cert_url=cert_url)))


def cert_fetches(fake) -> int:
    return sum(r["path"].startswith("/v1/notifications/certs/") for r in fake.requests)


@pytest.mark.parametrize("url", [
    "https://api-m.paypal.com/v1/oauth2/token",
    "https://api.paypal.com/v1/notifications/certs/CERT-1/../../../v2/checkout/orders",
    "https://api.paypal.com/v1/notifications/certs/CERT-1?next=1",
    "https://api.paypal.com/",
])
def test_only_paypal_s_certificate_path_is_fetched(url):
    with pytest.raises(VerificationFailed, match="not on PayPal's certificate path"):
        gateway().parse_notification(notification(url))


def test_sandbox_certificates_are_refused_for_a_live_account():
    url = "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-1d93a270"
    with pytest.raises(VerificationFailed, match=r"not on PayPal's API hosts over https \(live account\)"):
        gateway().parse_notification(notification(url))


def test_a_sandbox_account_takes_its_sandbox_certificates(fake_paypal, monkeypatch):
    # given the fake standing in for PayPal's sandbox host
    monkeypatch.setattr(PayPalGateway, "SANDBOX_CERT_HOSTS", PayPalGateway.ALLOWED_CERT_HOSTS)
    # when / then: a sandbox account verifies with it, a live one refuses it without fetching
    assert gateway("https://api-m.sandbox.paypal.com").parse_notification(notification(fake_paypal.cert_url())).paid
    with pytest.raises(VerificationFailed, match="live account"):
        gateway().parse_notification(notification(fake_paypal.cert_url()))
    assert cert_fetches(fake_paypal) == 1


def test_a_malformed_event_is_refused_before_any_fetch(fake_paypal):
    with pytest.raises(VerificationFailed, match="malformed event"):
        gateway().parse_notification(notification(fake_paypal.cert_url(), body=b'{"not": "an event"}'))
    assert cert_fetches(fake_paypal) == 0


def test_a_failed_certificate_is_not_fetched_again_at_once(fake_paypal):
    # when five forgeries name a certificate PayPal does not have
    for _ in range(5):
        with pytest.raises(VerificationFailed, match="could not fetch the signing certificate: HTTP 404"):
            gateway().parse_notification(notification(fake_paypal.cert_url("CERT-missing")))
    # then it was asked for once
    assert cert_fetches(fake_paypal) == 1


def test_at_most_a_few_new_certificates_are_fetched_a_minute(fake_paypal):
    # when forgeries name thirty different certificates
    for i in range(30):
        with pytest.raises(VerificationFailed):
            gateway().parse_notification(notification(fake_paypal.cert_url(f"CERT-forged-{i}")))
    # then
    assert cert_fetches(fake_paypal) == paypal.CERT_FETCHES_PER_MINUTE


def test_certificate_validity_is_judged_by_the_shop_s_clock(fake_paypal):
    # given: a notification verified (and its year-long certificate cached) today
    assert gateway().parse_notification(notification(fake_paypal.cert_url())).paid
    try:
        # when: kami.core.clock says it is 400 days later (the system clock has not moved)
        clock.travel(timedelta(days=400))
        # then: the cached certificate has expired, is fetched again, and is refused
        with pytest.raises(VerificationFailed, match="expired or not yet valid"):
            gateway().parse_notification(notification(fake_paypal.cert_url()))
    finally:
        clock.travel(None)
    assert cert_fetches(fake_paypal) == 2
