"""Rotating the data key: `kami keys rotate-data-key` (docs/operations.md, "Rotating the data key").

1. Add: a new random data key goes first in `<data dir>/data_key` (the file is replaced whole,
   under a lock); the old keys stay to decrypt, and the fingerprint key is pinned in the file
   (`fingerprint:` entry, kami.core.crypto) so it never moves. Every running process reads the
   file again when it changes, so from this moment new keys are sealed under the new key and
   both old and new ciphertexts open everywhere.
2. Re-encrypt: the stored keys not yet under the new key are walked in id order, in batches.
   Each batch is one short transaction that locks its rows (skipping rows a sale holds at that
   moment: they are taken by the next pass), opens them, seals them under the new key and
   writes them back: a reader sees either the old ciphertext with the old key id or the new
   with the new, never half. Sold and void keys too (buyers open theirs on order pages). The
   gateway secrets and the bot token, sealed with the same keyring, follow.
   Nothing is remembered between runs: a run cut short (Ctrl-C, SIGKILL, a reboot) is resumed
   by running again, which finds the remaining rows by their key id; a row already moved is
   never touched again.
3. Retire: an old key leaves the keyring only when no stored row uses it any more.
"""
from __future__ import annotations

import fcntl
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.db.models import Count, Q

from kami.audit.services import audit_record
from kami.core.crypto import Keyring, KeyringError, keyring, keyring_path, sealed_rows
from kami.core.datadir import keyring_present
from kami.core.errors import BadInput, Conflict
from kami.payments.models import GatewayAccount
from kami.payments.registry import secrets_decrypt, secrets_encrypt
from kami.stock.models import Key
from kami.stock.vault import OPEN_COLUMNS, keys_reseal_rows

BATCH_SIZE = 500
PASSES = 5  # walks over the table at most per run; a later pass only finds rows a sale held


@dataclass
class RotationResult:
    key_id: str  # the data key everything is now sealed with
    added: bool  # whether this run added it
    keys_moved: int = 0
    secrets_moved: int = 0
    keys_left: int = 0  # still under an old key after the last pass (held by a long transaction)
    usage: dict[str, int] = field(default_factory=dict)


def keyring_source() -> str:
    return "KAMI_DATA_KEY" if os.environ.get("KAMI_DATA_KEY") else str(keyring_path())


def keyring_checked() -> Keyring:
    """The keyring, or a one-line error when there is none (keyring() would make one) or it
    does not parse."""
    if not keyring_present():
        raise BadInput(f"no data key at {keyring_source()}: there is nothing to rotate (Kami makes one with the first "
                       "key import); if keys are stored, restore data_key from your backup first (kami restore)")
    try:
        return keyring()
    except KeyringError as exc:
        raise BadInput(f"{keyring_source()}: {exc}") from None


def data_key_usage() -> dict[str, int]:
    """How many stored values each data key id seals: keys, gateway secrets, and what apps
    registered (kami.core.crypto.sealed_rows: the bot token, webhook secrets)."""
    usage: Counter[str] = Counter()
    for row in Key.objects.values("key_id").annotate(n=Count("id")).order_by():
        usage[row["key_id"]] += row["n"]
    for row in GatewayAccount.objects.exclude(secrets_key_id="").values("secrets_key_id").annotate(n=Count("id")).order_by():
        usage[row["secrets_key_id"]] += row["n"]
    for rows in sealed_rows():
        usage.update(rows.key_ids())
    return dict(usage)


def _stale_keys(target: str):
    """The stored keys not yet in the final form: under an older data key, or still in the old
    shared-AAD format (moved to the bound format on the way)."""
    return Key.objects.filter(~Q(key_id=target) | Q(seal=Key.Seal.SHARED))


def pending_count(target: str) -> int:
    """Stored rows under a data key other than `target`: a rotation is unfinished while any are
    left (old-format rows alone do not count: `kami keys reseal` or the next walk moves them)."""
    return (Key.objects.exclude(key_id=target).count()
            + GatewayAccount.objects.exclude(secrets_key_id="").exclude(secrets_key_id=target).count()
            + sum(1 for rows in sealed_rows() for key_id in rows.key_ids() if key_id != target))


