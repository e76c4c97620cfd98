"""Where a merchant's URL may send Kami: public addresses only (server-side request forgery guard).

A webhook endpoint's URL is set by whoever holds the back office or an API token with the
`webhooks` scope, and Kami's server then POSTs to it and keeps an excerpt of the answer for them
to read. Aimed at 127.0.0.1:5432, at 169.254.169.254 (a cloud's metadata service, with its
credentials), at 10.x or at [::1], that would make the shop server fetch its own network for them.

So an address must be globally routable (`address_refusal`), checked twice:

- when the URL is saved (`url_target_checked`): a literal address, or every address its name
  resolves to now; the merchant learns at once, with the fix. A name that does not resolve is
  accepted: DNS may not be live yet, and the send-time check decides anyway.
- when sending (`checked_client`): the connection itself resolves the name, checks every address,
  and connects only to a checked one — never resolving again after the check, which is what a
  DNS-rebinding name (public when saved, 127.0.0.1 when sent) counts on. The URL, Host header,
  TLS SNI and certificate check keep the name; only the TCP connect is pinned. No proxy from the
  environment (a proxy would resolve and connect for us, unchecked) and no redirects.

KAMI_WEBHOOK_ALLOW_PRIVATE=1 (off by default) lets loopback and private networks through, for a
merchant whose receiver really runs on the shop's own network. Link-local (the metadata
service), multicast, unspecified and reserved addresses stay refused even then.
"""
from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import httpcore
import httpx
from django.conf import settings

from kami.core.errors import BadInput

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
OPT_OUT = "KAMI_WEBHOOK_ALLOW_PRIVATE=1"
# Reachable with the opt-out: the merchant's own network (RFC 1918, CGNAT 100.64/10, fc00::/7) and this host.
PRIVATE_KINDS = ("a loopback address", "a private-network address")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # the well-known prefix: the last 32 bits are an IPv4 address
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated IPv4-compatible addresses (::a.b.c.d)
# The merchant's own networks: RFC 1918, carrier-grade NAT (100.64/10) and unique-local IPv6 (fc00::/7).
_PRIVATE = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                                                    "fc00::/7"))


class TargetRefused(Exception):
    """The address a webhook would connect to is not public. The message names the host and
    address (never the URL's path or query, which may hold a token) and the fix."""


def address_kind(address: Address) -> str | None:
    """What makes `address` unfit to receive a webhook ("a loopback address", …), or None when it
    is globally routable. The IPv4 address inside an IPv4-mapped (::ffff:a.b.c.d), NAT64 or 6to4
    IPv6 address is judged as itself; `ipaddress` alone calls multicast and 6to4 addresses global
    and CGNAT (100.64/10) not private, so those are named here."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = address.ipv4_mapped or address.sixtofour or (
            ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None)
        if inner is not None:
            return address_kind(inner)
        if address in _V4_COMPATIBLE and not (address.is_loopback or address.is_unspecified):
            return "a reserved address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (where cloud metadata services answer)"
    if address.is_multicast:
        return "a multicast address"
    if any(address in network for network in _PRIVATE) or getattr(address, "is_site_local", False):
        return "a private-network address"
    return None if address.is_global else "a reserved address"


def address_refusal(address: Address, *, host: str = "", allow_private: bool | None = None) -> str | None:
    """Why Kami will not connect to `address` (`host` resolved to it; "" for a literal address),
    as a sentence naming the fix; None when it may."""
    kind = address_kind(address)
    allow = settings.KAMI_WEBHOOK_ALLOW_PRIVATE if allow_private is None else allow_private
    if kind is None or (kind in PRIVATE_KINDS and allow):
        return None
    what = f"{host} resolves to {address}, {kind}" if host and _parse(host) is None else f"{host or address} is {kind}"
    if kind in PRIVATE_KINDS:
        return (f"{what}: Kami posts only to public addresses; give your receiver's public address (or, if it "
                f"runs on the shop server's own network, the operator sets {OPT_OUT})")
    return f"{what}: Kami never posts there, not even with {OPT_OUT}; give a public address"


def _parse(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0) says nothing about the address
    except ValueError:
        return None


def resolved(host: str, port: int) -> list[Address]:
    """Every address `host` resolves to for a TCP connection (a literal address: itself), in the
    resolver's order. socket.gaierror when it does not resolve."""
    literal = _parse(host)
    if literal is not None:
        return [literal]
    found: list[Address] = []
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = _parse(sockaddr[0])
        if address is not None and address not in found:
            found.append(address)
    return found


def url_target_checked(url: str, *, field: str) -> None:
    """At save time: BadInput (fields={field: "not public"}) when the URL's host is, or resolves to,
    an address Kami will not post to. A name that does not resolve now passes (see the module)."""
    parts = urlsplit(url)  # as kami.core.httpurl read it: http(s), a host, a valid port
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = resolved(host, port)
    except (socket.gaierror, UnicodeError):
        return
    for address in addresses:
        refusal = address_refusal(address, host=host)
        if refusal:
            raise BadInput(f"{field}: {refusal}", fields={field: "not public"})


class _CheckedBackend(httpcore.SyncBackend):
    """httpcore's own sockets, but the name is resolved here, every address checked, and only a
    checked address connected to (each in turn, as socket.create_connection would)."""

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            addresses = resolved(host, port)
        except (socket.gaierror, UnicodeError) as exc:
            raise httpcore.ConnectError(f"{host} does not resolve ({exc})") from None
        for address in addresses:
            refusal = address_refusal(address, host=host)
            if refusal:
                raise TargetRefused(refusal)
        if not addresses:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        error: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(str(address), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error


class _CheckedTransport(httpx.HTTPTransport):
    """httpx's transport with the checked backend under its connection pool. httpx (0.29) takes
    no network backend (encode/httpx#3180), so the pool it built is replaced by an equal one."""

    def __init__(self) -> None:
        context = httpx.create_ssl_context()  # verified, honouring SSL_CERT_FILE / SSL_CERT_DIR as httpx does
        super().__init__(verify=context)
        if not isinstance(getattr(self, "_pool", None), httpcore.ConnectionPool):
            raise RuntimeError("httpx.HTTPTransport has no _pool to put the webhook address check under; "
                               "this httpx is not one kami.webhooks.egress knows")
        self._pool = httpcore.ConnectionPool(ssl_context=context, network_backend=_CheckedBackend())


def checked_client(*, timeout: float) -> httpx.Client:
    """A client for one call to a merchant's URL: every connection checked (TargetRefused), no
    environment proxy, no redirects followed. Close it (use it as a context manager)."""
    return httpx.Client(transport=_CheckedTransport(), trust_env=False, follow_redirects=False, timeout=timeout)
