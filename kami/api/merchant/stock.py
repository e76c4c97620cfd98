"""GET /merchant/stock, /merchant/stock/{slug}/keys (scope `read`); POST …/keys (import), …/generate
and …/void (scope `stock`), through the same services as `kami keys`."""
from __future__ import annotations

import io

from typing import Literal

from ninja import Header, Query, Router, Schema
from pydantic import Field

from kami.api.merchant.auth import READ, STOCK
from kami.api.merchant.idempotency import HEADER_RULES, idempotent
from kami.api.merchant.problems import Problem
from kami.api.merchant.schemas import (READ_ERRORS, WRITE_ERRORS, GenerateIn, GenerateOut, ImportReportOut, KeyOut,
                                       KeysImportIn, StockOut, VoidIn, errors, slug_path)
from kami.catalog.selectors import product_get
from kami.core.net import client_ip
from kami.fulfilment.backfill import stock_added
from kami.stock.generator import keys_generate
from kami.stock.importer import keys_import
from kami.stock.report import ImportReport
from kami.stock.selectors import KeyRow, keys_list, stock_summary
from kami.stock.services import key_void

router = Router(tags=["stock"])


@router.get("", auth=READ, response={200: list[StockOut], **READ_ERRORS}, summary="Key counts per product")
def stock(request):
    return [{"product": row.product.slug, "available": row.available, "sold": row.sold, "void": row.void,
             "awaiting": row.awaiting, "low": row.low} for row in stock_summary()]


@router.post("/{slug}/keys", auth=STOCK, response={200: ImportReportOut, **WRITE_ERRORS},
             summary="Import keys (a JSON array), then fulfil orders waiting for them")
def keys_add(request, payload: KeysImportIn, slug: str = slug_path(), *,
             idempotency_key: str = Header(..., alias="Idempotency-Key", **HEADER_RULES)):
    def run():
        product = product_get(slug=slug)
        stream = io.BytesIO("\n".join(_one_line(payload.keys)).encode("utf-8"))
        report = keys_import(product=product, stream=stream, source=f"api token {request.auth.name}",
                             actor=request.auth.actor, ip=client_ip(request) or "")
        return 200, _report_out(report, fulfilled=stock_added(product_id=product.pk))

    return idempotent(request, key=idempotency_key, run=run)


class KeyFilters(Schema):
    status: Literal["", "available", "sold", "void"] = ""
    fingerprint: str = Field("", max_length=64, pattern=r"^[0-9a-fA-F]*$", description="a fingerprint prefix")
    before: int | None = Field(None, ge=1, description="a key id: the page of keys older than it")
    limit: int = Field(100, ge=1, le=1000)


@router.get("/{slug}/keys", auth=READ, response={200: list[KeyOut], **READ_ERRORS, **errors(404)},
            summary="A product's keys, newest first (fingerprints, never the keys)")
def keys(request, filters: Query[KeyFilters], slug: str = slug_path()):
    rows = keys_list(product=product_get(slug=slug), status=filters.status or None,
                     fingerprint_prefix=filters.fingerprint, before=filters.before, limit=filters.limit)
    return [_key_out(row) for row in rows]


@router.post("/{slug}/generate", auth=STOCK, response={200: GenerateOut, **WRITE_ERRORS},
             summary="Generate random keys, then fulfil orders waiting for them")
def keys_generate_(request, payload: GenerateIn, slug: str = slug_path(), *,
                   idempotency_key: str = Header(..., alias="Idempotency-Key", **HEADER_RULES)):
    def run():
        product = product_get(slug=slug)
        report = keys_generate(product=product, count=payload.count, pattern=payload.pattern,
                               actor=request.auth.actor, ip=client_ip(request) or "")
        return 200, {"batch_id": report.batch_id, "generated": report.imported,
                     "collisions_redrawn": report.duplicates, "orders_fulfilled": stock_added(product_id=product.pk)}

    return idempotent(request, key=idempotency_key, run=run)


@router.post("/{slug}/void", auth=STOCK, response={200: KeyOut, **WRITE_ERRORS},
             summary="Take an available key off sale for good, by its fingerprint")
def key_void_(request, payload: VoidIn, slug: str = slug_path(), *,
              idempotency_key: str = Header(..., alias="Idempotency-Key", **HEADER_RULES)):
    def run():
        product = product_get(slug=slug)
        key = key_void(product=product, fingerprint_prefix=payload.fingerprint, reason=payload.reason,
                       actor=request.auth.actor, ip=client_ip(request) or "")
        row = keys_list(product=product, fingerprint_prefix=key.fingerprint[:12], limit=1)[0]
        return 200, _key_out(row)

    return idempotent(request, key=idempotency_key, run=run)


def _key_out(row: KeyRow) -> dict:
    return {"id": row.id, "fingerprint": row.fingerprint, "status": row.status,
            "created_at": row.created_at.isoformat(), "sold_at": row.sold_at.isoformat() if row.sold_at else None,
            "order_nos": list(row.order_nos)}


def _one_line(keys: list[str]) -> list[str]:
    """The importer reads one key per line: a key holding a line break would become two."""
    for item, key in enumerate(keys, start=1):
        if "\n" in key or "\r" in key:
            raise Problem(422, "invalid", f"keys item {item}: holds a line break; send each key as its own item")
    return keys


def _report_out(report: ImportReport, *, fulfilled: int) -> dict:
    duplicates = sorted(report.duplicate_in_file_lines + report.duplicate_stored_lines)[:100]
    return {"batch_id": report.batch_id, "imported": report.imported,
            "duplicates_in_request": report.duplicate_in_file, "duplicates_stored": report.duplicate_stored,
            "invalid": report.invalid, "blank": report.blank,
            "invalid_items": [{"item": line, "reason": reason} for line, reason in report.invalid_lines],
            "duplicate_items": duplicates, "orders_fulfilled": fulfilled}
