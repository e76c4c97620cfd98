"""Group commit for an event loop (issue 9): the same batches as kami/fulfilment/batch.py, for an
edge that takes notifications on an asyncio loop (kami/asgi.py) instead of one thread each.

    request task ─► LoopBatcher.confirm ─► queue ─┬─ no batch running: start one
                                                  └─ else: wait for the batch after it
    commit thread: Batcher._run(batch) — the very batch a request thread leads in batch.py: BEGIN;
                   payments_decide; the raw notification rows in one INSERT; COMMIT
                   ─► each task gets its own outcome ─► whatever queued meanwhile is the next batch

No timer, as in batch.py: a lone notification is confirmed at once; a batch is whatever arrived
while the previous one committed. The loop's thread never touches the database: batches run in
one commit thread, and a member whose batch rolled back runs again alone in `alone_in` (a pool of
threads), through `payment_confirm`, with its retries, exactly as a request thread would.
"""
from __future__ import annotations

import asyncio
import functools
import threading
from concurrent.futures import Executor, ThreadPoolExecutor

from django.db import connections

from kami.fulfilment.batch import BATCHER, Batcher, _Member, batches_apply
from kami.fulfilment.confirm import Outcome, Record, payment_confirm
from kami.payments.interface import Notice


def with_connections(call, /, *args, **kwargs):
    """Run `call` as a request would use this thread's database connections: kept between
    requests without a health check (as kami.api.lean.KeptConnectionsTrusted: a dead one fails
    the statement and the gateway retries), and closed after an error left one unusable, as
    Django does at a request's end."""
    for conn in connections.all(initialized_only=True):
        conn.health_check_done = True
    try:
        return call(*args, **kwargs)
    finally:
        for conn in connections.all(initialized_only=True):
            if conn.errors_occurred:
                conn.close_if_unusable_or_obsolete()


def threads_done(executor: Executor, threads: int) -> None:
    """Each of the executor's `threads` threads closes its database connections, then it stops."""
    barrier = threading.Barrier(threads)

    def close() -> None:
        barrier.wait(timeout=30)  # one task per thread: each holds its thread until all are taken
        connections.close_all()

    for done in [executor.submit(close) for _ in range(threads)]:
        done.result()
    executor.shutdown()


class LoopBatcher:
    """One per process and loop. `alone_in`: the threads for members confirmed alone."""

    def __init__(self, *, alone_in: Executor, batcher: Batcher = BATCHER) -> None:
        self._batcher = batcher
        self._alone_in = alone_in
        self._commit = ThreadPoolExecutor(1, thread_name_prefix="kami-commit")
        self._queue: list[tuple[_Member, asyncio.Future]] = []
        self._draining = False
        self._grouped = batches_apply()  # a process's constant: not asked of Django's handler per request

    def close(self) -> None:
        threads_done(self._commit, 1)

    async def confirm(self, *, gateway: str, notice: Notice, record: Record | None) -> Outcome:
        """`payment_confirm`'s outcome for this notice, confirmed with whatever else is queued."""
        if not self._grouped:  # SQLite (one writer), or KAMI_CONFIRM_BATCH=0: each alone, as batch.py does
            return await self._alone(gateway=gateway, notice=notice, record=record)
        loop = asyncio.get_running_loop()
        member, done = _Member(gateway=gateway, notice=notice, record=record), loop.create_future()
        self._queue.append((member, done))
        if not self._draining:
            self._draining = True
            loop.create_task(self._drain())
        await done
        if member.error is not None:
            raise member.error
        if member.alone:
            return await self._alone(gateway=gateway, notice=notice, record=record)
        return member.outcome

    async def _alone(self, **confirm) -> Outcome:
        """`payment_confirm` in a thread of `alone_in`, with its retries."""
        return await asyncio.get_running_loop().run_in_executor(
            self._alone_in, functools.partial(with_connections, payment_confirm, **confirm))

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                members = [member for member, _ in batch]
                try:
                    await loop.run_in_executor(self._commit, with_connections, self._batcher._run, members)
                except BaseException as exc:  # not the batch's failure (run keeps those): the thread's
                    for member in members:
                        if member.outcome is None and member.error is None:
                            member.error = exc
                for member, done in batch:
                    if member.outcome is None and member.error is None:
                        member.alone = True
                    if not done.done():
                        done.set_result(None)
        finally:
            self._draining = False
