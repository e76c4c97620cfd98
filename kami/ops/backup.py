"""`kami backup FILE` and `kami restore FILE`: the database and the data dir's secrets in one
file, encrypted with a passphrase (kami.ops.archive has the file format).

Inside (a gzip'd tar): `manifest.json` (format, engine, when, the last migration of each app),
the database dump (kami.ops.dumps), and `data/`: `data_key` (the keyring, from KAMI_DATA_KEY or
the data dir — without it no stored key opens), `secret_key` (order links in sent emails stay
valid), `admin_path`, and the `pictures/` and `shop/` folders (product pictures, the logo).

A restore goes only into an empty database (a new one, or one whose tables were dropped): it
never merges a backup into a live shop, which would sell keys twice."""
from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder

from kami.core import clock
from kami.core.crypto import keyring
from kami.core.datadir import keyring_present, keyring_text
from kami.core.errors import BadInput, Conflict
from kami.ops.archive import OpeningReader, SealingWriter
from kami.ops.dumps import DUMP_NAMES, database_dump, database_load, database_tables
from kami.stock.models import Key

FORMAT = 1
SECRET_FILES = ("data_key", "secret_key", "admin_path")
FOLDERS = ("pictures", "shop")
MIN_PASSPHRASE = 12


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    engine: str
    tables: int


def backup_write(*, path: Path, passphrase: str) -> BackupResult:
    if len(passphrase) < MIN_PASSPHRASE:
        raise BadInput(f"the passphrase is {len(passphrase)} characters: use at least {MIN_PASSPHRASE}")
    tables = len(database_tables())
    if tables and not keyring_present() and Key.objects.exists():  # keyring() would make a new, useless key
        raise BadInput("no data key (KAMI_DATA_KEY or <data dir>/data_key), and keys are stored: a backup without "
                       "the key that opens them is worthless; point KAMI_DATA_DIR at the shop's data dir or set KAMI_DATA_KEY")
    keyring()  # refuse to back up a shop whose keyring does not even parse
    if not tables:
        raise BadInput("the database is empty: nothing to back up (is DATABASE_URL the shop's database?)")
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    with tempfile.TemporaryDirectory(prefix="kami-backup-") as work:
        dump = Path(work) / DUMP_NAMES[connection.vendor]
        database_dump(dump)
        try:
            with open(partial, "wb") as out, SealingWriter(out, passphrase) as sealed, \
                    tarfile.open(fileobj=sealed, mode="w|gz") as tar:
                _archive_fill(tar, dump)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    partial.replace(path)  # a crash mid-backup never leaves a half file under the real name
    return BackupResult(path=path, size=path.stat().st_size, engine=connection.vendor, tables=tables)


def _archive_fill(tar: tarfile.TarFile, dump: Path) -> None:
    _add_bytes(tar, "manifest.json", json.dumps(_manifest(), indent=1).encode())
    tar.add(dump, arcname=dump.name)
    _add_bytes(tar, "data/data_key", keyring_text().encode())
    _add_bytes(tar, "data/secret_key", settings.SECRET_KEY.encode())
    _add_bytes(tar, "data/admin_path", settings.KAMI_ADMIN_PATH.encode())
    for folder in FOLDERS:
        if (settings.DATA_DIR / folder).is_dir():
            tar.add(settings.DATA_DIR / folder, arcname=f"data/{folder}")


def _manifest() -> dict:
    last: dict[str, str] = {}
    for app, name in MigrationRecorder.Migration.objects.order_by("id").values_list("app", "name"):
        last[app] = name
    return {"format": FORMAT, "engine": connection.vendor, "created_at": clock.now().isoformat(), "migrations": last,
            "dump": DUMP_NAMES[connection.vendor]}


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o600, int(clock.now().timestamp())
    tar.addfile(info, io.BytesIO(data))


@dataclass(frozen=True)
class RestoreResult:
    engine: str
    created_at: str
    data_key_written: bool
    behind: tuple[str, ...] = ()  # apps whose migrations this Kami has beyond the backup's: run `kami migrate`


