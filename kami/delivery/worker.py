"""The delivery worker (DESIGN.md §2 "Worker", invariants 7 and 8).

    claim (short txn, SKIP LOCKED, lease) → commit → send (no txn) → record (short txn, only
    if the lease is still ours) → sent | failed + backoff | manual + admin alert

A pass's database work barely grows with its messages: the email channel reads the orders and
keys of all its key emails in one query and checks each order with one short read before its
email (a refund or a replacement since is seen), the accepted sends are recorded together (SentLater),
and the lease is asked of the database before a send only when the worker cannot know it still
holds it (`_lease_held`). A failure is recorded on its own, at once, with its own backoff.

Several workers on several machines may run at once: a row is leased to one worker at a time,
and a worker that died mid-delivery is noticed when its lease runs out — a short lease, renewed
while the worker lives (kami/delivery/leases.py), so that takes seconds. That counts as an
attempt (its outcome is unknown), so even a message that kills every worker ends `manual`.

A pass's messages go out over up to KAMI_WORKER_SENDERS connections at once (`Senders`): a remote
relay takes 50–500 ms to accept a message, and a drop's emails one after another would take minutes.

A database restart mid-batch does not strand the batch: a result already sent is recorded once
the database answers again, and what was not sent yet is handed back (DATABASE_WAIT_SECONDS).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime, timedelta

from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connection, connections, transaction
from django.db.models import Case, F, QuerySet, Value, When

from kami.core import clock
from kami.core.errors import NotFound
from kami.delivery import backoff
from kami.delivery.channels import Deferred, PermanentFailure, TemporaryFailure, channel_get, channels_batch
from kami.delivery.heartbeats import Heartbeat
from kami.delivery.leases import LeaseKeeper, lease_end, lease_surely_held, lease_token_new
from kami.delivery.models import DeliveryAttempt, OutboxMessage
from kami.delivery.services import admin_alert, delivery_escalation_handler
from kami.delivery.wake import OutboxListener
from kami.orders.models import Order

log = logging.getLogger("kami.delivery.worker")
S = OutboxMessage.Status
LEASE_EXPIRED = "lease expired: the worker stopped mid-delivery, outcome unknown"
CONNECTION_LOST = (OperationalError, InterfaceError)  # the database went away (a restart), not a channel failure
DATABASE_WAIT_SECONDS = 60  # how long a batch waits for a restarting database before letting its leases lapse
RECORD_WITHIN_SECONDS = 1.0  # a pass records its accepted sends together, but none waits longer than this


def due_querysets(now: datetime) -> list[QuerySet]:
    """What a claim takes, in this order: rows whose worker died mid-delivery (rare), new
    deliveries, then retries. Three queries, not one with OR: each walks the (status,
    next_attempt_at) index in order and stops at the limit. An OR or a mixed ORDER BY makes
    MariaDB sort, and lock every due row while doing so, so the other workers found nothing."""
    rows = OutboxMessage.objects.select_for_update(skip_locked=True)
    return [
        rows.filter(status=S.SENDING, lease_until__lt=now).order_by("next_attempt_at", "id"),
        rows.filter(status=S.PENDING, next_attempt_at__lte=now).order_by("next_attempt_at", "id"),
        rows.filter(status=S.FAILED, next_attempt_at__lte=now).order_by("next_attempt_at", "id"),
    ]


def outbox_claim(*, worker_id: str, limit: int = 50) -> list[OutboxMessage]:
    """Lease up to `limit` due messages to this worker and commit, before anything is sent.
    Each returned message carries `claimed_status`, the status it had before the claim."""
    now = clock.now()
    lease, token = lease_end(), lease_token_new()
    claimed: list[OutboxMessage] = []
    with transaction.atomic():  # the claim: rows locked (others' skipped) only for as long as it takes to lease them
        rows: list[OutboxMessage] = []
        for due in due_querysets(now):
            if len(rows) < limit:
                rows += due[:limit - len(rows)]
        for row in rows:
            row.claimed_status = row.status
            if row.status == S.SENDING:  # its worker died: count that attempt, so retries stay bounded
                row.attempts += 1
                row.claimed_status = S.FAILED
                DeliveryAttempt.objects.create(message=row, at=now, ok=False, error=LEASE_EXPIRED, worker=worker_id[:100])
                if row.attempts >= backoff.max_attempts(backoff.schedule(row.channel)):
                    OutboxMessage.objects.filter(id=row.id).update(
                        status=S.MANUAL, attempts=row.attempts, lease_until=None, lease_token="", last_error=LEASE_EXPIRED)
                    log.error("outbox #%s %s via %s: manual (attempt %s): %s", row.id, row.kind, row.channel,
                              row.attempts, LEASE_EXPIRED)
                    _escalate(row, LEASE_EXPIRED)
                    continue
                OutboxMessage.objects.filter(id=row.id).update(attempts=row.attempts)
            row.status, row.lease_until, row.lease_token = S.SENDING, lease, token
            claimed.append(row)
        OutboxMessage.objects.filter(id__in=[m.id for m in claimed]).update(
            status=S.SENDING, lease_until=lease, lease_token=token)
    return claimed


def outbox_release(messages: list[OutboxMessage]) -> int:
    """Give back leased messages this worker will not perform (shutting down), so others can take
    them now instead of after the lease runs out."""
    released = 0
    for m in messages:
        released += OutboxMessage.objects.filter(id=m.id, status=S.SENDING, lease_token=m.lease_token).update(
            status=getattr(m, "claimed_status", S.FAILED), lease_until=None, lease_token="")
    return released


def outbox_perform(message: OutboxMessage, *, worker_id: str) -> str:
    """Send one claimed message and record the result. Returns the outcome:
    sent | failed (retry scheduled) | manual | deferred | lost (the lease passed to another worker)."""
    sent = SentLater(worker_id)
    outcome = _perform(message, worker_id=worker_id, sent=sent)
    return outcome or sent.record()[0]


def _perform(message: OutboxMessage, *, worker_id: str, sent: SentLater) -> str | None:
    """Send one claimed message. A failure (or a deferral) is recorded now and its outcome
    returned; a message its channel accepted joins `sent`, recorded with the others (None)."""
    if transaction.get_connection().in_atomic_block:
        raise RuntimeError("outbox_perform must run outside a transaction: nothing slow while holding locks")
    if not _lease_held(message):
        log.info("outbox #%s %s: lease taken over by another worker, skipped", message.id, message.kind)
        return "lost"
    error, permanent = None, False
    try:
        channel_get(message.channel).send(message)
    except CONNECTION_LOST:
        raise  # the database, not the channel: nothing was sent, the pass hands the message back
    except Deferred as exc:
        return _when_database_answers(lambda: _defer(message, exc))
    except (PermanentFailure, NotFound) as exc:
        error, permanent = _short(exc), True
    except TemporaryFailure as exc:
        error = _short(exc)
    except Exception as exc:  # noqa: BLE001 — an unexpected error is retried like any other
        error = _short(exc)
        log.warning("outbox #%s %s via %s: unexpected %s", message.id, message.kind, message.channel,
                    type(exc).__name__, exc_info=True)
    _test_pause("sent")
    if error is None:
        sent.add(message)
        return None
    outcome = _when_database_answers(lambda: _record_failure(message, worker_id=worker_id, error=error, permanent=permanent))
    _log_outcome(message, outcome, error)
    return outcome


def _log_outcome(message: OutboxMessage, outcome: str, error: str | None) -> None:
    # lost here means our lease ran out mid-send: another worker may have delivered it as well
    level = {"sent": logging.INFO, "failed": logging.WARNING, "lost": logging.WARNING}.get(outcome, logging.ERROR)
    log.log(level, "outbox #%s %s via %s: %s (attempt %s)%s", message.id, message.kind, message.channel, outcome,
            message.attempts, f": {error}" if error else "")


def _lease_held(message: OutboxMessage) -> bool:
    """Whether the row is still ours, just before sending: known without a round trip while the
    lease this worker wrote (claim or LeaseKeeper) has a renewal period to run; otherwise (a
    stalled renewal, a clock jump) asked of the database by extending it, as before."""
    return lease_surely_held(message) or _lease_renew(message)


def _lease_renew(message: OutboxMessage) -> bool:
    """Extend our lease just before sending; False when another worker has re-claimed the row."""
    lease = lease_end()
    mine = OutboxMessage.objects.filter(id=message.id, status=S.SENDING, lease_token=message.lease_token).update(
        lease_until=lease)
    if mine:
        message.lease_until = lease
    return bool(mine)


def _defer(message: OutboxMessage, deferred: Deferred) -> str:
    """The channel chose to wait (kami.delivery.channels.Deferred): back to the status it was
    claimed in, due at `until`, no attempt counted. Applies only while the lease is ours."""
    mine = OutboxMessage.objects.filter(id=message.id, status=S.SENDING, lease_token=message.lease_token).update(
        status=getattr(message, "claimed_status", S.PENDING), next_attempt_at=deferred.until, lease_until=None,
        lease_token="")
    log.info("outbox #%s %s via %s: deferred to %s: %s", message.id, message.kind, message.channel,
             deferred.until, deferred)
    return "deferred" if mine else "lost"


def _record_failure(message: OutboxMessage, *, worker_id: str, error: str, permanent: bool) -> str:
    """A failed send, recorded at once and alone (accepted ones wait in SentLater): retried after
    its backoff, or `manual` with an alert once permanent or out of attempts."""
    now = clock.now()
    plan = backoff.schedule(message.channel)
    attempts = message.attempts + 1
    if permanent or attempts >= backoff.max_attempts(plan):
        fields = {"status": S.MANUAL, "last_error": error}
    else:
        fields = {"status": S.FAILED, "last_error": error,
                  "next_attempt_at": now + timedelta(seconds=backoff.delay(attempts, plan))}
    fields.update(attempts=attempts, lease_until=None, message_id=message.message_id)
    with transaction.atomic():  # the result and its attempt row together; applies only while the lease is ours
        mine = OutboxMessage.objects.filter(id=message.id, status=S.SENDING, lease_token=message.lease_token).update(
            lease_token="", **fields)
        note = error if mine else f"late, lease lost: {error}"
        DeliveryAttempt.objects.create(message_id=message.id, at=now, ok=False, error=note, worker=worker_id[:100])
        if not mine:
            return "lost"
        for name, value in fields.items():
            setattr(message, name, value)
        if message.status == S.MANUAL:
            _escalate(message, error)
    return str(message.status)


class SentLater:
    """Messages of a pass that their channel accepted, not recorded yet: recorded together in one
    short transaction (`_record_sent`) at the end of the pass, or sooner once the oldest has
    waited RECORD_WITHIN_SECONDS. A send is never marked sent before it was accepted, and an
    accepted one is recorded whatever happens to the messages after it (run_pass records in a
    `finally`). What a crash between the two costs is what it cost with one record per message,
    only for up to a pass: the lease lapses and the email goes again, with the same Message-ID."""

    def __init__(self, worker_id: str):
        self.worker_id, self.messages, self.since = worker_id, [], 0.0
        self.lock = threading.Lock()  # a pass's senders add to it and record it from their own threads

    def add(self, message: OutboxMessage) -> None:
        with self.lock:
            if not self.messages:
                self.since = time.monotonic()
            self.messages.append(message)

    def overdue(self) -> bool:
        return bool(self.messages) and time.monotonic() - self.since >= RECORD_WITHIN_SECONDS

    def record(self) -> list[str]:
        """Record what is waiting; the outcome per message (sent, or lost if its lease passed to
        another worker). Given up after DATABASE_WAIT_SECONDS without a database: the leases lapse."""
        with self.lock:
            messages, self.messages = self.messages, []
        if not messages:
            return []
        outcomes = _when_database_answers(lambda: _record_sent(messages, worker_id=self.worker_id))
        for message, outcome in zip(messages, outcomes):
            _log_outcome(message, outcome, None)
        return outcomes


def _record_sent(messages: list[OutboxMessage], *, worker_id: str) -> list[str]:
    """The record of accepted messages, all at once: which rows are still ours (one SELECT … FOR
    UPDATE), one UPDATE for those, one INSERT of every attempt row. A row whose lease passed to
    another worker keeps the other's state and gets a late attempt row, as in `_record_failure`."""
    now, tokens = clock.now(), {m.id: m.lease_token for m in messages}
    with transaction.atomic():  # the results and their attempt rows together; applied only where the lease is ours
        held = OutboxMessage.objects.select_for_update().filter(id__in=tokens, status=S.SENDING)
        mine = {pk for pk, token in held.values_list("id", "lease_token") if token == tokens[pk]}
        if mine:
            message_ids = [When(id=m.id, then=Value(m.message_id)) for m in messages if m.id in mine]
            OutboxMessage.objects.filter(id__in=mine).update(
                status=S.SENT, sent_at=now, last_error="", attempts=F("attempts") + 1, lease_until=None,
                lease_token="", message_id=Case(*message_ids, default=F("message_id")))
        DeliveryAttempt.objects.bulk_create([
            DeliveryAttempt(message_id=m.id, at=now, ok=True, error="" if m.id in mine else "late, lease lost: sent",
                            worker=worker_id[:100]) for m in messages])
    for m in messages:
        if m.id in mine:
            m.status, m.sent_at, m.last_error, m.attempts, m.lease_until = S.SENT, now, "", m.attempts + 1, None
    return [str(S.SENT) if m.id in mine else "lost" for m in messages]


