"""The shapes the merchant API reads and writes (they make the OpenAPI schema)."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from ninja import Path, Schema
from pydantic import Field

from kami.catalog.models import Product

# Text without NUL: PostgreSQL refuses NUL in text and JSON, so it is refused here, as a 422.
TEXT = r"^[^\x00]*$"
SLUG_PATTERN = r"^[-a-zA-Z0-9_]{1,64}$"
ORDER_NO_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
ProductKind = Literal[tuple(Product.Kind.values)]  # the catalog's kinds, whichever it has


def slug_path():
    return Path(..., pattern=SLUG_PATTERN, description="a product's slug")


def order_no_path():
    return Path(..., pattern=ORDER_NO_PATTERN, description="an order number")


class ProblemOut(Schema):
    """RFC 9457 problem details."""

    type: str = Field(examples=["urn:kami:problem:forbidden"])
    title: str
    status: int
    detail: str
    instance: str = ""
    errors: list[dict] | None = None


def errors(*codes: int) -> dict[int, type[ProblemOut]]:
    return {code: ProblemOut for code in codes}


READ_ERRORS = errors(401, 403, 422, 429)
WRITE_ERRORS = errors(400, 401, 403, 404, 409, 413, 422, 429, 502, 503)


class ProductOut(Schema):
    slug: str
    name: str
    kind: str = Field(description="unique | reusable | manual")
    price: str = Field(description="decimal, in `currency`", examples=["29.90"])
    currency: str
    min_qty: int
    max_qty: int
    low_stock: int = Field(description="a low-stock alert fires below this many available keys; 0: off")
    active: bool


PRICE_PATTERN = r"^\d{1,12}(\.\d{1,2})?$"
NAME_PATTERN = r"^[^\x00]*[^\x00\s][^\x00]*$"  # not blank, no NUL
COUNT_MAX = 1_000_000
KIND_DOC = "unique (each key sold once) | reusable (the same keys for every buyer) | manual (a person delivers)"


class ProductIn(Schema):
    slug: str = Field(pattern=SLUG_PATTERN, description="letters, digits, '-' and '_'; fixed once made")
    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    price: str = Field(pattern=PRICE_PATTERN, description="decimal as text, in `currency`", examples=["29.90"])
    currency: str = Field("CNY", pattern=r"^[A-Za-z]{3,5}$", description="a currency code like CNY or USD")
    kind: ProductKind = Field("unique", description=KIND_DOC)
    min_qty: int = Field(1, ge=1, le=COUNT_MAX)
    max_qty: int = Field(10, ge=1, le=COUNT_MAX, description="at least min_qty")
    low_stock: int = Field(0, ge=0, le=COUNT_MAX, description="alert when available keys fall below this; 0: off")
    description: str = Field("", max_length=20000, pattern=TEXT)
    active: bool = True


class ProductPatch(Schema):
    """Only the fields sent change; the others are kept as stored."""

    name: str = Field(None, min_length=1, max_length=200, pattern=NAME_PATTERN)
    price: str = Field(None, pattern=PRICE_PATTERN, description="decimal as text", examples=["29.90"])
    currency: str = Field(None, pattern=r"^[A-Za-z]{3,5}$")
    kind: ProductKind = Field(None, description=KIND_DOC + "; fixed once the product has keys or orders")
    min_qty: int = Field(None, ge=1, le=COUNT_MAX)
    max_qty: int = Field(None, ge=1, le=COUNT_MAX)
    low_stock: int = Field(None, ge=0, le=COUNT_MAX)
    description: str = Field(None, max_length=20000, pattern=TEXT)
    active: bool = Field(None)


class StockOut(Schema):
    product: str = Field(description="the product's slug")
    available: int
    sold: int
    void: int
    awaiting: int = Field(description="paid orders waiting for keys")
    low: bool


class OrderOut(Schema):
    order_no: str
    product: str
    email: str
    quantity: int
    amount: str
    currency: str
    discount: str
    status: str
    gateway: str
    created_at: datetime
    paid_at: datetime | None
    fulfilled_at: datetime | None


class EventOut(Schema):
    at: datetime
    kind: str
    detail: dict


class PaymentOut(Schema):
    gateway: str
    trade_no: str
    amount: str
    currency: str
    created_at: datetime


class OrderKeyOut(Schema):
    key_id: int
    fingerprint: str = Field(description="the first 12 hex characters of the key's fingerprint; never the key")
    status: str


class OrderDetailOut(OrderOut):
    payments: list[PaymentOut]
    keys: list[OrderKeyOut]
    timeline: list[EventOut]


class OrderPageOut(Schema):
    orders: list[OrderOut]
    next_before: str | None = Field(description="pass as `before` for the next page; null on the last page")


class KeysImportIn(Schema):
    keys: list[str] = Field(description="one key per item (no line breaks inside a key)", max_length=10000)


class ImportReportOut(Schema):
    batch_id: int | None
    imported: int
    duplicates_in_request: int
    duplicates_stored: int
    invalid: int
    blank: int
    invalid_items: list[dict] = Field(description="[{item, reason}] for the first 100 invalid items; item counts from 1")
    duplicate_items: list[int] = Field(description="the first 100 duplicate items, counting from 1")
    orders_fulfilled: int = Field(description="awaiting-stock orders fulfilled by these keys")


class ImportJobOut(Schema):
    id: int
    product: str = Field(description="the product's slug")
    status: str = Field(description="queued | running | done | failed")
    percent: int = Field(description="of the file read; 100 once done")
    filename: str
    fmt: str = Field(description="txt | csv")
    bytes_total: int
    bytes_done: int
    lines_done: int
    imported: int
    duplicates: int
    invalid: int
    blank: int
    error: str = Field(description="why the job failed; empty otherwise")
    report_ready: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    status_url: str = Field(description="this job's address: poll it until status is done or failed")
    report_url: str | None = Field(description="the report's address once the job has finished")


class RefundIn(Schema):
    reason: str = Field(default="", max_length=255, pattern=TEXT)


class RefundOut(Schema):
    order_no: str
    manual: bool = Field(description="true: no gateway refund API was used; pay the buyer back by hand")
    keys_voided: int
    gateway_ref: str


class ReplaceIn(Schema):
    reason: str = Field(min_length=1, max_length=150, pattern=NAME_PATTERN,
                        description="what is wrong with the key (the buyer's report); kept with the voided key")


class ReplaceOut(Schema):
    order_no: str
    replaced_key_id: int = Field(description="the old key: voided for good")
    key: OrderKeyOut = Field(description="the new key in its place (the buyer is emailed)")


class ResendOut(Schema):
    order_no: str
    delivery_id: int


class KeyOut(Schema):
    id: int
    fingerprint: str = Field(description="the first 12 hex characters of the key's fingerprint; never the key")
    status: str
    created_at: datetime
    sold_at: datetime | None
    order_nos: list[str]


class GenerateIn(Schema):
    count: int = Field(ge=1, le=10000, description="at most 10,000 per request; `kami keys generate` for more")
    pattern: str = Field("XXXX-XXXX-XXXX-XXXX", min_length=1, max_length=200, pattern=TEXT,
                         description="each X is a random symbol, the rest is kept")


class GenerateOut(Schema):
    batch_id: int | None
    generated: int
    collisions_redrawn: int
    orders_fulfilled: int


class VoidIn(Schema):
    fingerprint: str = Field(min_length=6, max_length=64, pattern=r"^[0-9a-fA-F]+$",
                             description="the start of the key's fingerprint, at least 6 hex characters")
    reason: str = Field("", max_length=200, pattern=TEXT)