def backup_restore(*, path: Path, passphrase: str) -> RestoreResult:
    """Open and check the whole file first, then load the database, then write the data dir's
    files. Refuses a database that has tables and a data dir holding another data key."""
    tables = database_tables()
    if tables:
        raise Conflict(f"the database already has {len(tables)} tables: restore only into an empty database "
                       "(create a new one and point DATABASE_URL at it, or drop this one's tables)")
    with tempfile.TemporaryDirectory(prefix="kami-restore-") as work:
        work = Path(work)
        _unpack(path, passphrase, work)
        manifest = json.loads((work / "manifest.json").read_text())
        if manifest.get("format") != FORMAT:
            raise BadInput(f"backup format {manifest.get('format')!r}: this Kami reads format {FORMAT}; use a newer Kami")
        if manifest["engine"] != connection.vendor:
            raise BadInput(f"this backup is of a {manifest['engine']} database and DATABASE_URL is {connection.vendor}: "
                           "restore into the same kind of database")
        behind = _migrations_check(manifest.get("migrations") or {})
        written = _secrets_check(work / "data")
        database_load(work / manifest["dump"])
        _data_files_write(work / "data")
    return RestoreResult(engine=manifest["engine"], created_at=manifest["created_at"], data_key_written=written,
                         behind=behind)


def _migrations_check(recorded: dict[str, str]) -> tuple[str, ...]:
    """Refuse a backup made by a newer Kami (a migration this code does not know: its tables would
    not match the code, and no `kami migrate` could mend that), before anything is loaded. Returns
    the apps this Kami has newer migrations for, which `kami migrate` applies after the restore."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    unknown = sorted(f"{app}.{name}" for app, name in recorded.items()
                     if app in loader.migrated_apps and (app, name) not in loader.disk_migrations)
    if unknown:
        raise BadInput(f"this backup was made by a newer Kami (migrations {', '.join(unknown[:4])}"
                       f"{' …' if len(unknown) > 4 else ''} are unknown here): install that version of Kami or a newer "
                       "one, then restore")
    leaves = dict(loader.graph.leaf_nodes())
    return tuple(sorted(app for app, leaf in leaves.items() if app in recorded and recorded[app] != leaf))


def _unpack(path: Path, passphrase: str, work: Path) -> None:
    try:
        source = open(path, "rb")
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}") from None
    with source, OpeningReader(source, passphrase) as opened, tarfile.open(fileobj=opened, mode="r|gz") as tar:
        tar.extractall(work, filter="data")  # no absolute paths, no links out of `work`


def _secrets_check(data: Path) -> bool:
    """Before anything is written: the data key here must be the backup's, or absent. Returns
    whether the backup's data key will be written to the data dir."""
    theirs = (data / "data_key").read_text().strip()
    if os.environ.get("KAMI_DATA_KEY"):
        if os.environ["KAMI_DATA_KEY"].strip() != theirs:
            raise Conflict("KAMI_DATA_KEY is not the backup's data key: unset it (the backup's is then written to "
                           f"{settings.DATA_DIR / 'data_key'}) or set it to the backup's")
        return False
    ours = settings.DATA_DIR / "data_key"
    if ours.exists() and ours.read_text().strip() != theirs:
        raise Conflict(f"{ours} holds another data key: move it away (keep it!) and run the restore again")
    return not ours.exists()


def _data_files_write(data: Path) -> None:
    """The backup's data key (when none is here), and its secret key and admin path: links in
    emails already sent keep working, the back office stays where it was. What this data dir
    generated for itself at startup, with an empty database, protected nothing."""
    for name in SECRET_FILES:
        target = settings.DATA_DIR / name
        if not (data / name).exists() or (name == "data_key" and target.exists()):
            continue
        if (name == "secret_key" and os.environ.get("KAMI_SECRET_KEY")) or (name == "admin_path" and os.environ.get("KAMI_ADMIN_PATH")):
            continue
        target.unlink(missing_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write((data / name).read_text().strip() + "\n")
    for folder in FOLDERS:
        if (data / folder).is_dir():
            shutil.copytree(data / folder, settings.DATA_DIR / folder, dirs_exist_ok=True)
