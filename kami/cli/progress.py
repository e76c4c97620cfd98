"""Terminal output for commands: rich consoles on the command's own streams, progress bars that
stay quiet when nobody is watching, and UTF-8 output for keys whatever the locale says."""
from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn, TransferSpeedColumn)

from kami.stock.report import ImportReport


def raw_stream(wrapper) -> TextIO:
    """The stream under Django's OutputWrapper (which would append a newline to every write)."""
    return getattr(wrapper, "_out", wrapper)


def console_for(wrapper) -> Console:
    stream = raw_stream(wrapper)
    terminal = hasattr(stream, "isatty") and stream.isatty()
    # Piped into a file or a test, a table keeps its full width instead of 80 columns.
    return Console(file=stream, width=None if terminal else 160, highlight=False, soft_wrap=False)


@contextmanager
def import_progress(wrapper, *, total_bytes: int | None) -> Iterator[Callable[[ImportReport], None]]:
    """A progress bar on stderr driven by bytes read; indeterminate when the size is unknown
    (stdin). Yields the `on_progress` callback for `keys_import`."""
    console = console_for(wrapper)
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn()]
    if total_bytes:
        columns += [DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()]
    else:
        columns += [TimeElapsedColumn()]
    with Progress(*columns, console=console, disable=not console.is_terminal, transient=True) as bar:
        task = bar.add_task("importing", total=total_bytes or None)

        def advance(report: ImportReport) -> None:
            bar.update(task, completed=report.bytes_read, description=f"imported {report.imported:,}")

        yield advance


@contextmanager
def count_progress(wrapper, *, total: int) -> Iterator[Callable[[ImportReport], None]]:
    """A progress bar on stderr for generating `total` keys."""
    console = console_for(wrapper)
    columns = [SpinnerColumn(), TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, disable=not console.is_terminal, transient=True) as bar:
        task = bar.add_task("generating", total=total)
        yield lambda report: bar.update(task, completed=report.imported)


class Utf8Writer:
    """Writes text as UTF-8 to a byte stream: exported keys (中文, emoji) must not depend on the
    terminal's locale. Deliberately not a TextIOWrapper, which would close stdout's buffer when
    it is collected after a broken pipe."""

    def __init__(self, buffer) -> None:
        self._buffer = buffer

    def write(self, text: str) -> int:
        return self._buffer.write(text.encode("utf-8"))


def utf8_out(wrapper) -> TextIO:
    """UTF-8 text onto the command's stdout; the stream itself when it has no bytes layer (tests)."""
    stream = raw_stream(wrapper)
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        return stream
    stream.flush()
    return Utf8Writer(buffer)  # type: ignore[return-value]


def silence_stdout() -> None:
    """After a broken pipe (`kami keys export | head`), point stdout at /dev/null so the exit
    flush does not fail a second time (the recipe in Python's signal module docs)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass
