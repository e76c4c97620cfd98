"""Idempotency-Key on every POST (docs/api.md): the first request with a key runs; a repeat with
the same token, key, method, path and body gets the first answer back and runs nothing again;
the same key with another request is refused (422).

Who is first is decided by the database: inserting the record is its own short transaction, and
the unique (token, key) constraint lets exactly one insert win (an IntegrityError is the normal
"someone was first" outcome). The work then runs outside that transaction (a refund calls a
gateway: nothing slow under a lock), and its answer is stored. A repeat that arrives while the
first still runs waits for the answer. A first request that fails unexpectedly (a 5xx) leaves no
answer: its record is removed, so a retry with the same key runs the work.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse

from kami.api.merchant.problems import MEDIA_TYPE, Problem, problem_body, problem_from_error
from kami.api.models import IdempotencyRecord
from kami.core import clock
from kami.core.errors import KamiError

KEY_MAX = 255
WAIT_SECONDS = 30.0  # how long a repeat waits for the first request's answer
KEEP = timedelta(hours=24)  # answers are kept this long; then the key may be used again
HEADER_DOC = ("A unique string per operation (a UUID is good), at most 255 printable ASCII characters. "
              "A repeat with the same key returns the first answer; reusing it for another request is refused.")
HEADER_RULES = {"description": HEADER_DOC, "min_length": 1, "max_length": KEY_MAX, "pattern": r"^[\x20-\x7e]+$"}

Work = Callable[[], tuple[int, dict]]


def idempotent(request: HttpRequest, *, key: str | None, run: Work, body: bytes | None = None) -> HttpResponse:
    """Run `run` (→ status, JSON body) once per (token, key); answer repeats from the record.
    `body` stands for the request's body where that cannot be read again (a multipart upload,
    already streamed to a file: the caller passes the file's digest and the form's fields)."""
    key = _checked(key)
    digest = hashlib.sha256(b"%s %s\n" % (request.method.encode(), request.get_full_path().encode())
                            + (request.body if body is None else body)).hexdigest()
    for _ in range(3):
        record, first = _claim(request.auth, key, digest)
        if first:
            return _run_first(record, request, run)
        if record is None:
            continue  # the first request failed and let go of the key: try to be first
        if record.request_hash != digest:
            raise Problem(422, "idempotency-key-reused", f"Idempotency-Key {key!r} was used for another request "
                                                         "(another path or body); use a new key for a new request")
        record = _wait(record)
        if record is None:
            continue  # the first request failed while this one waited: try to be first
        if record.state == IdempotencyRecord.State.DONE:
            return _response(record, replayed=True)
        break
    raise Problem(409, "idempotency-key-in-progress", f"a request with Idempotency-Key {key!r} is still running; "
                                                      "retry in a few seconds", headers={"Retry-After": "5"})


def _checked(key: str | None) -> str:
    if not key:
        raise idempotency_key_missing()
    if len(key) > KEY_MAX or not key.isascii() or not key.isprintable():
        raise Problem(400, "invalid", f"Idempotency-Key: at most {KEY_MAX} printable ASCII characters")
    return key


def idempotency_key_missing() -> Problem:
    return Problem(400, "idempotency-key-missing", "send an Idempotency-Key header on every POST (a new UUID for each "
                                                   "operation; the same one when you retry it)")


def _claim(token, key: str, digest: str) -> tuple[IdempotencyRecord | None, bool]:
    now = clock.now()
    # Expired answers first (served by the created_at index), so an expired key starts afresh.
    IdempotencyRecord.objects.filter(created_at__lt=now - KEEP).delete()
    try:
        with transaction.atomic():  # the insert alone: the unique constraint picks the one first request
            return IdempotencyRecord.objects.create(token=token, key=key, request_hash=digest, created_at=now), True
    except IntegrityError:
        return IdempotencyRecord.objects.filter(token=token, key=key).first(), False


def _run_first(record: IdempotencyRecord, request: HttpRequest, run: Work) -> HttpResponse:
    try:
        status, body = run()
        content_type = "application/json"
    except (Problem, KamiError) as exc:
        problem = exc if isinstance(exc, Problem) else problem_from_error(exc)
        if problem.status >= 500:
            record.delete()  # nothing answered: a retry with this key may run the work
            raise problem from None
        status, content_type = problem.status, MEDIA_TYPE
        body = problem_body(status=problem.status, kind=problem.kind, detail=problem.detail, instance=request.path,
                            **problem.extra)
    except BaseException:
        record.delete()
        raise
    record.state, record.status_code, record.content_type = IdempotencyRecord.State.DONE, status, content_type
    record.body = json.dumps(body)
    record.save(update_fields=["state", "status_code", "content_type", "body"])
    return _response(record, replayed=False)


def _wait(record: IdempotencyRecord) -> IdempotencyRecord | None:
    """The record once done, still running after WAIT_SECONDS, or None if it vanished (the first
    request failed)."""
    deadline, pause = time.monotonic() + WAIT_SECONDS, 0.02
    while record.state != IdempotencyRecord.State.DONE:
        if time.monotonic() > deadline:
            return record
        time.sleep(pause)
        pause = min(pause * 2, 0.5)
        record = IdempotencyRecord.objects.filter(pk=record.pk).first()
        if record is None:
            return None
    return record


def _response(record: IdempotencyRecord, *, replayed: bool) -> HttpResponse:
    response = HttpResponse(record.body, status=record.status_code, content_type=record.content_type)
    response["Cache-Control"] = "no-store"
    if replayed:
        response["Idempotent-Replayed"] = "true"
    return response
