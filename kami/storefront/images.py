"""Pictures we drew ourselves (the shop logo, product pictures), served for good: their names
carry a hash of their content, so a new picture gets a new URL and browsers and proxies may keep
each one forever. The type is fixed by us, never sniffed, and the picture runs in a sandbox."""
from __future__ import annotations

from typing import BinaryIO

from django.http import FileResponse

CONTENT_TYPES = {"png": "image/png", "webp": "image/webp"}


def immutable_image(file: BinaryIO, *, filename: str) -> FileResponse:
    response = FileResponse(file, content_type=CONTENT_TYPES[filename.rpartition(".")[2]])
    response["Cache-Control"] = "public, max-age=31536000, immutable"  # a new picture gets a new name
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    return response