def data_key_rotate(*, actor: str, resume_only: bool = False, batch_size: int = BATCH_SIZE, pause: float = 0.0,
                    on_start: Callable[[int], None] = lambda total: None,
                    on_progress: Callable[[int], None] = lambda done: None) -> RotationResult:
    """Start a rotation, or finish one cut short: when stored rows are still under an older data
    key, move them to the first one (never adding another); otherwise add a new data key first
    (unless `resume_only`) and move everything to it."""
    if batch_size < 1:
        raise BadInput(f"--batch-size {batch_size}: give at least 1 (default {BATCH_SIZE})")
    ring, added = keyring_checked(), False
    if not resume_only and not pending_count(ring.primary_id):
        ring, added = data_key_add(actor=actor, unless_pending=True)
    target = ring.primary_id
    on_start(_stale_keys(target).count())
    result = RotationResult(key_id=target, added=added)
    try:
        result.keys_moved, result.keys_left = _keys_reencrypt(target, batch_size=batch_size, pause=pause,
                                                              on_progress=on_progress)
        result.secrets_moved = _secrets_reencrypt(target)
    except KeyringError as exc:  # a row that does not open (altered, or its data key lost): nothing to move it with
        raise Conflict(f"{exc}. The rotation stopped there (the batches before it are moved); once that row is "
                       "dealt with, run `kami keys rotate-data-key --resume`") from None
    result.usage = data_key_usage()
    audit_record(actor=actor, action="data_key.rotate", obj_type="data_key", obj_id=target, added=added,
                 keys=result.keys_moved, secrets=result.secrets_moved, left=result.keys_left)
    return result


def data_key_add(*, actor: str, unless_pending: bool = False) -> tuple[Keyring, bool]:
    """(keyring, whether a key was added): a new data key first in the keyring file. With
    `unless_pending`, nothing is added when rows still wait for the first key (decided under the
    file's lock: two rotations started at once add one key, and the second resumes). Refused for
    KAMI_DATA_KEY, which no process can change for the others: `keyring_with_new_key` gives the
    value to set instead."""
    _file_only("add a data key")
    with _keyring_locked():
        ring = _file_keyring()
        if unless_pending and pending_count(ring.primary_id):
            return ring, False
        ring = ring.with_new_key()
        _keyring_write(ring)
    audit_record(actor=actor, action="data_key.add", obj_type="data_key", obj_id=ring.primary_id)
    return ring, True


def keyring_with_new_key() -> Keyring:
    """The keyring with a new first key, written nowhere (for a KAMI_DATA_KEY deployment).
    Refused while a rotation is unfinished: a third key would only lengthen it."""
    ring = keyring_checked()
    if waiting := pending_count(ring.primary_id):
        raise Conflict(f"{waiting:,} stored row(s) still wait to move to data key {ring.primary_id!r}: finish that "
                       "rotation first with `kami keys rotate-data-key --resume`")
    return ring.with_new_key()


def data_key_retire(*, key_id: str, actor: str, write: bool = True) -> Keyring:
    """The keyring less `key_id`, refused while any stored row is sealed with it. Written to the
    file unless `write` is false (KAMI_DATA_KEY: the caller shows the value to set)."""
    ring = keyring_checked()
    _without(ring, key_id)  # unknown id, or the newest: a one-line error before any query
    if write:
        _file_only("retire a data key")
    with _keyring_locked() if write else _nothing():
        ring = _file_keyring() if write else ring
        smaller = _without(ring, key_id)
        uses = data_key_usage().get(key_id, 0)
        if uses:
            raise Conflict(f"data key {key_id!r} still seals {uses:,} stored row(s): run `kami keys rotate-data-key "
                           "--resume` until it reports none left, then retire it")
        if write:
            _keyring_write(smaller)
    audit_record(actor=actor, action="data_key.retire", obj_type="data_key", obj_id=key_id, written=write)
    return smaller


def _without(ring: Keyring, key_id: str) -> Keyring:
    try:
        return ring.without(key_id)
    except KeyringError as exc:
        raise BadInput(str(exc)) from None


