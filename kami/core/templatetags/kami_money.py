"""`{{ amount|money:currency }}`: an amount written for the language being rendered (the page's,
or the order's in an email): zh-hans shows ¥48.00, en shows CN¥48.00, US$/$ for USD. A code that
is no ISO currency (USDT) is written after the number: 48.00 USDT. Pages and emails both use it."""
from __future__ import annotations

from decimal import Decimal, InvalidOperation
from functools import lru_cache

from babel import Locale, UnknownLocaleError
from babel.numbers import format_currency, format_decimal, is_currency
from django import template
from django.conf import settings
from django.utils import translation

from kami.core.money import exponent

register = template.Library()


@lru_cache(maxsize=16)
def _babel_locale(language: str) -> Locale:
    try:
        return Locale.parse(translation.to_locale(language))
    except (UnknownLocaleError, ValueError):
        return Locale.parse(translation.to_locale(settings.LANGUAGE_CODE))


def money_format(amount, currency: str, language: str | None = None) -> str:
    """The one way an amount is written for a buyer."""
    try:
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    except (InvalidOperation, ValueError):
        return str(amount)
    code = (currency or "").upper()
    locale = _babel_locale(language or translation.get_language() or settings.LANGUAGE_CODE)
    if code and is_currency(code):
        return format_currency(value, code, locale=locale)
    digits = exponent(code)
    pattern = "#,##0" + ("." + "0" * digits if digits else "")
    number = format_decimal(value, format=pattern, locale=locale)
    return f"{number} {code}".strip()


@register.filter
def money(amount, currency: str = "") -> str:
    if amount is None or amount == "":
        return ""
    return money_format(amount, currency)
