"""The one rule for gateway API addresses that a merchant types in (Epay, Epusdt, TokenPay):
https, because secrets travel in those requests (Epay's merchant key in the query string, as
its protocol requires) and their answers decide that an order is paid. Plain http is allowed
only to a loopback address outside production: a local instance or a test's fake."""
from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from django.conf import settings


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_url_problem(*, gateway: str, setting: str, url: str) -> str | None:
    """What is wrong with `url` as the gateway's API address, as a sentence saying what to do;
    None when it may be used."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and not settings.PRODUCTION and _loopback(parts.hostname or ""):
        return None
    where = "in production (KAMI_ENV=production)" if settings.PRODUCTION else "except to this machine (127.0.0.1)"
    return (f"{gateway}: {setting} {url!r} must start with https:// — plain http is refused {where}, because "
            f"the requests carry the {gateway} secret and the answers decide what is paid "
            f"(kami gateway set {gateway} {setting}=https://…)")
