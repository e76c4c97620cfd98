"""A request as plain values (kami/core/inbound.py) and the edge's two conversions (kami/core/edge.py):
what the gateways and the notification path read instead of an HttpRequest."""
from __future__ import annotations

import pytest
from django.test import RequestFactory

from kami.core.edge import inbound_from, response_from
from kami.core.errors import VerificationFailed
from kami.core.inbound import FIELDS_MAX, FORM, Inbound, Reply

pytestmark = pytest.mark.sqlite_only  # no database


def test_header_names_are_looked_up_in_any_case_and_kept_as_sent():
    # given
    inbound = Inbound(method="POST", headers={"Wechatpay-Signature": "sig", "content-type": "application/json"})
    # when / then
    assert inbound.headers["WECHATPAY-SIGNATURE"] == inbound.headers.get("wechatpay-signature") == "sig"
    assert "Content-Type" in inbound.headers and inbound.content_type == "application/json"
    assert inbound.headers.get("X-Missing", "") == ""
    assert list(inbound.headers) == ["Wechatpay-Signature", "content-type"]


def test_query_and_form_are_read_as_django_reads_them():
    # given: percent escapes in UTF-8, a blank value, a name twice, a form with a charset
    inbound = Inbound(method="POST", headers={"Content-Type": f"{FORM}; charset=UTF-8"},
                      query="name=%E6%B5%8B%E8%AF%95&blank=&a=1&a=2", body=b"money=29.90&sign=")
    # when / then
    assert inbound.query_params() == [("name", "测试"), ("blank", ""), ("a", "1"), ("a", "2")]
    assert inbound.form_params() == [("money", "29.90"), ("sign", "")]
    assert inbound.params() == inbound.query_params() + inbound.form_params()
    # and: a body that is not UTF-8 is read as Latin-1, a bad escape replaced (neither ever a 500)
    latin = Inbound(method="POST", headers={"Content-Type": FORM}, body=b"pid=\xa0\xa1&name=%B2%E2")
    assert latin.form_params() == [("pid", "\xa0\xa1"), ("name", "\ufffd\ufffd")]


def test_only_a_posted_urlencoded_form_is_a_form():
    # given / when / then
    assert Inbound(method="GET", headers={"Content-Type": FORM}, body=b"a=1").form_params() == []
    assert Inbound(method="POST", headers={"Content-Type": "application/json"}, body=b'{"a": 1}').form_params() == []
    assert Inbound(method="POST", body=b"a=1").form_params() == []


@pytest.mark.parametrize("content_type, error", [
    (f"{FORM}; charset=gbk", "a form in gbk"),
    ("multipart/form-data; boundary=x", "multipart"),
])
def test_forms_no_gateway_sends_are_refused_as_malformed(content_type, error):
    inbound = Inbound(method="POST", headers={"Content-Type": content_type}, body=b"pid=1001&money=29.90")
    with pytest.raises(VerificationFailed, match=error):
        inbound.form_params()


def test_more_fields_than_django_takes_are_refused():
    many = "&".join(f"f{i}=1" for i in range(FIELDS_MAX + 1))
    assert len(Inbound(method="GET", query=many[:many.rindex("&")]).query_params()) == FIELDS_MAX
    with pytest.raises(VerificationFailed, match="more than 1000 fields"):
        Inbound(method="GET", query=many).query_params()


def test_repr_shows_no_value():
    # given: a secret in a header, the query and the body
    inbound = Inbound(method="POST", headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret-header"},
                      query="key=s3cret-query", body=b'{"key": "s3cret-body"}', remote_addr="192.0.2.1")
    # when
    shown = repr(inbound)
    # then
    assert "s3cret" not in shown
    assert "X-Telegram-Bot-Api-Secret-Token" in shown and "192.0.2.1" in shown


def test_the_edge_converts_a_django_request_and_a_reply():
    # given: a GBK-encoded query (not UTF-8), a header, a body, a sender
    request = RequestFactory().post("/pay/epay/notify", data=b"money=1.00", content_type=FORM,
                                    QUERY_STRING=b"name=\xb2\xe2&pid=1001".decode("iso-8859-1"),
                                    HTTP_X_SANDBOX_SIGNATURE="abc", REMOTE_ADDR="192.0.2.7")
    # when
    inbound = inbound_from(request)
    response = response_from(Reply(status_code=400, content=b"fail", content_type="text/plain"))
    # then
    assert (inbound.method, inbound.body, inbound.remote_addr) == ("POST", b"money=1.00", "192.0.2.7")
    assert inbound.query == "name=\xb2\xe2&pid=1001"  # as Django reads it: Latin-1 when not UTF-8
    assert inbound.headers["x-sandbox-signature"] == "abc"
    assert inbound.params() == [("name", "\xb2\xe2"), ("pid", "1001"), ("money", "1.00")]
    assert (response.status_code, response.content, response["Content-Type"]) == (400, b"fail", "text/plain")
