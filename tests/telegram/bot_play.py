"""A loopback fake of the Telegram Bot API: POST /bot<token>/<method>, form-encoded or multipart,
answered as Telegram answers (`{"ok": true, "result": …}`), every call recorded. getUpdates hands
out the updates queued with `queue`; `fail_with` makes every call answer that HTTP status, and
`refuse` = {method: status} only the calls of those methods (recorded, then refused)."""
from __future__ import annotations

import itertools
import json
import threading
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs

from tests.loopback import LoopbackServer


class _Handler(BaseHTTPRequestHandler):
    fake = None

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, answer = self.fake.handle(self.path, self.headers.get("Content-Type", ""), body)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class FakeBotApi(LoopbackServer):
    def __init__(self, *, token: str):
        self.token = token
        self.calls: list[tuple[str, dict]] = []
        self.fail_with: int | None = None
        self.refuse: dict[str, int] = {}
        self.webhook: dict = {}
        self.file_ids: list[str] = []  # the photos' ids handed out, as Telegram keeps them
        self._updates: list[dict] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._serve(type("Handler", (_Handler,), {"fake": self}))

    def queue(self, update: dict) -> None:
        with self._lock:
            self._updates.append(update)

    def handle(self, path: str, content_type: str, body: bytes) -> tuple[int, dict]:
        prefix = f"/bot{self.token}/"
        if not path.startswith(prefix):
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        if self.fail_with:
            return self.fail_with, {"ok": False, "error_code": self.fail_with, "description": "Bad Gateway (test)"}
        method, params = path[len(prefix):], _params(content_type, body)
        with self._lock:
            self.calls.append((method, params))
            if method in self.refuse:
                status = self.refuse[method]
                return status, {"ok": False, "error_code": status, "description": "Bad Request: IMAGE_PROCESS_FAILED"}
            if method == "getUpdates":
                offset = int(params.get("offset") or 0)
                ready = [u for u in self._updates if u["update_id"] >= offset]
                self._updates = ready
                return 200, {"ok": True, "result": ready}
            if method == "setWebhook":
                self.webhook = params
            if method == "deleteWebhook":
                self.webhook = {}
        if method == "createInvoiceLink":
            return 200, {"ok": True, "result": f"https://t.me/$invoice-{next(self._ids)}"}
        if method == "sendPhoto":  # an upload gets file ids (the largest size last); an id must be one of them
            photo = params.get("photo")
            if isinstance(photo, str) and photo not in self.file_ids:
                return 400, {"ok": False, "error_code": 400, "description": "Bad Request: wrong file identifier"}
            if isinstance(photo, bytes):
                self.file_ids.append(f"AgAC-{next(self._ids)}")
            file_id = photo if isinstance(photo, str) else self.file_ids[-1]
            return 200, {"ok": True, "result": {"message_id": next(self._ids), "date": 0,
                                                "chat": {"id": int(params["chat_id"]), "type": "private"},
                                                "photo": [{"file_id": f"{file_id}-small", "width": 90},
                                                          {"file_id": file_id, "width": 1200}]}}
        if method in ("sendMessage", "sendInvoice"):
            return 200, {"ok": True, "result": {"message_id": next(self._ids), "date": 0,
                                                "chat": {"id": int(params["chat_id"]), "type": "private"}}}
        return 200, {"ok": True, "result": True}

    def sent(self, chat_id: int) -> list[dict]:
        """What the bot sent to one chat (messages and photos), in order."""
        with self._lock:
            return [p for m, p in self.calls if m in ("sendMessage", "sendPhoto") and p.get("chat_id") == str(chat_id)]

    def called(self, method: str) -> list[dict]:
        with self._lock:
            return [p for m, p in self.calls if m == method]

    def texts(self, chat_id: int) -> list[str]:
        return [p.get("text") or p.get("caption", "") for p in self.sent(chat_id)]

    def buttons(self, chat_id: int) -> list[tuple[str, str]]:
        """The inline buttons of the last message to `chat_id` that had any: (text, callback data)."""
        for params in reversed(self.sent(chat_id)):
            if params.get("reply_markup"):
                rows = json.loads(params["reply_markup"])["inline_keyboard"]
                return [(b["text"], b.get("callback_data", "")) for row in rows for b in row]
        return []


def _params(content_type: str, body: bytes) -> dict:
    if content_type.startswith("multipart/form-data"):
        message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        params = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            raw = part.get_payload(decode=True)  # fields are UTF-8, as httpx sends them (no charset given)
            params[name] = raw.decode() if part.get_filename() is None else raw
        return params
    return {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}


class Buyer:
    """A Telegram user talking to the bot: builds the updates Telegram would post."""

    _updates = itertools.count(1000)

    def __init__(self, *, user_id: int, language: str = "en"):
        self.user_id, self.language = user_id, language

    def _user(self) -> dict:
        return {"id": self.user_id, "is_bot": False, "first_name": "Buyer", "language_code": self.language}

    def says(self, text: str) -> dict:
        return {"update_id": next(self._updates), "message": {
            "message_id": 1, "date": 0, "chat": {"id": self.user_id, "type": "private"}, "from": self._user(),
            "text": text}}

    def taps(self, data: str) -> dict:
        return {"update_id": next(self._updates), "callback_query": {
            "id": str(next(self._updates)), "from": self._user(), "chat_instance": "1", "data": data,
            "message": {"message_id": 1, "date": 0, "chat": {"id": self.user_id, "type": "private"}}}}


def pre_checkout_update(*, user_id: int, payload: str, total: int, currency: str = "XTR") -> dict:
    return {"update_id": next(Buyer._updates), "pre_checkout_query": {
        "id": f"pcq-{user_id}-{total}", "from": {"id": user_id, "is_bot": False, "first_name": "Buyer",
                                                  "language_code": "en"},
        "currency": currency, "total_amount": total, "invoice_payload": payload}}


def paid_update(*, user_id: int, payload: str, total: int, charge_id: str, currency: str = "XTR") -> dict:
    """The service message Telegram sends the bot once Stars were paid."""
    return {"update_id": next(Buyer._updates), "message": {
        "message_id": 7, "date": 0, "chat": {"id": user_id, "type": "private"},
        "from": {"id": user_id, "is_bot": False, "first_name": "Buyer", "language_code": "en"},
        "successful_payment": {"currency": currency, "total_amount": total, "invoice_payload": payload,
                               "telegram_payment_charge_id": charge_id, "provider_payment_charge_id": ""}}}
