"""The gateway overview (kami.payments.selectors): what `kami gateway list` and the back office's
gateways page show, from one place."""
from __future__ import annotations

import pytest

from kami.payments.registry import GATEWAYS
from kami.payments.selectors import gateway_overview, gateways_overview
from kami.payments.services import gateway_configure
from tests.payments.epay_play import KEY

pytestmark = pytest.mark.django_db


def test_the_overview_shows_settings_which_secrets_are_set_and_what_is_missing_never_a_secret():
    # given epay half configured
    gateway_configure(name="epay", values={"pid": "1001", "key": KEY}, actor="test")
    # when
    epay = gateway_overview("epay")
    # then
    assert (epay.configured, epay.enabled, epay.live) == (True, False, False)
    assert epay.config == {"pid": "1001"} and epay.missing == ["url"]
    assert [(s.name, s.is_set, s.required) for s in epay.secrets] == [("key", True, True)]
    assert epay.setting_names == ["pid", "url", "type", "currency", "refund"]
    assert epay.notify_url.endswith("/pay/epay/notify")
    assert KEY not in repr(epay)


def test_the_overview_lists_every_gateway_configured_or_not():
    # given nothing configured
    # when
    listed = gateways_overview()
    # then
    assert [g.name for g in listed] == sorted(GATEWAYS)
    alipay = next(g for g in listed if g.name == "alipay")
    assert not alipay.configured
    assert alipay.missing == ["app_id", "app_private_key", "alipay_public_key"]
