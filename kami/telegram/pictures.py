"""A product's picture in the bot: its page-size file, re-encoded as JPEG and uploaded with
sendPhoto (multipart), caption = the product's text.

Uploaded, not sent by URL: Telegram fetching `KAMI_BASE_URL/pictures/…` works only for a shop
with a public https address that Telegram's servers can reach, while an upload works for every
shop (long polling behind NAT, a mirror in KAMI_TELEGRAM_API_BASE, the loopback fake in the
tests) and does not depend on Telegram's fetcher accepting our cache headers. JPEG, not the
stored WebP: the Bot API names no photo formats, WebP as a photo has a history of being shown
as a file or refused by Telegram's clients and servers, and JPEG and PNG are the ones every
client shows; JPEG keeps a 1200 px picture to a fraction of PNG's size. Transparency is laid
on white. Re-encoding our own stored file costs milliseconds. The first upload's file_id is kept
(PhotoFileId, per bot and picture file): later views send the id, and Telegram shows its copy
without an upload. An id Telegram refuses (another bot token, a file Telegram dropped) is forgotten
and the picture uploaded again.
"""
from __future__ import annotations

import io
import logging

from PIL import Image

from kami.catalog.models import Product
from kami.catalog.pictures import picture_storage
from kami.telegram.models import PhotoFileId

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


def photo_id_get(*, bot_id: int, picture: str) -> str:
    """The file_id this bot got for `picture`, or "" when it has not uploaded it yet."""
    return PhotoFileId.objects.filter(bot_id=bot_id, picture=picture).values_list("file_id", flat=True).first() or ""


def photo_id_keep(*, bot_id: int, picture: str, sent: object) -> None:
    """Keep the file_id of the largest size in sendPhoto's answer (a Message with `photo`)."""
    sizes = sent.get("photo") if isinstance(sent, dict) else None
    file_id = sizes[-1].get("file_id") if isinstance(sizes, list) and sizes and isinstance(sizes[-1], dict) else None
    if isinstance(file_id, str) and 0 < len(file_id) <= 255:
        PhotoFileId.objects.update_or_create(bot_id=bot_id, picture=picture, defaults={"file_id": file_id})


def photo_id_forget(*, bot_id: int, picture: str) -> None:
    PhotoFileId.objects.filter(bot_id=bot_id, picture=picture).delete()
