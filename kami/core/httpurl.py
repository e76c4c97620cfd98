"""An http(s) URL the merchant gives Kami to call (a webhook endpoint, a mint URL): checked once,
where it is set, with a message naming the setting and an example of a good one."""
from __future__ import annotations

from urllib.parse import urlsplit

from kami.core.errors import BadInput

URL_MAX = 500  # the columns that keep these URLs


def http_url_checked(url: str, *, field: str, example: str) -> str:
    """`url` stripped; "" stays "". BadInput (fields={field: …}) unless it is http(s) with a host."""
    url = (url or "").strip()
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        parts, port_ok = None, False
    if not parts or parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise BadInput(f"{field}: {url[:80]!r} is not an http(s) URL; give e.g. {example}", fields={field: "invalid"})
    if len(url) > URL_MAX:
        raise BadInput(f"{field}: {len(url)} characters; keep it under {URL_MAX}", fields={field: "too long"})
    return url