def _escalate(message: OutboxMessage, error: str) -> None:
    """Out of attempts: a human is told (inside the caller's transaction, through the outbox)."""
    handler = delivery_escalation_handler(message.kind)
    if handler is not None:  # a kind that escalates its own way (kami.delivery.services._escalations)
        handler(message, error)
        return
    if message.kind == "admin_alert":  # never alert about an alert: the log is the last resort
        log.error("outbox #%s: admin alert %r could not be delivered (%s); it stays in the outbox as manual",
                  message.id, (message.payload or {}).get("subject", ""), error)
        return
    params = {"message_id": message.id, "kind": message.kind, "channel": message.channel, "target": message.target,
              "attempts": message.attempts, "error": error}
    text = "delivery_manual"
    if message.kind == "order_keys":
        order_id = (message.payload or {}).get("order_id")
        params["order_no"] = Order.objects.filter(id=order_id).values_list("order_no", flat=True).first() or f"#{order_id}"
        text = "delivery_manual.order_keys"
    admin_alert(event="delivery_manual", dedupe_key=str(message.id), text=text, params=params)


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if not isinstance(exc, (PermanentFailure, TemporaryFailure, NotFound)):
        text = f"{type(exc).__name__}: {text}"
    return " ".join(text.split())[:300]


class Senders:
    """Threads that send beside a pass's own, each with its own database connection and its own
    channel connections (one SMTP session each): `count` deliveries go out at once. Kept for the
    worker's life, so a pass costs no new connections; `close()` ends them and their connections.
    `Senders(1)` is the pass's thread alone."""

    def __init__(self, count: int):
        self.count = count
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.threads = [threading.Thread(target=self._serve, name=f"kami-sender-{n}", daemon=True)
                        for n in range(1, count)]
        for thread in self.threads:
            thread.start()

    def _serve(self) -> None:
        try:
            while (job := self.jobs.get()) is not None:
                future, action = job
                if future.set_running_or_notify_cancel():
                    try:
                        close_old_connections()  # a long-lived thread: drop a connection the database closed
                        future.set_result(action())
                    except BaseException as exc:  # noqa: BLE001 — handed to the pass, which raises it
                        future.set_exception(exc)
        finally:
            connections.close_all()  # this thread's own

    def run(self, actions: list[Callable[[], object]]) -> list[object]:
        """Run the actions at once, the first in this thread; their results in order. Every action
        finishes (each releases what it did not send when stopped) before the first error is raised."""
        futures: list[Future] = []
        for action in actions[1:]:
            futures.append(Future())
            self.jobs.put((futures[-1], action))
        try:
            first = actions[0]()
        finally:
            rest = [f.exception() or f.result() for f in futures]  # waits for each
        for result in rest:
            if isinstance(result, BaseException):
                raise result
        return [first, *rest]

    def close(self) -> None:
        for _ in self.threads:
            self.jobs.put(None)
        for thread in self.threads:
            thread.join(timeout=30)  # each finishes the delivery it is on, then closes its connection

    def __enter__(self) -> Senders:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_pass(*, worker_id: str, limit: int = 50, stop_event: threading.Event | None = None,
             senders: Senders | None = None) -> Counter:
    """One claim and the deliveries it got; outcome counts. Stops between messages when
    `stop_event` is set, releasing what it has not started. With `senders`, the messages are dealt
    round-robin to up to `senders.count` threads that send at once."""
    messages = outbox_claim(worker_id=worker_id, limit=limit)
    outcomes: Counter = Counter()
    if not messages:
        return outcomes
    sent = SentLater(worker_id)
    lanes = min(senders.count if senders is not None else 1, len(messages))
    # the lease renewed while the senders send; record what went out whatever stopped the pass
    with LeaseKeeper(messages):
        try:
            _test_pause("claimed")
            if lanes == 1:
                outcomes = _send_lane(messages, worker_id=worker_id, sent=sent, stop_event=stop_event)
            else:
                for lane in senders.run([lambda share=messages[n::lanes]: _send_lane(
                        share, worker_id=worker_id, sent=sent, stop_event=stop_event) for n in range(lanes)]):
                    outcomes.update(lane)
        finally:
            outcomes.update(sent.record())
    return outcomes


