"""The data directory: the SQLite file and, unless the environment gives them, the generated
Django secret key and the data-encryption keyring.

Everything in it is the owner's alone: the directory is 0700 and every Kami process runs with
umask 077, so the SQLite file, its journal, mail files, logos and uploads are created 0600 (0700
for directories) whoever creates them. Losing the keyring loses every stored key, so the first
time it is created we say so, loudly and once.
"""
from __future__ import annotations

import base64
import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger("kami.datadir")


def data_dir() -> Path:
    os.umask(0o077)  # before anything is created: files 0600, directories 0700
    path = Path(os.environ.get("KAMI_DATA_DIR", "var")).expanduser().resolve()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    _owner_only(path)
    return path


def _owner_only(path: Path) -> None:
    """A data dir made before Kami kept it private (0755) still opens its database and mail to
    every local user: close it, once, and say so."""
    mode = path.stat().st_mode & 0o777
    if not mode & 0o077:
        return
    try:
        path.chmod(0o700)
    except OSError as exc:  # not ours to change: say what to do
        log.warning("the data dir %s is readable by other users (mode %o) and Kami cannot change that (%s): "
                    "run `chmod 700 %s`", path, mode, exc.strerror, path)
        return
    log.warning("the data dir %s was readable by other users (mode %o): now 0700", path, mode)


def _write_private(path: Path, text: str) -> None:
    """Create `path` holding `text`, or leave nothing: a half-written key file (a full disk) would
    be read as the key at the next start."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as exc:
        path.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not exc.filename:  # a failed write names no file: say which
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def secret_key() -> str:
    if os.environ.get("KAMI_SECRET_KEY"):
        return os.environ["KAMI_SECRET_KEY"]
    path = data_dir() / "secret_key"
    if not path.exists():
        try:
            _write_private(path, secrets.token_urlsafe(50))
        except FileExistsError:
            pass  # another process created it first
    return path.read_text().strip()


def admin_path() -> str:
    """The back office's URL path: `KAMI_ADMIN_PATH`, or `manage-<random>` generated once into
    `<data dir>/admin_path`, so no shop's admin sits at a guessable /admin/."""
    configured = os.environ.get("KAMI_ADMIN_PATH", "").strip().strip("/")
    if configured:
        return configured
    path = data_dir() / "admin_path"
    if not path.exists():
        try:
            _write_private(path, f"manage-{secrets.token_urlsafe(9)}\n")
        except FileExistsError:
            pass  # another process created it first
    return path.read_text().strip()


def keyring_present() -> bool:
    """Whether a keyring exists (KAMI_DATA_KEY or <data dir>/data_key): keyring_text() makes one otherwise."""
    return bool(os.environ.get("KAMI_DATA_KEY")) or (data_dir() / "data_key").exists()


def keyring_text() -> str:
    """The keyring as text: `KAMI_DATA_KEY` or the generated file `<data dir>/data_key`.

    Format: comma-separated `id:base64(32 bytes)` entries, newest (used to encrypt) first.
    A bare base64 key is accepted too; its id is derived from it.
    """
    if os.environ.get("KAMI_DATA_KEY"):
        return os.environ["KAMI_DATA_KEY"]
    path = data_dir() / "data_key"
    if not path.exists():
        key_id = "k" + secrets.token_hex(3)
        material = base64.b64encode(secrets.token_bytes(32)).decode()
        try:
            _write_private(path, f"{key_id}:{material}\n")
        except FileExistsError:
            return path.read_text().strip()
        log.warning(
            "Generated a new data-encryption key at %s. Every stored card key is encrypted with it: "
            "if this file is lost, every stored key is lost. Back it up now, apart from the database "
            "(or move its contents into the KAMI_DATA_KEY environment variable).",
            path,
        )
    return path.read_text().strip()
