"""The two conversions an HTTP edge makes around code that speaks no HTTP (`kami.core.inbound`):
a Django request into an `Inbound`, a `Reply` into a Django response. Every edge that hands a
request to the notification path (the notify view, the Telegram webhook) uses these two."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from kami.core.inbound import Inbound, Reply
from kami.core.net import client_ip


def inbound_from(request: HttpRequest) -> Inbound:
    """The request as plain values. The query string is read as Django reads it (WSGI gives its
    bytes as Latin-1 text: UTF-8 when they are, Latin-1 otherwise). A body larger than
    DATA_UPLOAD_MAX_MEMORY_SIZE raises RequestDataTooBig here, which Django answers with a 400."""
    query = request.META.get("QUERY_STRING", "")
    try:
        query = query_text(query.encode("iso-8859-1"))
    except UnicodeEncodeError:  # not WSGI's Latin-1 text: already decoded
        pass
    return Inbound(method=request.method or "", headers=dict(request.headers), query=query, body=request.body,
                   remote_addr=client_ip(request)[:64])


def query_text(raw: bytes) -> str:
    """A query string's bytes as Django reads them: UTF-8 when they are, Latin-1 otherwise."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("iso-8859-1")


def response_from(reply: Reply) -> HttpResponse:
    return HttpResponse(reply.content, status=reply.status_code, content_type=reply.content_type or None)
