"""Users' own labeled logs: JSONL or CSV records with a message, and optionally a sequence id and a label.

With ``sequence_id`` the records are grouped into sessions (first-seen order); without it they are cut into
fixed windows in file order. A sequence is anomalous if any of its records is; a record without a label counts
as normal (and is counted in the report). The first record decides sessions or windows; a later record that
disagrees is malformed rather than guessed at. A ``timestamp`` is accepted and not used: file order is kept.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from model.preprocess import preprocess
from training.data_common import (
    DataFormatError,
    Interner,
    LabeledSequence,
    LoadReport,
    OnError,
    check_max_messages,
    numbered_windows,
    open_text,
    read_lines,
)

_LABEL_WORDS = {"0": 0, "normal": 0, "1": 1, "anomalous": 1, "anomaly": 1, "abnormal": 1}
_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")

Record = tuple[int, str | None, str, int | None]  # line number, sequence id, message, label


def parse_label(value: object) -> int | None:
    """0/1, true/false or normal/anomalous (any case) -> 0/1; missing -> None; else ValueError."""
    if value is None or value == "":
        return None
    if isinstance(value, bool | int) and int(value) in (0, 1):
        return int(value)
    if isinstance(value, str) and value.strip().lower() in _LABEL_WORDS:
        return _LABEL_WORDS[value.strip().lower()]
    raise ValueError(f"label must be 0/1 or normal/anomalous, got {str(value)[:40]!r}")


def _record(number: int, raw: dict[str, object]) -> Record:
    message = raw.get("message")
    if not isinstance(message, str):
        raise ValueError(f"'message' must be a string, got {str(message)[:40]!r}")
    sid = raw.get("sequence_id")
    if sid is not None and not isinstance(sid, str | int):
        raise ValueError(f"'sequence_id' must be a string or an integer, got {str(sid)[:40]!r}")
    return number, None if sid in (None, "") else str(sid), message, parse_label(raw.get("label"))


def _jsonl_records(path: Path, report: LoadReport, on_error: OnError) -> Iterator[Record]:
    for number, line in read_lines(path, report):
        try:
            raw = json.loads(line)
            if not isinstance(raw, dict):
                raise ValueError(f"expected a JSON object, got {line[:40]!r}")
            yield _record(number, raw)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            report.malformed_line(path, number, str(exc), on_error)


def _csv_records(path: Path, report: LoadReport, on_error: OnError) -> Iterator[Record]:
    with open_text(path) as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "message" not in reader.fieldnames:
            raise DataFormatError(
                f"{path}:1: a 'message' column is required, got columns {reader.fieldnames}"
            )
        for row in reader:
            report.lines_read += 1
            try:
                if None in row:
                    raise ValueError(f"{len(reader.fieldnames)} columns expected, got more")
                yield _record(reader.line_num, dict(row))
            except ValueError as exc:
                report.malformed_line(path, reader.line_num, str(exc), on_error)


def _is_jsonl(path: Path) -> bool:
    if path.suffix in _JSONL_SUFFIXES:
        return True
    if path.suffix == ".csv":
        return False
    with open_text(path) as handle:
        first = next((line for line in handle if line.strip()), "")
    return first.lstrip().startswith("{")


def load_generic(
    path: Path,
    *,
    window_size: int = 100,
    window_step: int = 100,
    max_messages: int = 128,
    on_error: OnError = "skip",
    report: LoadReport | None = None,
) -> list[LabeledSequence]:
    """Labeled sequences from a JSONL (``.jsonl``, ``.ndjson``, ``.json``) or CSV file (suffix or content)."""
    check_max_messages(max_messages)
    if window_size <= 0 or window_step <= 0:
        raise ValueError(f"window size and step must be positive, got size={window_size} step={window_step}")
    report = report if report is not None else LoadReport()
    records = (
        _jsonl_records(path, report, on_error) if _is_jsonl(path) else _csv_records(path, report, on_error)
    )
    intern = Interner()
    sessions: dict[str, tuple[list[str], list[int]]] = {}  # id -> (messages, [label, records])
    lines: list[tuple[int, str, int]] = []  # (line number, message, label) for fixed windows
    by_session: bool | None = None
    for number, sid, message, label in records:
        if by_session is None:
            by_session = sid is not None
        if by_session != (sid is not None):
            reason = (
                "sequence_id missing, earlier records have one"
                if by_session
                else "sequence_id where the first record had none"
            )
            report.malformed_line(path, number, reason, on_error)
            continue
        report.unlabeled_lines += label is None
        message = intern(preprocess(message))
        if sid is None:
            lines.append((number, message, label or 0))
            continue
        messages, state = sessions.setdefault(sid, ([], [0, 0]))
        state[0] |= label or 0
        state[1] += 1
        if len(messages) < max_messages:
            messages.append(message)
    report.log_if_notable()
    if by_session:
        report.sessions = True
        report.truncated_sequences += sum(state[1] > max_messages for _, state in sessions.values())
        return [LabeledSequence(sid, messages, state[0]) for sid, (messages, state) in sessions.items()]
    return numbered_windows(path.name, lines, window_size, window_step, max_messages, report)
