"""What an import or a generation run did, in bounded memory.

A million-line file with a million problems must not hold a million line numbers: the report
keeps every count but only the first `SAMPLE` line numbers of each kind of problem.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

SAMPLE = 100
DUPLICATE_IN_FILE = "duplicate in the file"
DUPLICATE_STORED = "already stored"

# (line, problem, detail): every problem line, for a caller that keeps a full report (an import
# job writes them to a file). `detail` never holds key text: "line 12" or "key #345".
ProblemSink = Callable[[int, str, str], None]


@dataclass
class ImportReport:
    batch_id: int | None = None
    lines: int = 0
    bytes_read: int = 0
    imported: int = 0
    blank: int = 0
    invalid: int = 0
    duplicate_in_file: int = 0
    duplicate_stored: int = 0
    invalid_lines: list[tuple[int, str]] = field(default_factory=list)
    duplicate_in_file_lines: list[int] = field(default_factory=list)
    duplicate_stored_lines: list[int] = field(default_factory=list)
    on_problem: ProblemSink | None = field(default=None, repr=False, compare=False)
    # Fingerprints an earlier, interrupted run of this same import stored past its last
    # checkpoint: met again, they count as imported, not as duplicates (kami.stock.jobs resumes).
    carried: set[str] = field(default_factory=set, repr=False)
    # PostgreSQL's write path: chunks go straight into the key table until one meets a stored
    # key, then through a staging table (kami.stock.bulk).
    direct: bool = field(default=True, repr=False, compare=False)

    @property
    def duplicates(self) -> int:
        return self.duplicate_in_file + self.duplicate_stored

    def note_invalid(self, line: int, reason: str) -> None:
        self.invalid += 1
        if len(self.invalid_lines) < SAMPLE:
            self.invalid_lines.append((line, reason))
        if self.on_problem:
            self.on_problem(line, reason, "")

    def note_duplicate(self, line: int, *, in_file: bool, same_as: str = "") -> None:
        if self.on_problem:
            self.on_problem(line, DUPLICATE_IN_FILE if in_file else DUPLICATE_STORED, same_as)
        if in_file:
            self.duplicate_in_file += 1
            sample = self.duplicate_in_file_lines
        else:
            self.duplicate_stored += 1
            sample = self.duplicate_stored_lines
        if len(sample) < SAMPLE:
            sample.append(line)

    def summary(self, *, shown: int = 5) -> str:
        """One line for a person: counts, and the first few problem lines grouped by reason."""
        parts = [f"imported {self.imported:,}"]
        parts.append(f"duplicates {self.duplicates:,} (in file {self.duplicate_in_file:,}, "
                     f"already stored {self.duplicate_stored:,})")
        invalid = f"invalid {self.invalid:,}"
        if self.invalid:
            invalid += f" ({invalid_detail(self.invalid_lines, shown=shown, total=self.invalid)})"
        parts.append(invalid)
        parts.append(f"blank {self.blank:,}")
        return " · ".join(parts)


def invalid_detail(sample: list[tuple[int, str]], *, shown: int, total: int) -> str:
    """'lines 17, 4031: line longer than 1024 characters; line 20: not valid UTF-8; …'"""
    by_reason: dict[str, list[int]] = {}
    for line, reason in sample:
        by_reason.setdefault(reason, []).append(line)
    groups = []
    for reason, lines in by_reason.items():
        numbers = ", ".join(f"{n:,}" for n in lines[:shown]) + (", …" if len(lines) > shown else "")
        groups.append(f"{'lines' if len(lines) > 1 else 'line'} {numbers}: {reason}")
    if total > len(sample):
        groups.append("…")
    return "; ".join(groups)


def line_list(lines: list[int], *, total: int, shown: int = 20) -> str:
    """'5, 9, 14, … (first 20 of 40)' — for the detail lines under the summary."""
    text = ", ".join(f"{n:,}" for n in lines[:shown])
    return text + (f", … ({min(shown, len(lines))} of {total:,} shown)" if total > shown else "")
