"""Product pictures: checked, drawn again at two sizes, stored, replaced.

What Kami serves is never the upload's own bytes: the picture is verified by Pillow, refused
before decoding when it is too big (file size, pixel count: decompression bombs), then its pixels
are copied into a fresh image and encoded by us as WebP (PNG where Pillow lacks WebP). So EXIF
(GPS, camera serials), ICC and XMP blocks, comments and anything hidden after the image data are
gone. Each picture is two files, a thumbnail and a page size, named `<product id>-<content
hash>-<size>.<ext>`: a new picture gets a new URL, so the old one may be cached for good.

Files live in the database (kami.catalog.picture_store: every web and worker machine sees them,
no shared data dir), or in the Django storage named `kami_pictures` in settings.STORAGES when a
deployment configures one. The storefront serves them (kami.storefront.pictures), the Telegram
bot sends them; `Product.picture_thumb` / `picture_page` give the file names.
"""
from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages
from django.db import transaction
from django.utils.translation import gettext

from kami.audit.services import audit_record
from kami.catalog.models import Product, picture_file
from kami.catalog.picture_store import PictureDatabaseStorage
from kami.core.errors import BadInput

log = logging.getLogger("kami.catalog.pictures")

PICTURE_MAX_BYTES = 8 * 1024 * 1024
PICTURE_MAX_PIXELS = 20_000_000  # 5000×4000; past it a small file can still take gigabytes to decode
PICTURE_FORMATS = ("PNG", "JPEG", "GIF", "WEBP")
SIZES = {"thumb": (480, 480), "page": (1200, 1200)}  # each fits in its box, never enlarged
NAME_PATTERN = r"[0-9]{1,12}-[0-9a-f]{16}-(?:thumb|page)\.(?:webp|png)"
STORAGE_ALIAS = "kami_pictures"


@dataclass(frozen=True)
class PreparedPicture:
    """A checked picture, encoded at every size, not stored yet."""

    files: dict[str, bytes]  # size → encoded bytes
    ext: str  # "webp" or "png"

    @property
    def digest(self) -> str:
        sha = hashlib.sha256()
        for size in sorted(self.files):
            sha.update(self.files[size])
        return sha.hexdigest()[:16]


def picture_storage() -> Storage:
    if STORAGE_ALIAS in settings.STORAGES:
        return storages[STORAGE_ALIAS]
    return PictureDatabaseStorage()


def picture_prepare(source) -> PreparedPicture:
    """Check an uploaded picture (bytes or a file) and encode it at every size. Raises BadInput
    (translated: the back office shows it beside the field) naming what is wrong and the fix."""
    data = _read_bounded(source)
    image = _decoded(data)
    ext = "webp" if _has_webp() else "png"
    files = {size: _encoded(image, box, ext) for size, box in SIZES.items()}
    return PreparedPicture(files=files, ext=ext)


def product_picture_set(*, product: Product, source, actor: str, ip: str = "") -> Product:
    """Give `product` a new picture (bytes, a file, or a PreparedPicture); the old files go."""
    prepared = source if isinstance(source, PreparedPicture) else picture_prepare(source)
    name = f"{product.pk}-{prepared.digest}.{prepared.ext}"
    storage, shown = picture_storage(), product.picture
    for size, data in prepared.files.items():  # file writes, before the transaction
        if not storage.exists(picture_file(name, size)):
            storage.save(picture_file(name, size), ContentFile(data))
    try:
        old = _picture_switch(product=product, name=name, actor=actor, ip=ip)
    except Exception:
        _files_delete(storage, name, keep=shown)  # not pointed at: no stray files
        raise
    if old != name:
        _files_delete(storage, old)
    return product


def product_picture_remove(*, product: Product, actor: str, ip: str = "") -> Product:
    old = _picture_switch(product=product, name="", actor=actor, ip=ip)
    _files_delete(picture_storage(), old)
    return product


def _picture_switch(*, product: Product, name: str, actor: str, ip: str) -> str:
    """Point the product at `name`; return the name it had."""
    with transaction.atomic():  # lock the row: two uploads at once each see the other's name as the old one
        old = Product.objects.select_for_update().values_list("picture", flat=True).get(pk=product.pk)
        if old != name:
            Product.objects.filter(pk=product.pk).update(picture=name)
            audit_record(actor=actor, action="product_picture", obj_type="product", obj_id=product.pk, ip=ip,
                         picture=[old, name])
    product.picture = name
    return old


def _files_delete(storage: Storage, name: str, *, keep: str = "") -> None:
    if not name or name == keep:
        return
    for size in SIZES:
        try:
            storage.delete(picture_file(name, size))
        except OSError as exc:  # a leftover file is untidy, not wrong: the URL is no longer used
            log.warning("could not delete the old picture %s: %s", picture_file(name, size), exc)


def _read_bounded(source) -> bytes:
    data = source if isinstance(source, (bytes, bytearray)) else source.read(PICTURE_MAX_BYTES + 1)
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise BadInput(gettext("The file is empty; choose a PNG, JPEG, GIF or WebP picture."))
    if len(data) > PICTURE_MAX_BYTES:
        raise BadInput(gettext("The file is larger than %(mb)d MB; use a smaller picture.")
                       % {"mb": PICTURE_MAX_BYTES // (1024 * 1024)})
    return bytes(data)


def _decoded(data: bytes):
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as probe:
            _check_header(probe.format, probe.size)
            probe.verify()  # the file's structure (chunk checksums, truncation) before any decoding
        image = Image.open(io.BytesIO(data))  # verify() leaves the image unusable: open it again
        if image.format == "JPEG":
            image.draft("RGB", (SIZES["page"][0] * 2, SIZES["page"][1] * 2))  # decode at a reduced scale
        image.load()
        return ImageOps.exif_transpose(image)  # a phone photo stands the way it was taken
    except Image.DecompressionBombError:
        raise _too_many_pixels() from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise BadInput(gettext("This is not a picture Kami can read; use a PNG, JPEG, GIF or WebP file.")) from None


def _check_header(fmt: str | None, size: tuple[int, int]) -> None:
    if fmt not in PICTURE_FORMATS:
        raise BadInput(gettext("%(format)s pictures are not accepted; use PNG, JPEG, GIF or WebP.")
                       % {"format": fmt or "?"})
    if size[0] * size[1] > PICTURE_MAX_PIXELS:
        raise _too_many_pixels(size)


def _too_many_pixels(size: tuple[int, int] | None = None) -> BadInput:
    limit = f"{PICTURE_MAX_PIXELS // 1_000_000}"
    if size is None:
        return BadInput(gettext("The picture has too many pixels (at most %(limit)s million); make it smaller.")
                        % {"limit": limit})
    return BadInput(gettext("The picture is %(width)d×%(height)d pixels, more than %(limit)s million; make it smaller.")
                    % {"width": size[0], "height": size[1], "limit": limit})


def _encoded(image, box: tuple[int, int], ext: str) -> bytes:
    from PIL import Image

    alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    mode = "RGBA" if alpha else "RGB"
    resized = image.convert(mode)
    resized.thumbnail(box, Image.Resampling.LANCZOS)
    clean = Image.frombytes(mode, resized.size, resized.tobytes())  # pixels only: no metadata survives
    out = io.BytesIO()
    if ext == "webp":
        clean.save(out, "WEBP", quality=82, method=4)
    else:
        clean.save(out, "PNG", optimize=True)
    return out.getvalue()


def _has_webp() -> bool:
    from PIL import features

    return bool(features.check("webp"))
