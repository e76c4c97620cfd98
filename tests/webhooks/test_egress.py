"""Public addresses only (kami.webhooks.egress): a URL aimed at the server's own network is refused
when saved — through the service, the merchant API and the back office — and again when sent, on
the address the connection really goes to, so a name that turns private after it was saved (DNS
rebinding) is refused too. KAMI_WEBHOOK_ALLOW_PRIVATE=1 lets loopback and private networks through.

DNS is not available here: names other than `localhost` are answered by FakeDns, a stand-in for
socket.getaddrinfo that knows a few names and passes every other lookup to the real one. The
connections themselves are real."""
from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kami.api.tokens import api_token_create
from kami.core.errors import BadInput
from kami.delivery.models import OutboxMessage
from kami.delivery.worker import run_once
from kami.webhooks.egress import address_kind, address_refusal
from kami.webhooks.models import Endpoint, WebhookAttempt
from kami.webhooks.services import endpoint_create, endpoint_update
from tests.api.conftest import Api
from tests.backoffice.staffing import admin_url, signed_in
from tests.webhooks.play import webhook_rows
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.django_db(transaction=True)
OPT_OUT = "KAMI_WEBHOOK_ALLOW_PRIVATE=1"
PUBLIC = "93.184.216.34"  # never connected to by these tests: a name answering it is switched before sending

# (URL, the address named in the refusal, its kind): every class refused by default.
REFUSED = [
    ("http://127.0.0.1:5432/", "127.0.0.1", "a loopback address"),
    ("http://127.9.9.9/", "127.9.9.9", "a loopback address"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254", "a link-local address"),
    ("http://10.1.2.3/hook", "10.1.2.3", "a private-network address"),
    ("http://172.16.0.9/hook", "172.16.0.9", "a private-network address"),
    ("https://192.168.1.20/hook", "192.168.1.20", "a private-network address"),
    ("http://100.64.0.1/hook", "100.64.0.1", "a private-network address"),  # carrier-grade NAT
    ("http://[::1]:8000/hook", "::1", "a loopback address"),
    ("http://[::ffff:127.0.0.1]/hook", "::ffff:127.0.0.1", "a loopback address"),  # IPv4-mapped
    ("http://[::ffff:169.254.169.254]/", "::ffff:169.254.169.254", "a link-local address"),
    ("http://[fc00::1]/hook", "fc00::1", "a private-network address"),
    ("http://[fd12:3456::1]/hook", "fd12:3456::1", "a private-network address"),
    ("http://[fe80::1]/hook", "fe80::1", "a link-local address"),
    ("http://224.0.0.1/hook", "224.0.0.1", "a multicast address"),
    ("http://[ff02::1]/hook", "ff02::1", "a multicast address"),
    ("http://0.0.0.0:8000/hook", "0.0.0.0", "an unspecified address"),
    ("http://[::]/hook", "::", "an unspecified address"),
    ("http://240.0.0.1/hook", "240.0.0.1", "a reserved address"),
    ("http://255.255.255.255/hook", "255.255.255.255", "a reserved address"),
    ("http://localhost:8000/hook", "localhost resolves to", "a loopback address"),
    ("http://2130706433/hook", "2130706433 resolves to 127.0.0.1", "a loopback address"),  # 127.0.0.1 as one number
    ("http://127.1/hook", "127.1 resolves to 127.0.0.1", "a loopback address"),
]
OWN_NETWORK = ("a loopback address", "a private-network address")


class FakeDns:
    """socket.getaddrinfo answering `names` from a script: each lookup of a name takes the next
    answer (the last one repeats); other names go to the real resolver. `asked` counts lookups."""

    def __init__(self, monkeypatch):
        self.answers: dict[str, list[list[str]]] = {}
        self.asked: dict[str, int] = {}
        real = socket.getaddrinfo

        def getaddrinfo(host, port, *args, **kwargs):
            if host not in self.answers:
                return real(host, port, *args, **kwargs)
            self.asked[host] = self.asked.get(host, 0) + 1
            script = self.answers[host]
            addresses = script.pop(0) if len(script) > 1 else script[0]
            return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                     (a, int(port or 0))) for a in addresses]

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    def answer(self, name: str, *answers: list[str]) -> None:
        self.answers[name], self.asked[name] = [list(a) for a in answers], 0


@pytest.fixture
def dns(monkeypatch):
    return FakeDns(monkeypatch)


@pytest.fixture
def guarded(settings):
    """The default: no opt-out (set after `receiver`, which turns it on for its loopback server)."""
    settings.KAMI_WEBHOOK_ALLOW_PRIVATE = False
    return settings