def _send_lane(messages: list[OutboxMessage], *, worker_id: str, sent: SentLater,
               stop_event: threading.Event | None) -> Counter:
    """One sender's share of a pass, in its thread; channels keep their connections (one SMTP
    session) for the share."""
    outcomes: Counter = Counter()
    with channels_batch(messages):
        _perform_all(messages, worker_id=worker_id, sent=sent, outcomes=outcomes, stop_event=stop_event)
    return outcomes


def _perform_all(messages: list[OutboxMessage], *, worker_id: str, sent: SentLater, outcomes: Counter,
                 stop_event: threading.Event | None) -> None:
    for i, message in enumerate(messages):
        if stop_event is not None and stop_event.is_set():
            outbox_release(messages[i:])
            break
        try:
            outcome = _perform(message, worker_id=worker_id, sent=sent)
            if outcome is not None:
                outcomes[outcome] += 1
            if sent.overdue():
                outcomes.update(sent.record())
        except CONNECTION_LOST:
            # nothing of messages[i:] was sent: hand them back once the database answers,
            # so they go out at once instead of when their lease lapses (and count no attempt)
            log.warning("worker %s: database connection lost; handing back %d deliveries when it answers",
                        worker_id, len(messages) - i)
            _when_database_answers(lambda rest=messages[i:]: outbox_release(rest), stop_event=stop_event)
            break  # handed back: the next pass claims them again, the database answering
        except BaseException:
            _release_quietly(messages[i + 1:])
            raise


