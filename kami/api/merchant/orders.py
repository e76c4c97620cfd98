"""GET /merchant/orders, /merchant/orders/{order_no} (scope `read`); POST …/resend and
…/keys/{key_id}/replace (scope `orders`) and …/refund (scope `refunds`), through the back office's
services (the same locks and checks)."""
from __future__ import annotations

from datetime import datetime, timezone as dt_timezone
from typing import Literal

from django.utils import timezone
from ninja import Header, Path, Query, Router, Schema
from pydantic import Field

from kami.api.merchant.auth import ORDERS, READ, REFUNDS
from kami.api.merchant.idempotency import HEADER_RULES, idempotent
from kami.api.merchant.problems import Problem
from kami.api.merchant.schemas import (READ_ERRORS, TEXT, WRITE_ERRORS, OrderDetailOut, OrderPageOut, RefundIn,
                                       RefundOut, ReplaceIn, ReplaceOut, ResendOut, errors, order_no_path)
from kami.api.merchant.selectors import ORDER_PAGE_MAX, order_detail_get, order_get, orders_search
from kami.core.net import client_ip
from kami.fulfilment.refund import order_refund
from kami.fulfilment.replace import order_key_replace
from kami.fulfilment.resend import order_delivery_resend
from kami.orders.models import Order

router = Router(tags=["orders"])


class OrderFilters(Schema):
    status: Literal["", "pending", "fulfilled", "awaiting_stock", "awaiting_manual", "expired", "refunded", "flagged"] = ""
    email: str = Field("", max_length=254, pattern=TEXT)
    product: str = Field("", description="a product slug", max_length=64, pattern=r"^[-a-zA-Z0-9_]*$")
    trade_no: str = Field("", description="the gateway's trade number or reference", max_length=128, pattern=TEXT)
    created_after: datetime | None = None
    created_before: datetime | None = None
    before: str = Field("", description="`next_before` of the previous page", max_length=32,
                        pattern=r"^[A-Za-z0-9_-]*$")
    limit: int = Field(50, ge=1, le=ORDER_PAGE_MAX)


def _utc(value: datetime | None, name: str) -> datetime | None:
    """The time in UTC (a time without an offset is read in the shop's time zone), so the
    database never sees an offset it cannot hold."""
    if value is None:
        return None
    try:
        aware = value if value.tzinfo is not None else timezone.make_aware(value)
        return aware.astimezone(dt_timezone.utc)
    except (OverflowError, ValueError):
        raise Problem(422, "invalid", f"{name}: {value.isoformat()} is out of range; give a time between years "
                                      "1 and 9999 in ISO 8601") from None


def order_out(order: Order) -> dict:
    return {"order_no": order.order_no, "product": order.product.slug, "email": order.email,
            "quantity": order.quantity, "amount": str(order.amount), "currency": order.currency,
            "discount": str(order.discount), "status": order.status, "gateway": order.gateway,
            "created_at": order.created_at, "paid_at": order.paid_at, "fulfilled_at": order.fulfilled_at}


@router.get("", auth=READ, response={200: OrderPageOut, **READ_ERRORS, **errors(404)}, summary="Search orders, newest first")
def orders(request, filters: Query[OrderFilters]):
    wanted = filters.dict()
    for name in ("created_after", "created_before"):
        wanted[name] = _utc(wanted[name], name)
    found = orders_search(**wanted)
    more = len(found) == filters.limit
    return {"orders": [order_out(o) for o in found], "next_before": found[-1].order_no if more else None}


@router.get("/{order_no}", auth=READ, response={200: OrderDetailOut, **READ_ERRORS, **errors(404)},
            summary="An order with its payments, keys (fingerprints only) and timeline")
def order(request, order_no: str = order_no_path()):
    found = order_detail_get(order_no=order_no)
    return {**order_out(found.order),
            "payments": [{"gateway": p.gateway, "trade_no": p.trade_no, "amount": str(p.amount), "currency": p.currency,
                          "created_at": p.created_at} for p in found.payments],
            "keys": [{"key_id": k.key_id, "fingerprint": k.key.fingerprint[:12], "status": k.key.status}
                     for k in found.keys],
            "timeline": [{"at": e.at, "kind": e.kind, "detail": e.detail} for e in found.events]}


@router.post("/{order_no}/resend", auth=ORDERS, response={200: ResendOut, **WRITE_ERRORS},
             summary="Email the keys of a fulfilled order again")
def order_resend(request, order_no: str = order_no_path(), *,
                 idempotency_key: str = Header(..., alias="Idempotency-Key", **HEADER_RULES)):
    def run():
        order = order_get(order_no=order_no)
        row = order_delivery_resend(order_id=order.pk, actor=request.auth.actor, ip=client_ip(request) or "")
        return 200, {"order_no": order.order_no, "delivery_id": row.pk}

    return idempotent(request, key=idempotency_key, run=run)


@router.post("/{order_no}/refund", auth=REFUNDS, response={200: RefundOut, **WRITE_ERRORS},
             summary="Refund a paid order; its keys are voided for good")
def order_refund_(request, payload: RefundIn, order_no: str = order_no_path(), *,
                  idempotency_key: str = Header(..., alias="Idempotency-Key", **HEADER_RULES)):
    def run():
        outcome = order_refund(order_no=order_no, reason=payload.reason, actor=request.auth.actor,
                               ip=client_ip(request) or "")
        return 200, {"order_no": outcome.order_no, "manual": outcome.manual, "keys_voided": outcome.keys_voided,
                     "gateway_ref": outcome.gateway_ref}

    return idempotent(request, key=idempotency_key, run=run)


@router.post("/{order_no}/keys/{key_id}/replace", auth=ORDERS, response={200: ReplaceOut, **WRITE_ERRORS},
             summary="Replace a bad key of a fulfilled order with a new one from stock")
def order_key_replace_(request, payload: ReplaceIn, order_no: str = order_no_path(),
                       key_id: int = Path(..., ge=1, le=2**63 - 1, description="the key's id (order detail: keys)"),
                       *, idempotency_key: str = Header(..., alias="Idempotency-Key", **HEADER_RULES)):
    def run():
        new = order_key_replace(order_no=order_no, key_pk=key_id, reason=payload.reason, actor=request.auth.actor,
                                ip=client_ip(request) or "")
        return 200, {"order_no": order_no, "replaced_key_id": key_id,
                     "key": {"key_id": new.pk, "fingerprint": new.fingerprint[:12], "status": new.status}}

    return idempotent(request, key=idempotency_key, run=run)
