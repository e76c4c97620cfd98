"""The gateways' shared plumbing (kami/payments/toolkit.py), where its rules are sharper than any
one gateway's tests show: each is also exercised through every gateway using it."""
from __future__ import annotations

import logging

import pytest

from kami.core.errors import BadInput, KamiError, VerificationFailed
from kami.core.inbound import FORM, Inbound
from kami.payments import toolkit

pytestmark = pytest.mark.sqlite_only  # gateway plumbing: parsing and signatures, the same on every engine


def test_md5_recipes_sort_by_name_or_by_the_whole_pair():
    # given two names, one the prefix of the other ('=' sorts after '1')
    fields = {"a1": "2", "a": "1", "sign": "x", "empty": "", "null": None}
    # when / then: Epay and TokenPay sort by name, Epusdt by the k=v token; unsigned and empty skipped
    assert toolkit.signed_pairs(fields, unsigned=("sign",)) == "a=1&a1=2"
    assert toolkit.signed_pairs(fields, unsigned=("sign",), by_pair=True) == "a1=2&a=1"


@pytest.mark.parametrize("given, same", [("ABC123", True), ("abc123", True), ("abc12", False), ("", False),
                                         (None, False), (["abc123"], False), ("äbc123", False)])
def test_a_signature_is_compared_case_blind_and_never_raises(given, same):
    # given / when / then
    assert toolkit.same_signature("abc123", given) is same


@pytest.mark.parametrize("url", ["pay.example", "ftp://pay.example/", "https://pay.example/?pid=1", "https://pay.example/#x"])
def test_a_url_setting_must_be_a_plain_http_address(url):
    # given / when / then
    with pytest.raises(BadInput, match=r"^demo: url '.*' should be the site's address$"):
        toolkit.url_checked(url, gateway="demo", setting="url", should="the site's address")


def test_an_api_url_that_secrets_travel_to_must_be_https_except_to_this_machine():
    # given / when / then
    assert toolkit.api_url_checked(" http://127.0.0.1:8080 ", gateway="demo", setting="url", should="x") == "http://127.0.0.1:8080"
    with pytest.raises(BadInput, match="must start with https://"):
        toolkit.api_url_checked("http://pay.example", gateway="demo", setting="url", should="x")
    with pytest.raises(KamiError, match="must start with https://") as refused:
        toolkit.api_url_required("http://pay.example", gateway="demo")
    assert refused.value.code == "gateway_misconfigured"
    assert toolkit.api_url_problems("https://pay.example", gateway="demo") == []


@pytest.mark.parametrize("body, error", [(b'{"a": "1", "a": "2"}', "not the JSON"), (b'{"a": NaN}', "not the JSON"),
                                         (b'{"a": [1]}', "is a list"), (b'["a"]', "not a JSON object")])
def test_json_fields_refuse_what_could_be_picked_from_or_coerced(body, error):
    # given / when / then
    with pytest.raises(VerificationFailed, match=error):
        toolkit.json_fields(body, sender="Demo")


def test_json_fields_keep_numbers_as_the_text_that_was_signed():
    # given / when
    fields = toolkit.json_fields(b'{"amount": 29.90, "count": 2, "ok": true, "note": null}', sender="Demo")
    # then
    assert fields == {"amount": "29.90", "count": "2", "ok": "true", "note": None}


def test_form_fields_sent_twice_are_refused_and_arrays_when_the_sender_never_sends_them():
    # given
    twice = Inbound(method="POST", headers={"content-type": FORM}, query="money=1", body=b"money=2")
    array = Inbound(method="GET", query="money%5B%5D=1")
    # when / then
    with pytest.raises(VerificationFailed, match="more than once"):
        toolkit.single_values(twice)
    assert toolkit.single_values(array) == {"money[]": "1"}
    with pytest.raises(VerificationFailed, match="is an array: Epay sends single values only"):
        toolkit.single_values(array, arrays_refused_by="Epay")


def test_a_secret_in_a_url_is_masked_in_httpx_log_lines_by_one_filter(caplog):
    # given: the redaction installed twice under one name
    toolkit.httpx_log_redact("test token", r"(token=)[^&\s]*", r"\1[redacted]")
    toolkit.httpx_log_redact("test token", r"(token=)[^&\s]*", r"\1[redacted]")
    logger = logging.getLogger("httpx")
    ours = [f for f in logger.filters if isinstance(f, toolkit.HttpxRedaction) and f.redaction == "test token"]
    try:
        # when
        with caplog.at_level(logging.INFO, logger="httpx"):
            logger.info("HTTP Request: %s %s", "GET", "https://api.example/q?token=s3cret&x=1")
    finally:
        for installed in ours:
            logger.removeFilter(installed)
    # then
    assert len(ours) == 1
    assert "s3cret" not in caplog.text and "token=[redacted]&x=1" in caplog.text
