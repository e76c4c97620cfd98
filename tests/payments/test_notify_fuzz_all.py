"""Every gateway's notify endpoint, fed random bodies, headers, methods and content types, never
answers 500 and never delivers anything (hypothesis)."""
from __future__ import annotations

import json

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kami.orders.models import OrderKey
from tests.payments.alipay_play import enable_alipay
from tests.payments.paypal_play import enable_paypal, fake_paypal  # noqa: F401 (fixture)
from tests.payments.stripe_play import enable_stripe, fake_stripe  # noqa: F401 (fixture)
from tests.payments.usdt_play import enable_epusdt, enable_tokenpay
from tests.payments.wechat_play import enable_wechatpay

GATEWAYS = ["alipay", "wechatpay", "stripe", "paypal", "epusdt", "tokenpay"]
HEADERS = ["Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Signature", "Wechatpay-Serial", "Stripe-Signature",
           "Paypal-Transmission-Id", "Paypal-Transmission-Time", "Paypal-Transmission-Sig", "Paypal-Cert-Url",
           "Paypal-Auth-Algo"]
text = st.text(max_size=40).map(lambda s: s.encode("utf-8", "surrogatepass").decode("utf-8", "replace"))
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | text,
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=4),
                           max_leaves=10)
bodies = st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()))
header_values = st.one_of(text, st.sampled_from(["", "t=1,v1=00", "WECHATPAY/SIGNTEST/x", "PUB_KEY_ID_x",
                                                 "https://api.paypal.com/v1/notifications/certs/x", "SHA256withRSA",
                                                 "0", "99999999999999999999"]))
content_types = st.sampled_from(["application/json", "application/x-www-form-urlencoded", "multipart/form-data",
                                 "text/plain", "application/json; charset=latin-1"])


@pytest.mark.django_db(transaction=True)
def test_random_notifications_to_every_gateway_never_answer_500(make_product, fake_stripe, fake_paypal):  # noqa: F811
    # given every gateway enabled, and a product in stock
    enable_alipay()
    enable_wechatpay()
    enable_stripe(fake_stripe)
    enable_paypal(fake_paypal)
    enable_epusdt("http://127.0.0.1:9")
    enable_tokenpay("http://127.0.0.1:9")
    client = Client(raise_request_exception=True)

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(gateway=st.sampled_from(GATEWAYS), method=st.sampled_from(["POST", "GET"]), body=bodies,
           headers=st.dictionaries(st.sampled_from(HEADERS), header_values, max_size=5), content_type=content_types)
    def check(gateway, method, body, headers, content_type):
        extra = {f"HTTP_{k.upper().replace('-', '_')}": v.encode("utf-8").decode("latin-1") for k, v in headers.items()}
        response = client.generic(method, f"/pay/{gateway}/notify", data=body, content_type=content_type, **extra)
        assert response.status_code < 500, (gateway, response.status_code)

    check()
    assert not OrderKey.objects.exists()
