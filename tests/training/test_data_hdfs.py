"""HDFS block sessions from a raw log fixture, and the DeepLog key-sequence benchmark on the real files."""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import pytest

from model.log_formats import parse_line
from model.preprocess import preprocess
from model.windows import session_ids
from training.data import (
    DataFormatError,
    LoadReport,
    hdfs_event_messages,
    load_hdfs,
    load_hdfs_keyseq_benchmark,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hdfs"


def test_sessions_labels_and_report() -> None:
    report = LoadReport()
    sequences = load_hdfs(FIXTURES / "HDFS.log", FIXTURES / "anomaly_label.csv", report=report)
    by_id = {s.sequence_id: s for s in sequences}
    assert len(sequences) == 132 and sum(s.label for s in sequences) == 2
    assert by_id["blk_38865049064139660"].messages == ["PacketResponder <*> for block <*> terminating"]
    assert by_id["blk_-4411589101766563890"].label == 1 and len(by_id["blk_-4411589101766563890"].messages) == 2
    # the line naming many blocks joins each of them
    line = next(line for line in (FIXTURES / "HDFS.log").open() if "to delete" in line)
    named = session_ids(line)
    assert len(named) == 100 and named[0] == "blk_-8570780307468499817" and by_id[named[0]].label == 1
    assert all(by_id[sid].messages == by_id[named[0]].messages for sid in named)
    assert by_id[named[0]].messages[0].startswith("BLOCK* ask <*> to delete  <*> <*> <*>")
    assert "blk_707166530951154301" not in by_id  # in the log, not in the label file
    assert (report.lines_read, report.unlabeled_sessions, report.sessions_without_lines) == (40, 1, 1)
    assert "1 sessions without a label (left out)" in report.summary()
    assert report.sessions


def test_first_seen_order_and_message_cap() -> None:
    sequences = load_hdfs(FIXTURES / "HDFS.log", FIXTURES / "anomaly_label.csv", max_messages=1)
    assert sequences[0].sequence_id == "blk_38865049064139660"
    assert all(len(s.messages) == 1 for s in sequences)
    with pytest.raises(ValueError, match="max_messages must be positive"):
        load_hdfs(FIXTURES / "HDFS.log", FIXTURES / "anomaly_label.csv", max_messages=0)


def test_malformed_lines_fail_with_file_and_line_or_are_counted(tmp_path: Path) -> None:
    log = tmp_path / "HDFS.log"
    good = (FIXTURES / "HDFS.log").read_text().splitlines()[:3]
    log.write_text("\n".join([good[0], "garbage line", good[1], "", good[2]]) + "\n")
    labels = tmp_path / "anomaly_label.csv"
    labels.write_text("BlockId,Label\nblk_38865049064139660,Normal\nblk_x,Maybe\n")
    with pytest.raises(DataFormatError, match=r"anomaly_label\.csv:3: .*'Maybe'"):
        load_hdfs(log, labels, on_error="fail")
    labels.write_text("BlockId,Label\nblk_38865049064139660,Normal\n")
    with pytest.raises(DataFormatError, match=r"HDFS\.log:2: hdfs: .*'garbage line'"):
        load_hdfs(log, labels, on_error="fail")
    report = LoadReport()
    assert len(load_hdfs(log, labels, report=report)) == 1
    assert (report.malformed, report.blank_lines, report.lines_read) == (1, 1, 5)
    assert report.examples == [f"{log}:2: hdfs: not '<date> <time> <pid> <level> <component>: ...': 'garbage line'"]


def test_label_file_needs_its_header(tmp_path: Path) -> None:
    labels = tmp_path / "anomaly_label.csv"
    labels.write_text("Block,Label\n")
    with pytest.raises(DataFormatError, match=r"anomaly_label\.csv:1: expected header BlockId,Label"):
        load_hdfs(FIXTURES / "HDFS.log", labels)


def test_event_messages_look_like_preprocessed_raw_lines(shared_data: Path) -> None:
    """Every event seen in HDFS_2k maps to what preprocess makes of most of its raw lines."""
    events = hdfs_event_messages(shared_data / "HDFS" / "HDFS_templates.csv")
    assert events[5] == "Receiving block <*> src: <*> dest: <*>"
    with (shared_data / "HDFS" / "HDFS_templates.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    patterns = {
        int(r["EventId"][1:]): re.compile(".*?".join(map(re.escape, r["EventTemplate"].split("<*>"))) + "$")
        for r in rows
    }
    seen: dict[int, Counter[str]] = {}
    for line in (shared_data / "HDFS" / "HDFS_2k.log").read_text().splitlines():
        content = parse_line(line, "hdfs").content
        event = max(n for n, pattern in patterns.items() if pattern.match(content))
        seen.setdefault(event, Counter())[preprocess(content)] += 1
    assert len(seen) >= 12
    for event, forms in seen.items():
        if event != 30:  # "ask <*> to delete" lists a varying number of blocks
            assert events[event] == forms.most_common(1)[0][0], event


def test_keyseq_benchmark(shared_data: Path) -> None:
    report = LoadReport()
    train, test = load_hdfs_keyseq_benchmark(shared_data / "HDFS_deeplog_keyseq", seed=42, report=report)
    assert (len(train), len(test)) == (4855 + 16838 - 971 - 3368, 971 + 3368)
    assert sum(s.label for s in test) == 3368 and report.malformed == 0 and report.sessions
    assert train[0].messages[0] == "BLOCK* NameSystem.allocateBlock: <*> <*>"
    assert max(len(s.messages) for s in train + test) <= 128
    again, _ = load_hdfs_keyseq_benchmark(shared_data / "HDFS_deeplog_keyseq", seed=42)
    assert [s.sequence_id for s in again] == [s.sequence_id for s in train]
    other, _ = load_hdfs_keyseq_benchmark(shared_data / "HDFS_deeplog_keyseq", seed=43)
    assert [s.sequence_id for s in other] != [s.sequence_id for s in train]


def test_keyseq_unknown_event_numbers(tmp_path: Path, shared_data: Path) -> None:
    (tmp_path / "hdfs_train").write_text("5 5 22\n5 99 22\n")
    (tmp_path / "hdfs_test_abnormal").write_text("5 x\n22 11\n")
    templates = shared_data / "HDFS" / "HDFS_templates.csv"
    with pytest.raises(DataFormatError, match=r"hdfs_train:2: unknown event number '99'"):
        load_hdfs_keyseq_benchmark(tmp_path, templates, on_error="fail")
    report = LoadReport()
    train, test = load_hdfs_keyseq_benchmark(tmp_path, templates, test_fraction=0.5, report=report)
    assert report.malformed == 2 and len(train + test) == 2
