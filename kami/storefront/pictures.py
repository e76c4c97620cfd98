"""Product pictures, served from wherever catalog.pictures stored them (the database by default,
so any web machine serves any picture, whichever machine stored it). Only names it gives are
served (`<id>-<hash>-thumb.webp` …); the URL (`/pictures/<name>`) is what the Telegram bot
sends too, prefixed with KAMI_BASE_URL."""
from __future__ import annotations

import re

from django.http import FileResponse, Http404, HttpRequest

from kami.catalog.pictures import NAME_PATTERN, picture_storage
from kami.storefront.images import immutable_image

_NAME = re.compile(NAME_PATTERN)


def product_picture(request: HttpRequest, name: str) -> FileResponse:
    if not _NAME.fullmatch(name):
        raise Http404("no such picture")
    try:
        file = picture_storage().open(name, "rb")
    except (FileNotFoundError, OSError):
        raise Http404("no such picture") from None
    return immutable_image(file, filename=name)
