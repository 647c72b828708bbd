"""BGL, Thunderbird and Liberty: line-labeled logs, split chronologically by line, then cut into windows."""

from __future__ import annotations

from array import array
from functools import lru_cache
from pathlib import Path

from model.log_formats import LogFormatError, is_anomalous_label, parse_line
from model.preprocess import preprocess
from model.windows import fixed_windows
from training.data_common import (
    Interner,
    LabeledSequence,
    LoadReport,
    OnError,
    check_max_messages,
    count_lines,
    read_lines,
)

LINE_LABELED_FORMATS = ("bgl", "thunderbird", "liberty")


class _Part:
    """The parsed lines of one side of the split, held compactly until they are cut into windows."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.labels = bytearray()
        self.numbers = array("I")  # file line numbers, for window ids a person can look up

    def windows(
        self, source: str, size: int, step: int, max_messages: int, report: LoadReport
    ) -> list[LabeledSequence]:
        out = []
        for start, window in fixed_windows(self.messages, size, step):
            end = start + len(window) - 1
            report.truncated_sequences += len(window) > max_messages
            label = int(any(self.labels[start : end + 1]))
            sequence_id = f"{source}:{self.numbers[start]}-{self.numbers[end]}"
            out.append(LabeledSequence(sequence_id, window[:max_messages], label))
        return out


def load_line_labeled(
    path: Path,
    fmt: str,
    window_size: int = 100,
    step: int = 100,
    train_fraction: float = 0.8,
    *,
    max_lines: int | None = None,
    max_messages: int = 128,
    on_error: OnError = "skip",
    report: LoadReport | None = None,
) -> tuple[list[LabeledSequence], list[LabeledSequence]]:
    """``(train, test)``: the first ``train_fraction`` of the lines train, the rest test (as in the paper).

    Each side is cut into windows separately, so no window straddles the split; a window is anomalous if any
    of its lines is. ``max_lines`` reads only the head of the file (the paper: Thunderbird 10M, Liberty 5M).
    The split point is a file line number, so skipped lines do not move it. Two passes: count, then read.
    """
    if fmt not in LINE_LABELED_FORMATS:
        raise ValueError(
            f"format {fmt!r} has no line labels; choose one of {', '.join(LINE_LABELED_FORMATS)}"
        )
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must lie strictly between 0 and 1, got {train_fraction}")
    if window_size <= 0 or step <= 0:
        raise ValueError(f"window size and step must be positive, got size={window_size} step={step}")
    if max_lines is not None and max_lines <= 0:
        raise ValueError(f"max_lines must be positive, got {max_lines}")
    check_max_messages(max_messages)
    report = report if report is not None else LoadReport()
    cut = int(count_lines(path, max_lines) * train_fraction)
    intern = Interner()
    cached_preprocess = lru_cache(maxsize=1 << 16)(preprocess)  # these logs repeat whole messages a lot
    train, test = _Part(), _Part()
    for number, line in read_lines(path, report, max_lines):
        try:
            parsed = parse_line(line, fmt)
        except LogFormatError as exc:
            report.malformed_line(path, number, str(exc), on_error)
            continue
        part = train if number <= cut else test
        part.messages.append(intern(cached_preprocess(parsed.content)))
        part.labels.append(is_anomalous_label(parsed.label))
        part.numbers.append(number)
    report.log_if_notable()
    return (
        train.windows(path.name, window_size, step, max_messages, report),
        test.windows(path.name, window_size, step, max_messages, report),
    )
