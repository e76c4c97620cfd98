"""A request and its answer as plain values, for the code that must not speak HTTP.

Gateway modules and the notification path (`kami.fulfilment.notify`) take an `Inbound`: what an
edge read off the wire (method, headers, the raw query string, the raw body, the sender's
address), and give back a `Reply` (status, body, content type) that the edge turns into its own
response. An edge converts a Django request with `kami.core.edge.inbound_from`; the storefront's
sandbox page and the Telegram bot's long polling build one directly, with no fake request.

Parsing stays here, once, with Django's rules where they matter to a signature (UTF-8 with a
Latin-1 fallback, blank values kept, at most FIELDS_MAX fields): a query or form that cannot be
read is `VerificationFailed`, so the notification path stores it and refuses it, never a 500.
Nothing here imports django.http (tests/payments/test_import_contracts.py checks it).
"""
from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from kami.core.errors import VerificationFailed

FORM = "application/x-www-form-urlencoded"
FIELDS_MAX = 1000  # Django's DATA_UPLOAD_MAX_NUMBER_FIELDS default: more is refused, not parsed


class Headers(Mapping):
    """Header names as they were sent, looked up in any case (HTTP names are case-insensitive)."""

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()):
        pairs = list(items.items() if isinstance(items, Mapping) else items)
        self._sent = dict(pairs)
        self._folded = {name.lower(): value for name, value in pairs}

    def __getitem__(self, name: str) -> str:
        return self._folded[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._sent)

    def __len__(self) -> int:
        return len(self._sent)

    def __repr__(self) -> str:  # names only: a header may carry a secret (Telegram's secret token)
        return f"Headers({list(self._sent)!r})"


@dataclass(frozen=True, eq=False)
class Inbound:
    """One request as it arrived. `query` is the raw query string (percent-encoded, as sent),
    `body` the raw bytes; `remote_addr` the sender as `kami.core.net.client_ip` decided it."""

    method: str
    headers: Mapping[str, str] = field(default_factory=Headers)
    query: str = ""
    body: bytes = b""
    remote_addr: str = ""

    def __post_init__(self):
        if not isinstance(self.headers, Headers):
            object.__setattr__(self, "headers", Headers(self.headers))

    def __repr__(self) -> str:  # no values: a query, a body or a header may carry a secret
        return (f"Inbound({self.method} from {self.remote_addr or '?'}, {self.headers!r}, "
                f"query {len(self.query)} characters, body {len(self.body)} bytes)")

    @property
    def content_type(self) -> str:
        """The media type, lower case, without its parameters."""
        return self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()

    def query_params(self) -> list[tuple[str, str]]:
        """The query string's (name, value) pairs, in order, a name sent twice kept twice."""
        return _pairs(self.query, what="query string")

    def form_params(self) -> list[tuple[str, str]]:
        """The body's (name, value) pairs when it is a form (a POST, form-urlencoded in UTF-8);
        [] for any other body. A multipart body or a form in another charset is refused: no
        gateway sends one, and guessing at what was signed is how checks get bypassed."""
        if self.method != "POST":
            return []
        if self.content_type == "multipart/form-data":
            raise VerificationFailed("malformed notification: a multipart body (gateways post form fields urlencoded)")
        if self.content_type != FORM:
            return []
        charset = _charset(self.headers.get("Content-Type", ""))
        if charset not in ("", "utf-8"):
            raise VerificationFailed(f"malformed notification: a form in {charset[:20]} (forms are UTF-8)")
        return _pairs(self.body, what="form")

    def params(self) -> list[tuple[str, str]]:
        """Query then form pairs: every parameter the request carries."""
        return self.query_params() + self.form_params()


@dataclass(frozen=True)
class Reply:
    """The answer the sender expects, as plain values; the names are Django's, so an edge (and a
    test) reads it like a response."""

    status_code: int = 200
    content: bytes = b""
    content_type: str = ""  # "": the edge's default


def _charset(content_type: str) -> str:
    """The charset parameter, normalised by Python's codec names; "" when absent or unknown."""
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            try:
                return codecs.lookup(value.strip().strip('"')).name
            except LookupError:
                return ""
    return ""


def _pairs(raw: str | bytes, *, what: str) -> list[tuple[str, str]]:
    """Django's QueryDict rules: bytes read as UTF-8 (Latin-1 when that fails), percent escapes as
    UTF-8 with replacement, blank values kept, more than FIELDS_MAX fields refused."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raw = raw.decode("iso-8859-1")
    try:
        return parse_qsl(raw, keep_blank_values=True, encoding="utf-8", max_num_fields=FIELDS_MAX)
    except ValueError:
        raise VerificationFailed(f"malformed notification: the {what} has more than {FIELDS_MAX} fields") from None
