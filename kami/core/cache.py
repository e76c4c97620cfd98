"""The default cache when no Redis is configured: diskcache's Django backend (SQLite files in the
data dir), so the `kami serve` processes of one machine share their rate-limit counters and the
shop's cached settings. Its `incr` is atomic across processes (one SQLite transaction).

Django closes every cache at the end of each request (`close_caches` on `request_finished`);
diskcache's close drops the thread's SQLite connection, and reopening it (connect, read its
settings, reset its pragmas) cost more than the look-up it served. Connections here are per
thread and per process (diskcache checks the pid after a fork), so they stay open instead."""
from __future__ import annotations

from diskcache import DjangoCache


class MachineCache(DjangoCache):
    def close(self, **kwargs) -> None:
        """Kept open: see the module's docstring. The process's exit closes it."""
