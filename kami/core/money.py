"""Money is Decimal end to end, and the currency travels with it."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from kami.core.errors import BadInput

# Minor-unit exponents for the currencies a shop is likely to price in. Everything else: 2.
_EXPONENTS = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "USDT": 2}
CURRENCY_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def exponent(currency: str) -> int:
    return _EXPONENTS.get(currency.upper(), 2)


def quantize(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-exponent(currency)), rounding=ROUND_HALF_UP)


def to_minor(amount: Decimal, currency: str) -> int:
    return int(quantize(amount, currency).scaleb(exponent(currency)))


def from_minor(units: int, currency: str) -> Decimal:
    return quantize(Decimal(units).scaleb(-exponent(currency)), currency)


def parse_amount(value: object, *, field: str = "amount") -> Decimal:
    """Parse an amount given as text ("29.90"). Anything else (a list, a float, NaN, "1e3",
    an empty string) is refused: amounts from outside are never coerced."""
    if not isinstance(value, str):
        raise BadInput(f"{field}: expected a decimal number as text, got {type(value).__name__}")
    text = value.strip()
    if not text or len(text) > 32 or any(c not in "0123456789." for c in text.lstrip("-")):
        raise BadInput(f"{field}: {value!r} is not a decimal number like 29.90")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise BadInput(f"{field}: {value!r} is not a decimal number like 29.90") from None
    if not amount.is_finite():
        raise BadInput(f"{field}: {value!r} is not a finite number")
    return amount


def parse_currency(value: object) -> str:
    if not isinstance(value, str) or not (3 <= len(value) <= 5) or set(value.upper()) - CURRENCY_CHARS:
        raise BadInput(f"currency: {value!r} is not a currency code like CNY or USD")
    return value.upper()


def same_money(a: Decimal, a_currency: str, b: Decimal, b_currency: str) -> bool:
    """Equal amount in equal currency. Decimal equality is exact: 29.9 == 29.90, 29.901 != 29.90."""
    return a_currency.upper() == b_currency.upper() and a == b
