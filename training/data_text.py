"""Users' own plain log files, no labels: one line per message, windowed the way the service windows them.

This is the raw input of ``logllm train --unlabeled``: the file as a shipper would send it. ``--log-format`` cuts
each line's content (raw, hdfs, bgl, ...), and the windows are sessions (``--window-mode session``, ids found by
``--session-pattern``, a line naming several joins each) or fixed windows (``--window-size``/``--window-step``),
the same rules and functions as ``logllm score`` and the service, so a model trains on the windows it will see.
Every window is labeled normal: whatever faults the file holds are unknown, and ``--unlabeled`` says so.
"""

from __future__ import annotations

from pathlib import Path

from model.log_formats import LogFormatError, parse_line
from model.preprocess import preprocess
from model.windows import session_ids
from training.data_common import (
    Interner,
    LabeledSequence,
    LoadReport,
    OnError,
    check_max_messages,
    numbered_windows,
    read_lines,
)


def load_text(
    path: Path,
    *,
    log_format: str = "raw",
    window_mode: str = "fixed",
    session_pattern: str = r"blk_-?\d+",
    window_size: int = 100,
    window_step: int = 100,
    max_messages: int = 128,
    max_lines: int | None = None,
    on_error: OnError = "skip",
    report: LoadReport | None = None,
) -> list[LabeledSequence]:
    """The file's windows, all labeled 0: sessions in first-seen order, or fixed windows in file order."""
    check_max_messages(max_messages)
    report = report if report is not None else LoadReport()
    intern = Interner()
    lines: list[tuple[int, str, int]] = []  # (line number, message, label 0), fixed windows
    sessions: dict[str, list[str]] = {}
    lengths: dict[str, int] = {}
    for number, line in read_lines(path, report, max_lines):
        try:
            content = parse_line(line, log_format).content
        except LogFormatError as exc:
            report.malformed_line(path, number, str(exc), on_error)
            continue
        message = intern(preprocess(content))
        if window_mode == "fixed":
            lines.append((number, message, 0))
            continue
        found = session_ids(content, session_pattern)
        report.lines_without_session += not found
        for sid in found:
            lengths[sid] = lengths.get(sid, 0) + 1
            messages = sessions.setdefault(sid, [])
            if len(messages) < max_messages:
                messages.append(message)
    report.log_if_notable()
    if window_mode == "session":
        report.sessions = True
        report.truncated_sequences += sum(n > max_messages for n in lengths.values())
        return [LabeledSequence(sid, messages, 0) for sid, messages in sessions.items()]
    return numbered_windows(path.name, lines, window_size, window_step, max_messages, report)
