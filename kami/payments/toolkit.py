"""The plumbing every gateway module would otherwise write again: checking a URL setting,
talking HTTP with trouble mapped to Kami's errors, MD5 and RSA-SHA256 signatures, reading a
notification's fields as single values, the plain-text acknowledgement, keeping secrets out
of httpx's log.

Each gateway keeps its protocol (field names, recipes, messages naming the fix, acknowledgement
bodies) and calls these for the rest. Gateway modules import this module and `interface`,
never each other and never a model (the import contracts in pyproject.toml check both). It
lives beside the `gateways` package, not in it: every module there is a gateway to the registry.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Collection
from urllib.parse import urlsplit

import httpx
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from kami.core import money
from kami.core.errors import BadInput, KamiError, Retryable, VerificationFailed
from kami.payments.https import api_url_problem
from kami.payments.interface import Inbound, Notice, OrderInfo, PaymentAction, Reply

TIMEOUT_SECONDS = 10

# -- URL settings ----------------------------------------------------------------------------


def url_checked(url: str, *, gateway: str, setting: str, should: str) -> str:
    """`url` stripped, once it is an http(s) address with a host and no query or fragment;
    otherwise BadInput "<gateway>: <setting> '<url>' should be <should>"."""
    url = str(url).strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise BadInput(f"{gateway}: {setting} {url[:80]!r} should be {should}")
    return url


def api_url_checked(url: str, *, gateway: str, setting: str, should: str) -> str:
    """`url_checked`, and https (`kami.payments.https`): for a merchant-typed API address that
    secrets travel to. Used as settings are saved."""
    url = url_checked(url, gateway=gateway, setting=setting, should=should)
    problem = api_url_problem(gateway=gateway, setting=setting, url=url)
    if problem:
        raise BadInput(problem)
    return url


def config_stripped(config: dict, names: Collection[str] | None = None) -> dict:
    """A copy of settings being saved, the text of `names` (of every text value when None) stripped
    of the blanks a paste brings along."""
    return {k: (str(v).strip() if (k in names if names is not None else isinstance(v, str)) else v)
            for k, v in config.items()}


def instance_config_clean(config: dict, *, gateway: str, text: Collection[str], should: str,
                          currency: str = "currency") -> dict:
    """What a self-hosted instance's settings share (Epusdt, TokenPay): `text` stripped, `url` its
    API address (https, `api_url_checked`) with no trailing slash, `currency` (the setting of
    that name) a currency code. The gateway checks its own settings after."""
    config = config_stripped(config, text)
    if config.get("url"):
        config["url"] = api_url_checked(config["url"], gateway=gateway, setting="url", should=should).rstrip("/")
    if config.get(currency):
        config[currency] = money.parse_currency(config[currency])
    return config


def api_url_problems(url: str, *, gateway: str, setting: str = "url") -> list[str]:
    """The https rule as `Gateway.check()` reports it: [] or one sentence saying what to fix."""
    problem = api_url_problem(gateway=gateway, setting=setting, url=url)
    return [problem] if problem else []


def api_url_required(url: str, *, gateway: str, setting: str = "url") -> None:
    """Just before a secret travels: refuse a URL stored before the https rule, or one that
    became wrong when production was switched on since."""
    problem = api_url_problem(gateway=gateway, setting=setting, url=url)
    if problem:
        raise KamiError(problem, code="gateway_misconfigured")


# -- HTTP ------------------------------------------------------------------------------------


def http_send(method: str, url: str, *, what: str, timeout: float = TIMEOUT_SECONDS, **kwargs) -> httpx.Response:
    """One request; a connection that fails or times out is Retryable, saying with whom."""
    try:
        return httpx.request(method, url, timeout=timeout, **kwargs)
    except httpx.HTTPError as exc:
        raise Retryable(f"{what}: {type(exc).__name__} talking to {urlsplit(url).netloc}; will retry") from None


def retry_on_trouble(response: httpx.Response, *, what: str, who: str = "", also: Collection[int] = ()) -> None:
    """A server error (5xx, and `also`: 429 where the gateway rate-limits) is Retryable."""
    status = response.status_code
    if status >= 500 or status in also:
        answered = f"{who} answered HTTP {status}" if who else f"HTTP {status}"
        raise Retryable(f"{what}: {answered}; will retry")


def json_with_number(fields: dict, name: str, number: str, *, ensure_ascii: bool = True) -> bytes:
    """A JSON object of `fields` plus `name` as a JSON number written exactly as `number`: the
    text that was signed (json.dumps would print a Decimal as a string, a float as it likes)."""
    return (json.dumps(fields, ensure_ascii=ensure_ascii)[:-1] + f', "{name}": {number}}}').encode()


def redirect_action(url: object, ref: object, *, what: str, missing: str) -> PaymentAction:
    """The pay page a create answer names, and the gateway's id for the payment; a KamiError
    "<what>: the answer has no <missing>" when either is not there."""
    if not isinstance(url, str) or not url.startswith(("https://", "http://")) or not isinstance(ref, str) or not ref:
        raise KamiError(f"{what}: the answer has no {missing}", code="gateway_refused")
    return PaymentAction(type="redirect", url=url, gateway_ref=ref)


def json_answer(response: httpx.Response, *, what: str, refused: str, numbers_as_text: bool = False) -> dict:
    """The answer's JSON object (numbers as the text they were sent as, with `numbers_as_text`);
    anything else is a KamiError "<what>: <refused>" naming what to check."""
    extra = {"parse_float": str, "parse_int": str} if numbers_as_text else {}
    try:
        answer = json.loads(response.content, **extra)
    except (ValueError, RecursionError):
        answer = None
    if not isinstance(answer, dict):
        raise KamiError(f"{what}: {refused}", code="gateway_refused")
    return answer


# -- signatures ------------------------------------------------------------------------------


def md5_hex(text: str) -> str:
    """MD5 as lowercase hex, of text as the sender encodes it (lone surrogates kept, not refused)."""
    return hashlib.md5(text.encode("utf-8", "surrogatepass")).hexdigest()


def signed_pairs(fields: dict, *, unsigned: Collection[str], by_pair: bool = False) -> str:
    """The `k=v&k=v` text MD5 recipes sign: every field but `unsigned`, empty and null values
    skipped, sorted by name (or, `by_pair`, by the whole `k=v` token as some servers do)."""
    pairs = [(k, f"{k}={v}") for k, v in fields.items() if k not in unsigned and v not in ("", None)]
    return "&".join(token for _, token in sorted(pairs, key=lambda p: p[1] if by_pair else p[0]))


def same_signature(expected: str, given: object) -> bool:
    """`given` (any case: senders differ) equals `expected`, compared in constant time, as bytes:
    compare_digest refuses non-ASCII str, and a field is whatever the sender put there."""
    if not isinstance(given, str) or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.lower().encode("utf-8", "replace"))


def secret_text(secrets: dict, name: str) -> str:
    """A secret as text, or "" when it is missing or blank: a blank key signs nothing."""
    value = secrets.get(name, "")
    return value if isinstance(value, str) and value.strip() else ""


def secret_required(secrets: dict, name: str, *, gateway: str) -> str:
    """The secret a request is about to be signed with; KamiError naming the command when blank."""
    value = secret_text(secrets, name)
    if not value:
        raise KamiError(f"{gateway} {name} is empty: `kami gateway set {gateway} {name}=…`", code="gateway_misconfigured")
    return value


def rsa_sha256_sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    """SHA256withRSA (PKCS#1 v1.5), base64: Alipay's RSA2 and WeChat Pay v3's signature."""
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa_sha256_verify(key: rsa.RSAPublicKey, message: bytes, signature: str) -> bool:
    try:
        key.verify(base64.b64decode(signature, validate=True), message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def rsa_private_key(data: bytes, *, pem: bool, name: str, fix: str) -> rsa.RSAPrivateKey:
    """An RSA private key from PEM (`pem`) or DER bytes; BadInput "<name> does not load: <fix>"."""
    try:
        key = serialization.load_pem_private_key(data, None) if pem else serialization.load_der_private_key(data, None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise BadInput(f"{name} does not load: {fix}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise BadInput(f"{name} is not an RSA key")
    return key


def rsa_public_key(data: bytes, *, pem: bool, name: str, fix: str) -> rsa.RSAPublicKey:
    """An RSA public key from PEM (`pem`) or DER bytes; BadInput "<name> does not load: <fix>"."""
    try:
        key = serialization.load_pem_public_key(data) if pem else serialization.load_der_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise BadInput(f"{name} does not load: {fix}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise BadInput(f"{name} is not an RSA key")
    return key


# -- reading notifications -------------------------------------------------------------------


def single_values(inbound: Inbound, *, arrays_refused_by: str = "") -> dict[str, str]:
    """Query and (for a POST) form parameters as one flat dict. A name sent twice (or in both the
    query and the form) is refused: picking one of the values is how an amount check gets
    bypassed. With `arrays_refused_by` (the sender's name), PHP array names (`money[]`) too."""
    params: dict[str, str] = {}
    for name, value in inbound.params():
        if arrays_refused_by and ("[" in name or "]" in name):
            raise VerificationFailed(f"field {name[:40]!r} is an array: {arrays_refused_by} sends single values only")
        if name in params:
            raise VerificationFailed(f"field {name[:40]!r} was sent more than once")
        params[name] = value
    return params


def json_fields(raw: bytes, *, sender: str) -> dict[str, str | None]:
    """A JSON object body as `{name: exact text}`: numbers keep the text they were sent as
    (what the sender signed), null stays None. A name sent twice, a list, an object, NaN or
    anything that is not a JSON object is refused: no signed value is ever picked or coerced."""
    try:
        data = json.loads(raw, parse_float=str, parse_int=str, parse_constant=_refuse_constant,
                          object_pairs_hook=no_duplicates)
    except (ValueError, RecursionError):
        raise VerificationFailed(f"malformed notification: the body is not the JSON {sender} sends") from None
    if not isinstance(data, dict):
        raise VerificationFailed("malformed notification: the body is not a JSON object")
    fields: dict[str, str | None] = {}
    for name, value in data.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif value is not None and not isinstance(value, str):
            raise VerificationFailed(f"malformed notification: field {name[:40]!r} is a {type(value).__name__}, "
                                     f"{sender} sends single values only")
        fields[name] = value
    return fields


def no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    """`object_pairs_hook` for json.loads: a name sent twice is refused, not picked from."""
    result = {}
    for name, value in pairs:
        if name in result:
            raise ValueError(f"field {name!r} sent twice")
        result[name] = value
    return result


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number")


def flat_notice(fields: dict, *, order_field: str, trade_field: str, amount_field: str, currency: str, paid: bool,
                what: str = "notification") -> Notice:
    """The Notice of a notification whose fields are flat text (Epay, Alipay, Epusdt, TokenPay):
    both ids present, the amount a price as text; anything else is VerificationFailed."""
    order_no, trade_no = fields.get(order_field) or "", fields.get(trade_field) or ""
    if not isinstance(order_no, str) or not isinstance(trade_no, str) or not order_no or not trade_no:
        raise VerificationFailed(f"malformed {what}: {order_field} and {trade_field} are required")
    try:
        amount = money.parse_amount(fields.get(amount_field), field=amount_field)
    except BadInput as exc:
        raise VerificationFailed(f"malformed {what}: {exc}") from None
    return Notice(order_no=order_no, trade_no=trade_no, amount=amount, currency=currency, paid=paid, raw=fields)


def currency_required(order: OrderInfo, currency: str, *, gateway: str) -> None:
    """A gateway that charges in one currency refuses an order in another, saying which."""
    if order.currency.upper() != currency:
        raise BadInput(f"{gateway} charges in {currency}, the order is in {order.currency}")


# -- acknowledging --------------------------------------------------------------------------


def text_reply(ok: bool, *, success: str) -> Reply:
    """The acknowledgement most protocols want: `success` (their word: "ok", "success") with
    HTTP 200 when taken, "fail" with HTTP 400 when not, as plain text."""
    return Reply(status_code=200 if ok else 400, content=(success if ok else "fail").encode(), content_type="text/plain")


# -- logs ------------------------------------------------------------------------------------


class HttpxRedaction(logging.Filter):
    """httpx logs every request URL at INFO: where a protocol puts a secret in the URL, the
    secret is replaced in the log record's arguments before anything formats it."""

    def __init__(self, name: str, pattern: re.Pattern, replacement: str):
        super().__init__()
        self.redaction, self.pattern, self.replacement = name, pattern, replacement

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.pattern.sub(self.replacement, str(a)) if self.pattern.search(str(a)) else a
                                for a in record.args)
        return True


def httpx_log_redact(name: str, pattern: str, replacement: str) -> None:
    """Install (once per process, by `name`) a redaction of `pattern` in httpx's log lines."""
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, HttpxRedaction) and f.redaction == name for f in logger.filters):
        logger.addFilter(HttpxRedaction(name, re.compile(pattern), replacement))
