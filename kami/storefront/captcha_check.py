"""The optional captcha on the buy form and the lookup page (KAMI_CAPTCHA=1; off by default).

Self-hosted: django-simple-captcha draws the picture on our server (`/captcha/image/<key>/`, a
PNG from 'self', so the CSP holds) and keeps the answer in its database table. Each challenge
can be tried once: a wrong answer spends it and the page shows a new one.
"""
from __future__ import annotations

from captcha.fields import CaptchaField
from captcha.models import CaptchaStore
from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import QueryDict

KEY_FIELD, ANSWER_FIELD = "captcha_key", "captcha"


def captcha_enabled() -> bool:
    return bool(settings.KAMI_CAPTCHA)


def captcha_new() -> dict | None:
    """A fresh challenge for a form, or None when the captcha is off."""
    if not captcha_enabled():
        return None
    # Pages are drawn more often than forms are sent: drop spent-by-time rows here too, so the
    # table holds only the last CAPTCHA_TIMEOUT minutes of challenges.
    CaptchaStore.remove_expired()
    return {"key": CaptchaStore.generate_key()}


def captcha_passed(data: QueryDict) -> bool:
    """True when the captcha is off, or the posted answer matches its challenge (spent either way)."""
    if not captcha_enabled():
        return True
    key, answer = data.get(KEY_FIELD, "")[:40], data.get(ANSWER_FIELD, "")[:32]
    if not answer.strip():
        CaptchaStore.objects.filter(hashkey=key).delete()  # spent like a wrong answer
        return False
    try:
        CaptchaField().clean([key, answer])
    except ValidationError:
        return False
    return True
