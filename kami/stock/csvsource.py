"""One column of a CSV file as rows for the importer (a `kami.stock.importer.Reader`).

The first row is the header; the keys' column is chosen by its header name or its number
(1 = first). Physical lines come from the importer's bounded `read_lines`, so a huge line is
skipped unread and the csv module only ever sees bounded text: memory stays flat. Bytes that
are not UTF-8 pass through (surrogateescape) so the importer reports them like in a text file.
"""
from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import BinaryIO

from kami.core.errors import BadInput
from kami.stock.importer import Reader, Row, read_lines
from kami.stock.report import ImportReport

LINE_LIMIT = 64 * 1024  # bytes per physical CSV line (other columns may hold long notes)
Record = tuple[int, "list[str] | str"]  # (first line, fields | a problem)


def csv_records(stream: BinaryIO, report: ImportReport) -> Iterator[Record]:
    """Each CSV record with the number of the line it starts on; a problem string for a record
    the csv module refuses or one that had a line too long to read."""
    state = {"line": report.lines, "long": False}

    def lines() -> Iterator[str]:
        for number, raw in read_lines(stream, report, limit=LINE_LIMIT):
            state["line"] = number
            if raw is None:
                state["long"] = True
                yield "\n"
            else:
                yield raw.decode("utf-8", "surrogateescape")

    rows = csv.reader(lines())
    while True:
        start, state["long"] = state["line"] + 1, False
        try:
            fields = next(rows)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, f"not valid CSV: {exc}"
            continue
        yield start, (f"line longer than {LINE_LIMIT:,} bytes" if state["long"] else fields)


def csv_header(stream: BinaryIO) -> list[str]:
    """The header row of a CSV file (the stream is left after it)."""
    first = next(csv_records(stream, ImportReport()), None)
    if first is None or first[1] == []:
        raise BadInput("the CSV file is empty: its first row must be the header naming the columns")
    if isinstance(first[1], str):
        raise BadInput(f"the CSV header (line 1) cannot be read: {first[1]}")
    return [name.strip() for name in first[1]]


def csv_column_index(header: list[str], column: str | int | None) -> int:
    """0-based index of the keys' column: a header name, or a 1-based number (int or digits)."""
    names = ", ".join(repr(n) for n in header[:20]) + (", …" if len(header) > 20 else "")
    text = str(column).strip() if column is not None else ""
    if not text:
        raise BadInput("choose the CSV column that holds the keys: its header name or its number (1 = first)")
    if isinstance(column, int) or text.isdigit():
        number = int(text)
        if not 1 <= number <= len(header):
            raise BadInput(f"column {number}: the CSV header has {len(header)} column(s) ({names}); "
                           f"give a number from 1 to {len(header)} or a column name")
        return number - 1
    for match in (lambda n: n == text, lambda n: n.casefold() == text.casefold()):
        found = [i for i, name in enumerate(header) if match(name)]
        if found:
            return found[0]
    raise BadInput(f"column {text!r} is not in the CSV header; its columns are {names}")


def csv_column_reader(index: int) -> Reader:
    """A reader yielding column `index` of each record after the header."""

    def read(stream: BinaryIO, report: ImportReport) -> Iterator[Row]:
        records = csv_records(stream, report)
        if report.lines == 0:
            next(records, None)  # the header (a resumed import starts past it)
        for start, fields in records:
            if isinstance(fields, str):
                yield start, fields
            elif not fields:
                yield start, b""  # a blank line
            elif index >= len(fields):
                yield start, f"the row has {len(fields)} column(s); the keys are in column {index + 1}"
            else:
                yield start, fields[index].encode("utf-8", "surrogateescape")

    return read