def _when_database_answers(action: Callable[[], object], *, stop_event: threading.Event | None = None):
    """Run `action`, a short conditional write, again while the database connection is lost (a
    restart), each time on a fresh connection, for up to DATABASE_WAIT_SECONDS; then give up
    (re-raise): the leases lapse and a later pass takes the rows over. The writes match the
    lease token, so a retry after another worker took the rows changes nothing."""
    deadline, outage = time.monotonic() + DATABASE_WAIT_SECONDS, DatabaseOutage("delivery batch")
    while True:
        try:
            result = action()
            outage.answered()
            return result
        except CONNECTION_LOST as exc:
            if time.monotonic() >= deadline or (stop_event is not None and stop_event.is_set()):
                raise
            outage.lost(exc)
            _connection_drop()
            time.sleep(1)


class DatabaseOutage:
    """One line when the database stops answering and one when it is back, instead of a
    traceback per poll while a server restarts."""

    def __init__(self, who: str):
        self.who, self.since = who, None

    def lost(self, exc: BaseException) -> None:
        if self.since is None:
            self.since = time.monotonic()
            log.warning("%s: database unavailable (%s); retrying until it answers", self.who, _short(exc))

    def answered(self) -> None:
        if self.since is not None:
            log.warning("%s: database answering again after %.0fs", self.who, time.monotonic() - self.since)
            self.since = None


def _connection_drop() -> None:
    try:
        connection.close()  # broken: the next query opens a new one
    except CONNECTION_LOST:
        pass


def _test_pause(point: str) -> None:
    """Fault injection for tests/faults: KAMI_DELIVERY_TEST_PAUSE=<point>:<seconds> holds the
    worker at `point` — `claimed` (the claim committed, nothing sent) or `sent` (a message sent,
    its result not recorded) — so a test can SIGKILL it there. Unset outside tests (production
    refuses to start with it)."""
    name, _, seconds = settings.KAMI_DELIVERY_TEST_PAUSE.partition(":")
    if name == point:
        log.warning("KAMI_DELIVERY_TEST_PAUSE: holding %ss after %s", seconds or 60, point)
        time.sleep(float(seconds or 60))


def _release_quietly(messages: list[OutboxMessage]) -> None:
    """Best effort while failing anyway: what is not released comes back when its lease expires."""
    try:
        outbox_release(messages)
    except Exception:  # noqa: BLE001 — the original error matters more
        log.warning("could not release %d claimed messages; they return when their lease expires", len(messages))


def run_once(worker_id: str, limit: int = 50, stop_event: threading.Event | None = None,
             senders: Senders | None = None) -> int:
    """One pass; the number of messages performed."""
    return sum(run_pass(worker_id=worker_id, limit=limit, stop_event=stop_event, senders=senders).values())


def run_forever(worker_id: str, poll_seconds: float, stop_event: threading.Event,
                on_pass: Callable[[], None] | None = None, limit: int = 50,
                heartbeat: Heartbeat | None = None, senders: int = 1) -> None:
    """Deliver until `stop_event` is set. `on_pass` runs after every pass (the command hangs
    its periodic sweep there). Whenever the queue is drained it waits up to `poll_seconds`, and on
    PostgreSQL less: until a process that queued a delivery wakes it (kami/delivery/wake.py).
    `heartbeat` (kami/delivery/heartbeats.py) is registered here, beaten on every turn of the
    loop (it writes every KAMI_WORKER_HEARTBEAT_SECONDS) and marked stopped on the way out.
    `senders`: how many deliveries go out at once (`Senders`)."""
    listener = OutboxListener()
    listener.start()  # before the first pass: a delivery queued after it is heard
    log.info("worker %s started (poll %ss%s, %s sender%s)", worker_id, poll_seconds,
             ", woken by NOTIFY" if listener.conn is not None else "", senders, "s" if senders > 1 else "")
    lanes = Senders(senders)
    outage = DatabaseOutage(f"worker {worker_id}")
    if heartbeat is not None:
        heartbeat.start()
    try:
        while not stop_event.is_set():
            close_old_connections()  # a long-lived process: drop a connection the database closed
            if heartbeat is not None:
                heartbeat.beat()
            done = 0
            try:
                done = run_once(worker_id, limit=limit, stop_event=stop_event, senders=lanes)
                outage.answered()
            except CONNECTION_LOST as exc:  # a database restart: said once, retried every poll, no restart of Kami
                outage.lost(exc)
            except Exception:  # noqa: BLE001 — a database hiccup must not kill the worker
                log.exception("worker %s: delivery pass failed; retrying in %ss", worker_id, poll_seconds)
            if on_pass is not None and not stop_event.is_set():
                try:
                    on_pass()
                except Exception:  # noqa: BLE001
                    log.exception("worker %s: periodic task failed", worker_id)
            if done < limit:
                listener.wait(poll_seconds, stop_event)
    finally:
        try:
            if heartbeat is not None:
                heartbeat.stop()
        finally:
            listener.close()
            lanes.close()
    log.info("worker %s stopped", worker_id)
