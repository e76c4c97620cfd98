"""kami.core.net.client_ip: the one address every per-IP rule uses. Forwarded headers count
only from KAMI_TRUSTED_PROXIES (addresses or CIDRs), read from the right past trusted hops.
(The real server is exercised in tests/test_security_deploy.py.)"""
from __future__ import annotations

import ipaddress

import pytest
from django.test import RequestFactory

from kami.core.net import client_ip, loopback_client, trusted_networks_parse
from kami.payments.models import Notification
from tests.sandbox_play import enable_sandbox

pytestmark = pytest.mark.sqlite_only  # no database


def request(peer: str, forwarded_for: str | None = None):
    extra = {"HTTP_X_FORWARDED_FOR": forwarded_for} if forwarded_for is not None else {}
    return RequestFactory().get("/", REMOTE_ADDR=peer, **extra)


@pytest.mark.parametrize("peer, forwarded_for, expected", [
    ("203.0.113.9", "198.51.100.1", "203.0.113.9"),                 # untrusted peer: its header is ignored
    ("10.0.0.2", "198.51.100.1", "198.51.100.1"),                   # one trusted proxy
    ("10.0.0.2", "6.6.6.6, 198.51.100.1, 10.0.0.3", "198.51.100.1"),  # two trusted hops; the client's forgery left of them
    ("10.0.0.2", "10.0.0.4, 10.0.0.3", "10.0.0.4"),                 # every hop trusted: the leftmost
    ("10.0.0.2", "garbage, 10.0.0.3", "10.0.0.3"),                  # malformed: the last vouched-for address
    ("10.0.0.2", "", "10.0.0.2"),
    ("::ffff:10.0.0.2", "2001:db8::7", "2001:db8::7"),               # IPv4-mapped peer
])
def test_client_ip_walks_forwarded_for_from_the_right(settings, peer, forwarded_for, expected):
    settings.KAMI_TRUSTED_PROXIES = trusted_networks_parse("10.0.0.0/8, 127.0.0.1")
    assert client_ip(request(peer, forwarded_for)) == expected


def test_trusted_proxies_must_be_addresses_or_cidrs():
    assert trusted_networks_parse(" 127.0.0.1 ,::1,10.0.0.0/8") == (
        ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"), ipaddress.ip_network("10.0.0.0/8"))
    with pytest.raises(ValueError, match="'proxy.example' is not an address or a CIDR"):
        trusted_networks_parse("proxy.example")


def test_loopback_means_this_machine_and_nobody_relayed(settings):
    settings.KAMI_TRUSTED_PROXIES = trusted_networks_parse("127.0.0.1")
    assert loopback_client(request("127.0.0.2")) and loopback_client(request("::1"))
    assert loopback_client(request("127.0.0.1", "127.0.0.1"))  # through the trusted proxy, from this machine
    assert not loopback_client(request("127.0.0.1", "203.0.113.7"))  # through the trusted proxy, from outside
    assert not loopback_client(request("127.0.0.2", "127.0.0.1"))  # relayed by a proxy Kami does not trust
    assert not loopback_client(request("192.0.2.1"))


@pytest.mark.django_db
def test_lookup_limit_and_stored_notifications_see_the_client_behind_a_trusted_proxy(client, settings):
    # given a proxy in 10.0.0.0/8, one lookup per client address
    settings.KAMI_TRUSTED_PROXIES = trusted_networks_parse("10.0.0.0/8")
    settings.KAMI_LOOKUP_LIMIT_IP = 1
    enable_sandbox()
    form = {"email": "x@example.com", "order_no": "K-NOPE"}
    # when
    first = client.post("/lookup", form, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="203.0.113.7")
    again = client.post("/lookup", {**form, "email": "y@example.com"}, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="203.0.113.7")
    other = client.post("/lookup", {**form, "email": "z@example.com"}, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="203.0.113.8")
    client.post("/pay/sandbox/notify", data=b"{}", content_type="application/json",
                REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="203.0.113.9")
    # then
    assert (first.status_code, again.status_code, other.status_code) == (200, 429, 200)
    assert Notification.objects.get().remote_addr == "203.0.113.9"
