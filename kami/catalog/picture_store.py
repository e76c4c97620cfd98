"""Where product pictures are kept by default: a Django Storage over the PictureFile table.

In the database, not the data dir: the web that takes the upload, every other web machine and
the worker running the Telegram bot all read the same pictures with no shared directory or
object store (docs/scaling.md, "Several machines"), and a database backup holds them. A picture
is two files of at most a few hundred kB (re-encoded by kami.catalog.pictures, 8 MB upload limit),
one row each: far below MariaDB's max_allowed_packet (16 MiB by default). Names carry a hash of
the content, so saving a name that exists writes the same bytes: it is overwritten, never renamed.
"""
from __future__ import annotations

from django.core.files.base import ContentFile
from django.core.files.storage import Storage
from django.utils.deconstruct import deconstructible

from kami.catalog.models import PictureFile
from kami.core import clock


@deconstructible
class PictureDatabaseStorage(Storage):
    def _open(self, name: str, mode: str = "rb") -> ContentFile:
        if "w" in mode or "a" in mode or "+" in mode:
            raise ValueError("pictures in the database are written with save(), not opened for writing")
        data = PictureFile.objects.filter(name=name).values_list("data", flat=True).first()
        if data is None:
            raise FileNotFoundError(f"no picture file {name!r} in the database")
        return ContentFile(bytes(data), name=name)

    def _save(self, name: str, content) -> str:
        content.seek(0)
        PictureFile.objects.update_or_create(name=name, defaults={"data": content.read(), "created_at": clock.now()})
        return name

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        return name  # content-addressed: the same name is the same picture

    def exists(self, name: str) -> bool:
        return PictureFile.objects.filter(name=name).exists()

    def delete(self, name: str) -> None:
        PictureFile.objects.filter(name=name).delete()

    def size(self, name: str) -> int:
        if not self.exists(name):
            raise FileNotFoundError(f"no picture file {name!r} in the database")
        return len(self._open(name).read())

    def listdir(self, path: str) -> tuple[list[str], list[str]]:
        return [], list(PictureFile.objects.order_by("name").values_list("name", flat=True))

    def get_modified_time(self, name: str):
        created = PictureFile.objects.filter(name=name).values_list("created_at", flat=True).first()
        if created is None:
            raise FileNotFoundError(f"no picture file {name!r} in the database")
        return created
