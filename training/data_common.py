"""What every loader shares: the sequence type, the load report, streamed line reading and on_error handling.

Loaders stream their files (the public logs run to gigabytes) and never drop a line silently: a malformed line
either stops the load (``on_error="fail"``, a DataFormatError naming file and line) or is counted in a
LoadReport whose ``summary()`` a CLI prints; a report with skipped lines is also logged as a warning.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from model.windows import fixed_windows

OnError = Literal["skip", "fail"]
MAX_EXAMPLES = 5

log = logging.getLogger("training.data")


@dataclass
class LabeledSequence:
    """One training/evaluation sample: preprocessed messages in log order and 0 (normal) or 1 (anomalous)."""

    sequence_id: str
    messages: list[str]
    label: int


def numbered_windows(
    name: str, lines: Sequence[tuple[int, str, int]], size: int, step: int, max_messages: int, report: LoadReport
) -> list[LabeledSequence]:
    """Fixed windows over a file's (line number, message, label) in file order, named ``name:first-last`` line;
    anomalous if any line is; the first ``max_messages`` messages kept (a longer window counted as truncated)."""
    out = []
    for _, window in fixed_windows(lines, size, step):
        report.truncated_sequences += len(window) > max_messages
        messages = [m for _, m, _ in window[:max_messages]]
        out.append(LabeledSequence(f"{name}:{window[0][0]}-{window[-1][0]}", messages, max(x for *_, x in window)))
    return out


class DataFormatError(ValueError):
    """A data file is not in the expected format; the message names the file and, where it can, the line."""


@dataclass
class LoadReport:
    """Counts of what a load read, skipped and set aside, so a CLI can say so instead of dropping it."""

    lines_read: int = 0
    blank_lines: int = 0
    malformed: int = 0
    examples: list[str] = field(default_factory=list)  # the first few "file:line: reason"
    unlabeled_lines: int = 0  # generic data: lines without a label, counted as normal
    lines_without_session: int = 0  # HDFS: lines naming no block id
    unlabeled_sessions: int = 0  # HDFS: blocks in the log but not in the label file (left out)
    sessions_without_lines: int = 0  # HDFS: labeled blocks that never appear in the log
    truncated_sequences: int = 0  # sequences cut to max_messages
    dropped_seen: int = 0  # --split distinct on chronological logs: test windows also in train (left out)
    moved_to_test: int = 0  # --unlabeled: labeled anomalies of train/validation moved to the test split
    test_anomalies_left_out: int = 0  # --test-anomalies: real test anomalies not sampled
    sessions: bool = False  # sequences are whole sessions (a session id), not fixed windows: their ends mean something

    def malformed_line(self, path: Path, number: int, reason: str, on_error: OnError) -> None:
        """Stop on the first bad line, or count it and keep an example."""
        where = f"{path}:{number}: {reason}"
        if on_error == "fail":
            raise DataFormatError(where)
        self.malformed += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(where)

    def summary(self) -> str:
        parts = [f"read {self.lines_read} lines"]
        if self.malformed:
            parts.append(f"skipped {self.malformed} malformed lines (first: {self.examples[0]})")
        notes = {
            "blank lines skipped": self.blank_lines,
            "lines without a label (counted as normal)": self.unlabeled_lines,
            "lines naming no session (left out)": self.lines_without_session,
            "sessions without a label (left out)": self.unlabeled_sessions,
            "labeled sessions with no lines (left out)": self.sessions_without_lines,
            "sequences cut to max_messages": self.truncated_sequences,
            "test windows also in train (left out, --split distinct)": self.dropped_seen,
            "labeled anomalies moved from train/validation to test (--unlabeled)": self.moved_to_test,
            "test anomalies left out (--test-anomalies)": self.test_anomalies_left_out,
        }
        parts += [f"{count} {what}" for what, count in notes.items() if count]
        return "; ".join(parts)

    def log_if_notable(self) -> None:
        if self.malformed or self.unlabeled_sessions or self.sessions_without_lines or self.unlabeled_lines:
            log.warning("%s", self.summary())


def open_text(path: Path) -> IO[str]:
    """Lines split on ``\\n`` only, so line numbers agree with ``wc -l``; ``.gz`` is read too."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace", newline="\n")
    return path.open(encoding="utf-8", errors="replace", newline="\n")


def read_lines(path: Path, report: LoadReport, max_lines: int | None = None) -> Iterator[tuple[int, str]]:
    """``(1-based line number, line without its newline)``, streamed; blank lines are counted and skipped."""
    with open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if max_lines is not None and number > max_lines:
                return
            report.lines_read += 1
            line = line.rstrip("\r\n")
            if not line.strip():
                report.blank_lines += 1
                continue
            yield number, line


def count_lines(path: Path, max_lines: int | None = None) -> int:
    """Lines in a file, counted in binary chunks (a first pass over gigabytes must be cheap)."""
    opener = gzip.open if path.suffix == ".gz" else open
    total, last = 0, b"\n"
    with opener(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            total += chunk.count(b"\n")
            last = chunk[-1:]
            if max_lines is not None and total >= max_lines:
                return max_lines
    total += last != b"\n"  # a last line without a trailing newline still counts
    return total if max_lines is None else min(total, max_lines)


def check_max_messages(max_messages: int) -> None:
    if max_messages <= 0:
        raise ValueError(f"max_messages must be positive, got {max_messages}")


class Interner:
    """One string object per distinct preprocessed message: millions of lines repeat a few templates."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def __call__(self, message: str) -> str:
        return self._seen.setdefault(message, message)
