"""The webhook Telegram posts updates to (webhook mode): the secret-token header is compared in
constant time with the one given to setWebhook; anything else is refused and handles nothing."""
from __future__ import annotations

import hmac
import json

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from kami.telegram.config import bot_token, webhook_mode, webhook_secret
from kami.telegram.stars import is_payment, payment_take

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


@csrf_exempt
@require_POST
def telegram_webhook(request: HttpRequest) -> HttpResponse:
    token = bot_token()
    if not token or not webhook_mode():
        return HttpResponse(status=404)
    given = request.headers.get(SECRET_HEADER, "").encode("utf-8", "replace")
    if not hmac.compare_digest(given, webhook_secret(token).encode()):
        return HttpResponse(status=403)
    try:
        data = json.loads(request.body)
    except ValueError:
        return HttpResponse(status=400)
    if isinstance(data, dict) and is_payment(data):
        return payment_take(request)  # Stars: the gateways' notification path, which answers for itself
    if isinstance(data, dict):
        from kami.telegram.dispatch import update_handle  # aiogram's types take seconds to import: not at start-up

        update_handle(data, token=token)
    return HttpResponse(status=200)  # handled or not: a redelivery would not do better
