"""Who is asking: the one rule for client addresses and forwarding headers (docs/security.md).

Behind a reverse proxy every request arrives from the proxy's address; the proxy names the
real client in `X-Forwarded-For` and the scheme in `X-Forwarded-Proto`. Those headers are
believed only from a peer listed in KAMI_TRUSTED_PROXIES (addresses or CIDRs). From anyone
else `ForwardedHeadersMiddleware` removes them before any view or middleware reads them,
whatever WSGI server runs Kami: a forged header changes nothing.

Every per-IP rule (pending orders, lookup limits, sign-in lockouts, audit rows, stored
notifications) asks `client_ip(request)`; nothing else reads REMOTE_ADDR.
"""
from __future__ import annotations

import functools
import ipaddress

from django.conf import settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST",
                      "HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_BY", "HTTP_X_REAL_IP", "HTTP_FORWARDED")
_FORWARDING_NAMES = frozenset(name[5:].replace("_", "-").title() for name in FORWARDING_HEADERS)  # X-Forwarded-For…
_UNTRUSTED_MARK = "kami.forwarded_by_untrusted_peer"


def trusted_networks_parse(text: str) -> tuple[Network, ...]:
    """KAMI_TRUSTED_PROXIES: comma-separated addresses or CIDRs (`127.0.0.1`, `10.0.0.0/8`, `::1`)."""
    networks = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"KAMI_TRUSTED_PROXIES: {item!r} is not an address or a CIDR "
                             "(examples: 127.0.0.1, 10.0.0.0/8, ::1)") from None
    return tuple(networks)


def _address(text: str) -> Address | None:
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    return (ip.ipv4_mapped or ip) if ip.version == 6 else ip


def _trusted(text: str) -> bool:
    return _trusted_among(text, settings.KAMI_TRUSTED_PROXIES)


@functools.lru_cache(maxsize=4096)
def _trusted_among(text: str, networks: tuple[Network, ...]) -> bool:
    """Remembered per address and setting: every request asks it of its peer, once or twice."""
    ip = _address(text)
    return ip is not None and any(ip in network for network in networks)


def client_ip(request) -> str:
    """The client's address: the peer's, or behind trusted proxies the first address in
    X-Forwarded-For, read from the right, that is not itself a trusted proxy. "" when unknown."""
    return client_ip_of(request.META.get("REMOTE_ADDR", ""), request.META.get("HTTP_X_FORWARDED_FOR", ""))


def client_ip_of(peer: str, forwarded_for: str) -> str:
    """`client_ip` from the peer's address and the X-Forwarded-For header as sent (an edge that has
    no Django request: kami/asgi.py)."""
    client = peer
    if not _trusted(client):
        return client
    for hop in reversed(forwarded_for.split(",")):
        if _address(hop) is None:
            break  # malformed: the last address a trusted proxy vouched for stands
        client = hop.strip()
        if not _trusted(client):
            break
    return client


def forwarding_believed(peer: str, headers: dict[str, str]) -> dict[str, str]:
    """`headers` (names as Django shows them: X-Forwarded-For) as ForwardedHeadersMiddleware leaves
    them: without the forwarding headers unless `peer` is a trusted proxy (kami/asgi.py)."""
    if _trusted(peer):
        return headers
    return {name: value for name, value in headers.items() if name not in _FORWARDING_NAMES}


def loopback_client(request) -> bool:
    """This machine is asking (127.0.0.0/8 or ::1), and no proxy we do not trust relayed the
    request: a reverse proxy on this host that KAMI_TRUSTED_PROXIES does not name still sends
    X-Forwarded-For, so its visitors are not taken for local ones."""
    relayed = request.META.get(_UNTRUSTED_MARK) or (
        not _trusted(request.META.get("REMOTE_ADDR", "")) and any(h in request.META for h in FORWARDING_HEADERS))
    ip = _address(client_ip(request))
    return not relayed and ip is not None and ip.is_loopback


class ForwardedHeadersMiddleware:
    """First in MIDDLEWARE: forwarding headers from an untrusted peer are removed, so Django's
    `request.is_secure()` (SECURE_PROXY_SSL_HEADER) and everything after believe only trusted proxies."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not _trusted(request.META.get("REMOTE_ADDR", "")):
            dropped = [name for name in FORWARDING_HEADERS if request.META.pop(name, None) is not None]
            if dropped:
                request.META[_UNTRUSTED_MARK] = True
        return self.get_response(request)
