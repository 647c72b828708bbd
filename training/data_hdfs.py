"""HDFS: block sessions from the raw HDFS_v1 log, and the DeepLog key-sequence benchmark on its templates."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from model.log_formats import LogFormatError, parse_line
from model.preprocess import preprocess
from model.windows import HDFS_BLOCK_PATTERN, session_ids
from training.data_common import (
    DataFormatError,
    Interner,
    LabeledSequence,
    LoadReport,
    OnError,
    check_max_messages,
    read_lines,
)
from training.data_splits import SplitMode, split_sequences

_LABELS = {"normal": 0, "anomaly": 1}

# What preprocess makes of real lines of these events, where the loghub template text differs from it (a
# glued ``<*>`` standing for ``.``, a trailing ``<*>`` with nothing after it in raw lines, a leading ``<*>``
# that is a real IP:port). Checked against HDFS_2k by tests/training/test_data_hdfs.py; 27 and 28 by analogy.
_RAW_FORMS = {
    3: "<*> Served block <*> to <*>",
    4: "<*>:Got exception while serving <*> to <*>",
    11: "PacketResponder <*> for block <*> terminating",
    18: "<*> Starting thread to transfer block <*> to <*>",
    22: "BLOCK* NameSystem.allocateBlock: <*> <*>",
    23: "BLOCK* NameSystem.delete: <*> is added to invalidSet of <*>",
    25: "BLOCK* ask <*> to replicate <*> to datanode(s) <*>",
    26: "BLOCK* NameSystem.addStoredBlock: blockMap updated: <*> is added to <*> size <*>",
    27: "BLOCK* NameSystem.addStoredBlock: Redundant addStoredBlock request received for <*> on <*> size <*>",
    28: "BLOCK* NameSystem.addStoredBlock: addStoredBlock request received for <*> on <*> size <*> "
    "But it does not belong to any file.",
}


def read_hdfs_labels(label_csv_path: Path, report: LoadReport, on_error: OnError = "skip") -> dict[str, int]:
    """``BlockId -> 0/1`` from HDFS_v1's anomaly_label.csv (``BlockId,Label`` with Normal/Anomaly)."""
    labels: dict[str, int] = {}
    with label_csv_path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"BlockId", "Label"} <= set(reader.fieldnames):
            raise DataFormatError(
                f"{label_csv_path}:1: expected header BlockId,Label, got {reader.fieldnames}"
            )
        for row in reader:
            label = _LABELS.get((row["Label"] or "").strip().lower())
            if not row["BlockId"] or label is None:
                reason = f"expected '<block id>,Normal|Anomaly', got {row['BlockId']!r},{row['Label']!r}"
                report.malformed_line(label_csv_path, reader.line_num, reason, on_error)
                continue
            labels[row["BlockId"].strip()] = label
    return labels


def load_hdfs(
    log_path: Path,
    label_csv_path: Path,
    *,
    max_messages: int = 128,
    on_error: OnError = "skip",
    session_pattern: str = HDFS_BLOCK_PATTERN,
    report: LoadReport | None = None,
) -> list[LabeledSequence]:
    """One sequence per block id, in order of first appearance; a line naming several blocks joins each."""
    check_max_messages(max_messages)
    report = report if report is not None else LoadReport()
    report.sessions = True
    labels = read_hdfs_labels(label_csv_path, report, on_error)
    intern = Interner()
    sessions: dict[str, list[str]] = {}
    truncated: set[str] = set()
    for number, line in read_lines(log_path, report):
        try:
            content = parse_line(line, "hdfs").content
        except LogFormatError as exc:
            report.malformed_line(log_path, number, str(exc), on_error)
            continue
        ids = session_ids(content, session_pattern)
        if not ids:
            report.lines_without_session += 1
            continue
        message = intern(preprocess(content))
        for sid in ids:
            messages = sessions.setdefault(sid, [])
            if len(messages) < max_messages:
                messages.append(message)
            else:
                truncated.add(sid)
    report.truncated_sequences += len(truncated)
    report.unlabeled_sessions += sum(sid not in labels for sid in sessions)
    report.sessions_without_lines += sum(sid not in sessions for sid in labels)
    report.log_if_notable()
    return [
        LabeledSequence(sid, messages, labels[sid]) for sid, messages in sessions.items() if sid in labels
    ]


def hdfs_event_messages(templates_csv: Path) -> dict[int, str]:
    """Event number -> the message preprocess makes of a raw line of that event (``E5`` is event 5)."""
    events: dict[int, str] = {}
    with templates_csv.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            match = re.fullmatch(r"E(\d+)", (row.get("EventId") or "").strip())
            if match is None or not row.get("EventTemplate"):
                raise DataFormatError(f"{templates_csv}: expected EventId E<n>,EventTemplate rows, got {row}")
            number = int(match[1])
            text = re.sub(r"\s*<\*>\s*", " <*> ", row["EventTemplate"].removeprefix("<*>"))
            events[number] = _RAW_FORMS.get(number) or preprocess(" ".join(text.split()))
    return events


def load_hdfs_keyseq_benchmark(
    data_dir: Path,
    templates_csv: Path | None = None,
    *,
    seed: int = 42,
    test_fraction: float = 0.2,
    max_messages: int = 128,
    on_error: OnError = "skip",
    report: LoadReport | None = None,
    split: SplitMode = "random",
) -> tuple[list[LabeledSequence], list[LabeledSequence]]:
    """``(train, test)`` from DeepLog's HDFS key sequences: hdfs_train normal, hdfs_test_abnormal anomalous.

    The split is stratified with ``seed``: random, or ``distinct`` (identical sequences on one side).
    ``templates_csv`` defaults to ``HDFS/HDFS_templates.csv`` beside ``data_dir``, the layout of shared/data.
    """
    check_max_messages(max_messages)
    report = report if report is not None else LoadReport()
    report.sessions = True
    events = hdfs_event_messages(templates_csv or data_dir.parent / "HDFS" / "HDFS_templates.csv")
    sequences: list[LabeledSequence] = []
    for name, label in (("hdfs_train", 0), ("hdfs_test_abnormal", 1)):
        path = data_dir / name
        for number, line in read_lines(path, report):
            tokens = line.split()
            unknown = [t for t in tokens if not t.isdigit() or int(t) not in events]
            if unknown:
                report.malformed_line(path, number, f"unknown event number {unknown[0][:20]!r}", on_error)
                continue
            if len(tokens) > max_messages:
                report.truncated_sequences += 1
            messages = [events[int(t)] for t in tokens[:max_messages]]
            sequences.append(LabeledSequence(f"{name}:{number}", messages, label))
    report.log_if_notable()
    train, test = split_sequences(sequences, test_fraction, seed, split)
    return train, test