@pytest.mark.parametrize("address,kind", [
    ("8.8.8.8", None), ("2001:4860:4860::8888", None), ("::ffff:8.8.8.8", None), ("2002:808:808::1", None),
    ("64:ff9b::808:808", None),
    # `ipaddress` calls these global; they are not places to post to
    ("239.1.2.3", "a multicast address"), ("ff0e::1", "a multicast address"),
    ("2002:7f00:1::1", "a loopback address"),  # 6to4 around 127.0.0.1
    ("2002:a9fe:a9fe::1", "a link-local address (where cloud metadata services answer)"),
    ("64:ff9b::a00:1", "a private-network address"),  # NAT64 around 10.0.0.1
    ("::7f00:1", "a reserved address"),  # IPv4-compatible ::127.0.0.1
    ("fec0::1", "a private-network address"),  # the old site-local
    # and the ones it already calls private, with the name a merchant understands
    ("fd00:ec2::254", "a private-network address"), ("100.100.100.200", "a private-network address"),
    ("192.0.2.10", "a reserved address"), ("2001:db8::1", "a reserved address"), ("198.18.0.1", "a reserved address"),
])
@pytest.mark.sqlite_only  # the address rule and the refusal before any write: the same on every engine
def test_each_address_is_judged_by_what_it_reaches(address, kind):
    assert address_kind(ipaddress.ip_address(address)) == kind


@pytest.mark.sqlite_only  # the address rule and the refusal before any write: the same on every engine
@pytest.mark.parametrize("url,named,kind", REFUSED)
def test_a_url_aimed_at_the_servers_own_network_is_refused_when_saved(url, named, kind, guarded):
    # when
    with pytest.raises(BadInput) as refused:
        endpoint_create(url=url, events=["order.paid"], actor="test")
    # then: the message names the field, the address, what it is and the fix
    message = str(refused.value)
    assert message.startswith("url: ") and named in message and kind in message
    assert OPT_OUT in message and "public address" in message
    assert refused.value.details == {"fields": {"url": "not public"}}
    assert Endpoint.objects.count() == 0


@pytest.mark.sqlite_only  # the address rule and the refusal before any write: the same on every engine
def test_a_change_of_url_is_checked_the_same_way(guarded):
    # given
    made = endpoint_create(url=f"https://{PUBLIC}/hooks", events=["order.paid"], actor="test")
    # when
    with pytest.raises(BadInput, match="169.254.169.254 is a link-local address"):
        endpoint_update(endpoint_id=made.endpoint.pk, url="http://169.254.169.254/latest/meta-data/", actor="test")
    # then
    assert Endpoint.objects.get().url == f"https://{PUBLIC}/hooks"


@pytest.mark.sqlite_only  # the address rule and the refusal before any write: the same on every engine
def test_a_name_is_refused_when_any_of_its_addresses_is_private(guarded, dns):
    # given: one public address and one private, as a name can have
    dns.answer("erp.shop.test", [PUBLIC, "10.0.0.7"])
    # then
    with pytest.raises(BadInput, match=r"erp\.shop\.test resolves to 10\.0\.0\.7, a private-network address"):
        endpoint_create(url="https://erp.shop.test/hooks", events=["order.paid"], actor="test")


@pytest.mark.sqlite_only  # the address rule and the refusal before any write: the same on every engine
def test_public_addresses_and_names_that_do_not_resolve_yet_are_accepted(guarded, dns):
    # given
    dns.answer("erp.shop.test", [PUBLIC, "2001:4860:4860::8888"])
    # when: a public name, public literals, and a name nobody can resolve (its DNS may not be live yet:
    # the check when sending decides)
    for url in ("https://erp.shop.test/hooks", f"https://{PUBLIC}:8443/k", "https://[2001:4860:4860::8888]/k",
                "https://erp.kami.invalid/hooks"):
        endpoint_create(url=url, events=["order.paid"], actor="test")
    # then
    assert Endpoint.objects.count() == 4


@pytest.mark.sqlite_only  # the address rule and the refusal before any write: the same on every engine
def test_the_opt_out_lets_own_networks_through_but_never_link_local_or_multicast(settings):
    # given
    settings.KAMI_WEBHOOK_ALLOW_PRIVATE = True
    # when
    for url, _, kind in REFUSED:
        if kind in OWN_NETWORK:
            endpoint_create(url=url, events=["order.paid"], actor="test")
        else:
            with pytest.raises(BadInput, match=f"Kami never posts there, not even with {OPT_OUT}"):
                endpoint_create(url=url, events=["order.paid"], actor="test")
    # then
    assert Endpoint.objects.count() == len([r for r in REFUSED if r[2] in OWN_NETWORK])
    assert address_refusal(ipaddress.ip_address("169.254.169.254"), allow_private=True) is not None


