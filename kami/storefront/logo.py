"""The merchant's logo, served by us from the data dir. Only names `shop_settings_update` gives
(content-addressed PNGs it drew itself) are served, always as image/png, cached for good."""
from __future__ import annotations

import re

from django.http import FileResponse, Http404, HttpRequest

from kami.shop.selectors import LOGO_NAME_PATTERN, logo_dir
from kami.storefront.images import immutable_image

_NAME = re.compile(LOGO_NAME_PATTERN)


def shop_logo(request: HttpRequest, name: str) -> FileResponse:
    path = logo_dir() / name
    if not _NAME.fullmatch(name) or not path.is_file():
        raise Http404("no such logo")
    return immutable_image(path.open("rb"), filename="logo.png")
