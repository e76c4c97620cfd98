"""`kami serve`'s server processes (issue 9): one listening socket, bound here, and N copies of
this process forked after Django is loaded, each running the server (uvicorn, or waitress) on
that socket; the kernel hands each new connection to one of them. Two cores confirm more
notifications with two processes (each has its own GIL and its own group commit,
kami/fulfilment/batch.py and batch_loop.py). Both servers read a request whole on their event
loop before a thread takes it, so slow senders hold sockets, not threads
(tests/hostile/test_serve_limits.py).

    kami serve (this process: binds, forks, watches; serves nothing itself)
      ├─ server process 1 ─┐ uvicorn on the shared socket, its own database connections
      ├─ server process 2 ─┘
      └─ kami worker (started by serve, watches serve)

A server process that dies is started again (a crash loop — 5 deaths in 10 seconds — stops the
whole serve with exit code 1, rather than spinning). The server processes die with this one:
Linux kills them when it goes, even by SIGKILL (PR_SET_PDEATHSIG), so a restarted serve never
finds the port held by orphans; elsewhere they look for their parent every second.
SIGTERM or SIGINT here stops them all (SIGTERM, then SIGKILL after STOP_SECONDS).
Shared state between them: the database, and the cache (kami.core.cache: files in the data dir,
or Redis) for rate limits and the shop's settings.

Each server process keeps to one CPU (cpu_pin; KAMI_PIN_CPUS=0 leaves them free). Its threads — the
event loop, the page threads, the commit thread — take turns at one interpreter lock, and when the
kernel spread them over two cores each turn moved the lock, and what the thread had in cache,
from core to core: one process on one core served 1.9× the static files and 1.6× the pages a
second, and two processes one core each confirmed 8-22 % more notifications
(docs/performance.md, "One core per server process").
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger("kami.serve")

STOP_SECONDS = 15
CRASH_LOOP = (5, 10.0)  # this many deaths within this many seconds stop the serve


def listening_socket(host: str, port: int, *, backlog: int = 1024) -> socket.socket:
    """The socket every server process accepts on. OSError (port in use…) to the caller."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                        flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def serve_forked(*, processes: int, run: Callable[[], None]) -> int:
    """Fork `processes` children that each call `run()` (which serves until SIGTERM), keep that
    many running, and stop them all on SIGTERM/SIGINT. Returns the exit code for serve."""
    children: dict[int, int] = {}  # pid -> slot number
    deaths: deque[float] = deque(maxlen=CRASH_LOOP[0])
    stopping = threading.Event()
    parent = os.getpid()

    def spawn(slot: int) -> None:
        # Unflushed output would be copied into the child and written again when it exits (stdout
        # is block-buffered under systemd or a pipe): serve's start-up lines printed N+1 times.
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            os._exit(_child(slot=slot, parent=parent, run=run))
        children[pid] = slot
        log.info("server process %d started (pid %d)", slot, pid)

    def stop(*_) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    code = 0
    try:
        for slot in range(1, processes + 1):
            spawn(slot)
        while not stopping.wait(0.5):
            for pid, slot in list(children.items()):
                done, status = os.waitpid(pid, os.WNOHANG)
                if not done:
                    continue
                del children[pid]
                log.error("server process %d (pid %d) ended unexpectedly (%s); starting it again", slot, pid,
                          _how(status))
                deaths.append(time.monotonic())
                if len(deaths) == deaths.maxlen and deaths[-1] - deaths[0] < CRASH_LOOP[1]:
                    log.error("server processes keep dying (%d in %.0f s): stopping; the log above says why",
                              len(deaths), deaths[-1] - deaths[0])
                    code = 1
                    stopping.set()
                    break
                spawn(slot)
    finally:
        _stop_all(children)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code


def _child(*, slot: int, parent: int, run: Callable[[], None]) -> int:
    """A server process: its exit code. Never returns into the parent's code (os._exit)."""
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: the parent stops us in order
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        cpu_pin(slot)
        _die_with(parent)
        run()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        log.exception("server process %d failed", slot)
        code = 1
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    return code


def cpu_pin(slot: int | None) -> int | None:
    """Keep this process's threads, and those it starts, to one CPU: the slot-th of the CPUs it
    may use (server process `slot` of serve_forked), or the one it runs on now (slot None: serve's
    only process, so that several shops on one machine do not all crowd onto the first CPU).
    The CPU, or None where nothing was pinned: KAMI_PIN_CPUS=0, a single CPU, no affinity calls."""
    if os.environ.get("KAMI_PIN_CPUS", "1") == "0" or not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None
    cpu = allowed[(slot - 1) % len(allowed)] if slot else _running_on(allowed)
    for thread in _threads():
        try:
            os.sched_setaffinity(thread, {cpu})
        except OSError:  # a thread that has just ended
            pass
    log.info("server process %s keeps to CPU %d (KAMI_PIN_CPUS=0 lets it move)", slot or os.getpid(), cpu)
    return cpu


def _running_on(allowed: list[int]) -> int:
    """The CPU this process runs on now (/proc/self/stat's 39th field), or the first it may use."""
    try:
        with open("/proc/self/stat") as stat:
            text = stat.read()
        cpu = int(text[text.rindex(")") + 2:].split()[36])  # fields from the 3rd on: the 39th is [36]
    except (OSError, ValueError, IndexError):
        return allowed[0]
    return cpu if cpu in allowed else allowed[0]


def _threads() -> list[int]:
    """This process's thread ids (the calling thread alone where /proc is missing)."""
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def _die_with(parent: int) -> None:
    """Linux: the kernel sends SIGKILL when the parent dies (however it dies). Elsewhere, and in
    case the parent died before this ran: a thread that looks every second."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="kami-parent-watch", daemon=True).start()


def _stop_all(children: dict[int, int]) -> None:
    for pid in children:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    while children and time.monotonic() < deadline:
        for pid in list(children):
            if os.waitpid(pid, os.WNOHANG)[0]:
                del children[pid]
        time.sleep(0.05)
    for pid in children:
        log.warning("server process pid %d did not stop within %d s: killed", pid, STOP_SECONDS)
        _signal(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    children.clear()


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _how(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
