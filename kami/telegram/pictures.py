"""A product's picture in the bot: its page-size file, re-encoded as JPEG and uploaded with
sendPhoto (multipart), caption = the product's text.

Uploaded, not sent by URL: Telegram fetching `KAMI_BASE_URL/pictures/…` works only for a shop
with a public https address that Telegram's servers can reach, while an upload works for every
shop (long polling behind NAT, a mirror in KAMI_TELEGRAM_API_BASE, the loopback fake in the
tests) and does not depend on Telegram's fetcher accepting our cache headers. JPEG, not the
stored WebP: the Bot API names no photo formats, WebP as a photo has a history of being shown
as a file or refused by Telegram's clients and servers, and JPEG and PNG are the ones every
client shows; JPEG keeps a 1200 px picture to a fraction of PNG's size. Transparency is laid
on white. Re-encoding our own stored file costs milliseconds; Telegram's file_id is not kept,
so each product view uploads the picture again (a few hundred KB at most).
"""
from __future__ import annotations

import io
import logging

from PIL import Image

from kami.catalog.models import Product
from kami.catalog.pictures import picture_storage

log = logging.getLogger("kami.telegram")

CAPTION_MAX = 1024  # Telegram's limit for a photo's caption, in UTF-16 code units


def product_photo(product: Product) -> bytes | None:
    """The product's page-size picture as JPEG bytes; None when it has none or its file is gone."""
    name = product.picture_page
    if not name:
        return None
    try:
        with picture_storage().open(name, "rb") as file:
            image = Image.open(file)
            image.load()
    except (OSError, ValueError):  # deleted or unreadable file: the product is shown as text
        log.warning("telegram: product %s's picture %s could not be read; sent as text", product.pk, name)
        return None
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        flat = Image.new("RGB", image.size, (255, 255, 255))
        flat.paste(image, mask=image.getchannel("A"))
        image = flat
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=85, optimize=True)
    return out.getvalue()


def units(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units: an emoji is two)."""
    return len(text.encode("utf-16-le")) // 2
