"""Changing the shop settings: `shop_settings_update` validates every field (the back office
shows its messages as they are), re-encodes an uploaded logo as a PNG of our own making, and
writes the audit row in the same transaction as the settings row."""
from __future__ import annotations

import hashlib
import io
import os
import unicodedata

from django.core.cache import cache
from django.db import transaction

from kami.audit.services import audit_record
from kami.core import clock
from kami.core.errors import BadInput
from kami.core.models import SINGLETON_ID, ShopSettings
from kami.shop.selectors import CACHE_KEY, Shop, logo_dir, shop_settings_get

NAME_MAX, NOTICE_MAX, FOOTER_MAX = 80, 2000, 500
LOGO_MAX_BYTES = 1024 * 1024
LOGO_MAX_SOURCE_SIDE = 4096  # refuse bigger pictures before decoding them (decompression bombs)
LOGO_BOX = (512, 256)  # the stored logo fits in this box: plenty for a header at 2x
LOGO_FORMATS = {"PNG", "JPEG", "GIF", "WEBP"}
FIELDS = ("name", "notice", "notice_format", "footer", "logo", "logo_remove")


def shop_settings_update(*, actor: str, ip: str = "", **fields) -> Shop:
    """Change some settings; fields not given keep their value. `logo` takes the picture's bytes
    or an uploaded file; `logo_remove=True` drops the logo. Raises BadInput naming each bad
    field (also as `details["fields"]`); nothing is written unless every field is right."""
    changes, errors = _validated(fields)
    if errors:
        raise BadInput("shop settings: " + "; ".join(f"{k}: {v}" for k, v in errors.items()), fields=errors)
    if "logo" in changes:
        changes["logo"] = _logo_store(changes["logo"])  # a file write, before the transaction
    ShopSettings.objects.get_or_create(pk=SINGLETON_ID)
    # The row and its audit line land together; the lock orders two staff saving at once.
    with transaction.atomic():
        current = ShopSettings.objects.select_for_update().get(pk=SINGLETON_ID)
        changed = {k: v for k, v in changes.items() if getattr(current, k) != v}
        if changed:
            for key, value in changed.items():
                setattr(current, key, value)
            current.updated_at, current.updated_by = clock.now(), actor[:150]
            current.save()
            audit_record(actor=actor, action="shop.settings_update", obj_type="shop_settings", obj_id=SINGLETON_ID,
                         ip=ip, changed={k: _shown(v) for k, v in changed.items()})
    cache.delete(CACHE_KEY)
    return shop_settings_get()


def _validated(fields: dict) -> tuple[dict, dict]:
    changes: dict = {}
    errors: dict[str, str] = {}
    for key in fields.keys() - set(FIELDS):
        errors[key] = f"unknown setting; the settings are {', '.join(FIELDS[:-1])}"
    limits = {"name": NAME_MAX, "notice": NOTICE_MAX, "footer": FOOTER_MAX}
    for key, limit in limits.items():
        if key not in fields:
            continue
        value = fields[key]
        if not isinstance(value, str):
            errors[key] = f"expected text, got {type(value).__name__}"
            continue
        value = value.replace("\r\n", "\n").strip()
        if len(value) > limit:
            errors[key] = f"at most {limit} characters (this one has {len(value)}); shorten it"
        elif key != "notice" and any(unicodedata.category(c) == "Cc" for c in value):
            errors[key] = "one line only: remove line breaks and control characters"
        else:
            changes[key] = value
    if "notice_format" in fields:
        if fields["notice_format"] in ShopSettings.NoticeFormat.values:
            changes["notice_format"] = fields["notice_format"]
        else:
            errors["notice_format"] = "must be 'text' (shown as written) or 'markdown' (a safe subset of HTML)"
    if fields.get("logo_remove") and fields.get("logo") is not None:
        errors["logo"] = "give a new logo or remove the logo, not both"
    elif fields.get("logo_remove"):
        changes["logo"] = ""
    elif fields.get("logo") is not None:
        try:
            changes["logo"] = _logo_png(fields["logo"])
        except BadInput as exc:
            errors["logo"] = str(exc)
    return changes, errors


def _logo_png(source) -> bytes:
    """The uploaded picture, checked and drawn again as a PNG: what we serve is pixels we wrote,
    never the upload's own bytes (no scripts in SVG, no polyglot files, no metadata)."""
    from PIL import Image, UnidentifiedImageError

    data = source if isinstance(source, (bytes, bytearray)) else source.read(LOGO_MAX_BYTES + 1)
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise BadInput("the file is empty; choose a PNG, JPEG, GIF or WebP picture")
    if len(data) > LOGO_MAX_BYTES:
        raise BadInput(f"the file is larger than {LOGO_MAX_BYTES // 1024} KB; use a smaller picture")
    try:
        with Image.open(io.BytesIO(bytes(data))) as image:
            if image.format not in LOGO_FORMATS:
                raise BadInput(f"{image.format} pictures are not accepted; use PNG, JPEG, GIF or WebP")
            if max(image.size) > LOGO_MAX_SOURCE_SIDE:
                raise BadInput(f"the picture is {image.width}×{image.height} pixels; at most "
                               f"{LOGO_MAX_SOURCE_SIDE} on each side")
            image.seek(0)
            picture = image.convert("RGBA")
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError):
        raise BadInput("not a picture Kami can read; use a PNG, JPEG, GIF or WebP file") from None
    picture.thumbnail(LOGO_BOX)
    out = io.BytesIO()
    picture.save(out, "PNG", optimize=True)
    return out.getvalue()


def _logo_store(png: str | bytes) -> str:
    if not png:
        return ""
    name = f"logo-{hashlib.sha256(png).hexdigest()[:16]}.png"
    folder = logo_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    if not target.exists():  # content-addressed: an old name keeps its picture for stale caches
        partial = folder / f".{name}.{os.getpid()}.tmp"
        partial.write_bytes(png)
        os.replace(partial, target)
    return name


def _shown(value: str) -> str:
    return value if len(value) <= 200 else value[:200] + "…"