def _keys_reencrypt(target: str, *, batch_size: int, pause: float, on_progress) -> tuple[int, int]:
    """(keys moved, keys left): batches in id order until a pass finds nothing left."""
    moved = 0
    for _ in range(PASSES):
        last = 0
        while rows := _batch_reencrypt(target, after=last, size=batch_size):
            moved, last = moved + rows[0], rows[1]
            on_progress(moved)
            if pause:
                time.sleep(pause)
        left = _stale_keys(target).count()
        if not left:
            return moved, 0
        time.sleep(0.2)  # rows a sale held: it commits in milliseconds
    return moved, left


def _batch_reencrypt(target: str, *, after: int, size: int) -> tuple[int, int] | None:
    """One batch: (rows moved, last id seen), or None when no row after `after` needs moving."""
    if keyring().primary_id != target:
        raise Conflict(f"the keyring changed during the rotation (another rotate-data-key?): its first key is now "
                       f"{keyring().primary_id!r}, not {target!r}; run `kami keys rotate-data-key --resume`")
    with transaction.atomic():  # one batch: its rows locked, sealed again and written whole; SKIP LOCKED leaves sales alone
        rows = list(_stale_keys(target).filter(id__gt=after).order_by("id").select_for_update(skip_locked=True)
                    .values_list(*OPEN_COLUMNS, "product_id")[:size])
        if not rows:
            return None
        sealed = [(key_id, blob, Key.Seal.BOUND.value, pk) for pk, key_id, blob in keys_reseal_rows(rows)]
        with connection.cursor() as cursor:
            cursor.executemany(_reseal_update(), sealed)
    return len(rows), rows[-1][0]


def _reseal_update() -> str:
    """One UPDATE by primary key, run for every row of the batch (executemany): Django's
    bulk_update builds a CASE of the whole batch per column, several times slower here."""
    q = connection.ops.quote_name
    return (f"UPDATE {q(Key._meta.db_table)} SET {q('key_id')} = %s, {q('ciphertext')} = %s, {q('seal')} = %s "
            f"WHERE {q('id')} = %s")


def _secrets_reencrypt(target: str) -> int:
    """The gateway secrets, a row at a time (there are a handful), then what apps registered."""
    moved = 0
    stale = GatewayAccount.objects.exclude(secrets_key_id="").exclude(secrets_key_id=target)
    for pk in stale.values_list("pk", flat=True):
        with transaction.atomic():  # one account: read locked, sealed again, written
            account = GatewayAccount.objects.select_for_update().get(pk=pk)
            if account.secrets_key_id in ("", target):
                continue  # moved meanwhile (saved again by `kami gateway set`)
            key_id, blob = secrets_encrypt(account.name, secrets_decrypt(account))
            moved += GatewayAccount.objects.filter(pk=pk).update(secrets_key_id=key_id, secrets_ciphertext=blob)
    for rows in sealed_rows():
        moved += rows.move(target)
    return moved


def _file_only(what: str) -> None:
    if os.environ.get("KAMI_DATA_KEY"):
        raise Conflict(f"the keyring comes from KAMI_DATA_KEY, which Kami cannot rewrite, so it cannot {what} itself: "
                       "add --print to get the new value, set KAMI_DATA_KEY to it on every web and worker machine and "
                       "restart them (docs/operations.md, \"Rotating the data key\")")


def _file_keyring() -> Keyring:
    try:
        return Keyring.parse(keyring_path().read_text())
    except KeyringError as exc:
        raise BadInput(f"{keyring_path()}: {exc}") from None


@contextmanager
def _keyring_locked() -> Iterator[None]:
    """One writer of the keyring file at a time (two rotations at once would each add a key)."""
    fd = os.open(keyring_path().with_name("data_key.lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _keyring_write(ring: Keyring) -> None:
    """Replace the keyring file whole: a reader (every process re-reads it when it changes) sees
    the old file or the new, never half of one, and a crash leaves one of the two."""
    path = keyring_path()
    partial = path.with_name("data_key.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(ring.text())
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