@pytest.mark.sqlite_only  # the address rule and the refusal before any write: the same on every engine
def test_the_merchant_api_answers_the_refusal(guarded):
    # given
    api = Api(api_token_create(name="erp", scopes="webhooks", actor="test").secret)
    # when
    metadata = api.post("/webhooks", {"url": "http://169.254.169.254/latest/meta-data/", "events": ["order.paid"]})
    database = api.post("/webhooks", {"url": "http://127.0.0.1:5432/", "events": ["order.paid"]})
    made = api.post("/webhooks", {"url": f"https://{PUBLIC}/hooks", "events": ["order.paid"]}).json()
    changed = api.patch(f"/webhooks/{made['id']}", {"url": "http://10.0.0.1/admin"})
    # then: 422 problems naming the address and the fix
    assert metadata.status_code == 422 and "169.254.169.254 is a link-local address" in metadata.json()["detail"]
    assert database.status_code == 422 and "127.0.0.1 is a loopback address" in database.json()["detail"]
    assert OPT_OUT in database.json()["detail"]
    assert changed.status_code == 422 and "10.0.0.1 is a private-network address" in changed.json()["detail"]
    assert list(Endpoint.objects.values_list("url", flat=True)) == [f"https://{PUBLIC}/hooks"]


@pytest.mark.sqlite_only  # the address rule and the refusal before any write: the same on every engine
def test_the_back_office_form_shows_the_refusal(guarded):
    # given
    client = signed_in("owner", "owner-ssrf")
    # when
    page = client.post(admin_url("webhooks/"), {"url": "http://[::1]:5432/", "events": ["order.paid"]}, follow=True)
    # then
    html = page.content.decode()
    assert "url: ::1 is a loopback address" in html.lower() and OPT_OUT in html
    assert Endpoint.objects.count() == 0


def test_a_name_that_turns_private_after_it_was_saved_is_refused_when_sending(receiver, dns, pay, guarded):
    # given: a name that was public when saved (its URL carries a token) ...
    dns.answer("hooks.rebind.test", [PUBLIC])
    made = endpoint_create(url=f"http://hooks.rebind.test:{receiver.port}/hooks/kami?token=path-s3cret",
                           events=["order.paid"], actor="test")
    receiver.secrets.append(made.secret)
    # ... and answers 127.0.0.1, where the receiver listens, when the event is sent
    dns.answer("hooks.rebind.test", ["127.0.0.1"])
    pay()
    # when
    run_once("test-worker")
    # then: nothing reached the receiver; the event failed for good, through the usual path
    assert receiver.raw == []
    [row] = webhook_rows()
    assert row.status == "manual" and row.attempts == 1
    assert "hooks.rebind.test resolves to 127.0.0.1, a loopback address" in row.last_error
    assert OPT_OUT in row.last_error and "s3cret" not in row.last_error and "/hooks/kami" not in row.last_error
    [attempt] = WebhookAttempt.objects.all()
    assert attempt.ok is False and attempt.http_status is None and "127.0.0.1, a loopback address" in attempt.error
    endpoint = Endpoint.objects.get()
    assert endpoint.enabled is False and "a loopback address" in endpoint.disabled_reason
    alerts = OutboxMessage.objects.filter(kind="admin_alert")
    assert [a.payload["event"] for a in alerts] == ["webhook_disabled"]
    assert "s3cret" not in str(alerts[0].payload)
    # and the name was looked up once for the send: the check and the connection used one answer
    assert dns.asked["hooks.rebind.test"] == 1


def test_the_connection_goes_to_the_address_that_was_checked(receiver, dns, pay, settings):
    # given: the opt-out on; a name answering the receiver's 127.0.0.1 once, then 127.0.0.2, where
    # nothing listens (a client that connected by name after checking would land there and fail)
    settings.KAMI_WEBHOOK_ALLOW_PRIVATE = True
    dns.answer("hooks.rebind.test", ["127.0.0.1"])
    made = endpoint_create(url=f"http://hooks.rebind.test:{receiver.port}/hooks/kami", events=["order.paid"],
                           actor="test")
    receiver.secrets.append(made.secret)
    dns.answer("hooks.rebind.test", ["127.0.0.1"], ["127.0.0.2"])
    pay()
    # when
    run_once("test-worker")
    # then: the receiver got it, addressed by name
    assert receiver.types() == ["order.paid"] and receiver.rejected == []
    assert receiver.raw[0][0]["Host"] == f"hooks.rebind.test:{receiver.port}"
    assert dns.asked["hooks.rebind.test"] == 1


