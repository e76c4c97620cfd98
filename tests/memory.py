"""Watching a test's memory without slowing it: the process's resident set, sampled every 20 ms
from /proc (tracemalloc traces every allocation and makes a million-line import minutes slower)."""
from __future__ import annotations

import threading
from pathlib import Path


class RssWatch(threading.Thread):
    """Samples the process's resident memory every 20 ms; `growth` is the peak over the start."""

    def __init__(self):
        super().__init__(daemon=True)
        self.start_rss = self.peak = _rss()
        self.done = threading.Event()

    def run(self):
        while not self.done.wait(0.02):
            self.peak = max(self.peak, _rss())

    @property
    def growth(self) -> int:
        return self.peak - self.start_rss


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")