def test_an_endpoint_saved_with_a_loopback_url_is_refused_when_sending(receiver, hook, pay, settings):
    # given: an endpoint made while the opt-out was on, which is then turned off
    hook(events=["order.paid"])
    settings.KAMI_WEBHOOK_ALLOW_PRIVATE = False
    pay()
    # when
    run_once("test-worker")
    # then
    assert receiver.raw == []
    [row] = webhook_rows()
    assert row.status == "manual" and "127.0.0.1 is a loopback address" in row.last_error


def test_the_opt_out_lets_a_loopback_endpoint_receive_a_real_post(settings, pay):
    # given: a receiver on this machine, addressed by name
    settings.KAMI_WEBHOOK_ALLOW_PRIVATE = True
    local = Receiver().start()
    try:
        url = f"http://localhost:{local.port}/hooks/kami"
        local.secrets.append(endpoint_create(url=url, events=["order.paid"], actor="test").secret)
        pay()
        # when
        run_once("test-worker")
        # then
        assert local.types() == ["order.paid"] and [r.status for r in webhook_rows()] == ["sent"]
    finally:
        local.stop()


def test_a_redirect_is_not_followed(receiver, hook, pay):
    # given: the endpoint answers 302 towards another loopback server (the opt-out is on for both)
    elsewhere = Receiver().start()
    try:
        hook(events=["order.paid"])
        receiver.redirect_to = f"{elsewhere.url}?from=redirect"
        pay()
        # when
        run_once("test-worker")
        # then: the 302 is a failed try, retried later; the other server heard nothing
        [row] = webhook_rows()
        assert row.status == "failed" and "HTTP 302" in row.last_error
        assert elsewhere.raw == []
    finally:
        elsewhere.stop()


def test_a_proxy_from_the_environment_is_not_used(receiver, hook, pay, monkeypatch):
    # given: HTTP(S)_PROXY pointing at another server, which would resolve and connect unchecked
    proxy = Receiver().start()
    try:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        hook(events=["order.paid"])
        pay()
        # when
        run_once("test-worker")
        # then: straight to the endpoint
        assert receiver.types() == ["order.paid"] and proxy.raw == []
    finally:
        proxy.stop()


def tls_server_context(tmp_path, *, name: str) -> ssl.SSLContext:
    """A server context whose certificate, for `name`, is signed by a CA written to
    tmp_path/ca.pem (the file SSL_CERT_FILE points clients at)."""
    now = datetime.datetime.now(datetime.timezone.utc)

    def issue(subject, key, issuer, issuer_key, *, ca: bool):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(hours=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            builder = builder.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                            critical=True)
        else:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Kami test CA")])
    ca = issue(ca_name, ca_key, ca_name, ca_key, ca=True)
    leaf = issue(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), leaf_key, ca_name, ca_key, ca=False)
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM) + leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "leaf.pem")
    return context


@pytest.mark.parametrize("certified", ["hooks.tls.test", "someone-else.test"])
def test_https_to_the_checked_address_still_verifies_the_certificate_for_the_name(certified, dns, pay, settings,
                                                                                  tmp_path, monkeypatch):
    # given: an https receiver on loopback (opt-out on) with a certificate for `certified`, its CA trusted,
    # and the endpoint's name answering 127.0.0.1
    settings.KAMI_WEBHOOK_ALLOW_PRIVATE = True
    local = Receiver(tls=tls_server_context(tmp_path, name=certified)).start()
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    try:
        dns.answer("hooks.tls.test", ["127.0.0.1"])
        made = endpoint_create(url=f"https://hooks.tls.test:{local.port}/hooks/kami", events=["order.paid"],
                               actor="test")
        local.secrets.append(made.secret)
        pay()
        # when
        run_once("test-worker")
        # then: TLS asked for the name (SNI) on the pinned connection, and the certificate was checked against it
        [row] = webhook_rows()
        assert local.sni[:1] == ["hooks.tls.test"]
        if certified == "hooks.tls.test":
            assert row.status == "sent" and local.types() == ["order.paid"]
        else:
            assert row.status == "failed" and "ConnectError" in row.last_error and local.raw == []
    finally:
        local.stop()
