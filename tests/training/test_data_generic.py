"""Users' own JSONL and CSV files: sessions by sequence_id, or fixed windows; labels in either spelling."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.data import DataFormatError, LoadReport, load_generic, parse_label

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "generic"


def test_jsonl_sessions() -> None:
    report = LoadReport()
    sequences = load_generic(FIXTURES / "sessions.jsonl", report=report)
    assert [(s.sequence_id, s.label) for s in sequences] == [("req-1", 0), ("req-2", 1), ("3", 0)]
    assert sequences[0].messages == ["user <*> logged in from <*>", "opened <*>", "user <*> logged out"]
    assert report.unlabeled_lines == 1 and "1 lines without a label (counted as normal)" in report.summary()
    assert report.sessions  # a sequence_id: whole sessions, so their transitions can be counted


def test_fixed_windows_are_not_sessions() -> None:
    report = LoadReport()
    load_generic(FIXTURES / "windows.csv", window_size=3, window_step=3, report=report)
    assert not report.sessions


def test_csv_fixed_windows_and_cap() -> None:
    sequences = load_generic(FIXTURES / "windows.csv", window_size=3, window_step=3, max_messages=2)
    assert [(s.sequence_id, s.label) for s in sequences] == [
        ("windows.csv:2-4", 0),
        ("windows.csv:5-7", 1),
        ("windows.csv:8-9", 0),
    ]
    assert sequences[0].messages == [
        "service started on port <*>",
        "request <*> served in <*> ms, status <*>",
    ]


def test_format_is_sniffed_without_a_known_suffix(tmp_path: Path) -> None:
    path = tmp_path / "records.txt"
    path.write_text((FIXTURES / "sessions.jsonl").read_text())
    assert len(load_generic(path)) == 3


def test_malformed_records(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"sequence_id": "a", "message": "ok", "label": 1}\n'
        "not json\n"
        '{"sequence_id": "a", "message": "ok", "label": "maybe"}\n'
        '{"message": "no id"}\n'
        '["a list"]\n'
        '{"sequence_id": "b", "text": "no message"}\n'
    )
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:2: "):
        load_generic(path, on_error="fail")
    report = LoadReport()
    assert [(s.sequence_id, s.label) for s in load_generic(path, report=report)] == [("a", 1)]
    assert report.malformed == 5
    assert report.examples[1] == f"{path}:3: label must be 0/1 or normal/anomalous, got 'maybe'"
    assert report.examples[2] == f"{path}:4: sequence_id missing, earlier records have one"


def test_csv_needs_a_message_column(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("text,label\nhello,0\n")
    with pytest.raises(DataFormatError, match=r"x\.csv:1: a 'message' column is required"):
        load_generic(path)
    path.write_text('message,label\nhello,0\n"two, fields",1,extra\n')
    report = LoadReport()
    assert len(load_generic(path, report=report)) == 1 and report.examples[0].startswith(f"{path}:3: ")


@pytest.mark.parametrize(
    ("value", "label"),
    [
        (0, 0),
        (1, 1),
        (True, 1),
        ("Normal", 0),
        ("ANOMALOUS", 1),
        ("anomaly", 1),
        (" 1 ", 1),
        (None, None),
        ("", None),
    ],
)
def test_parse_label(value: object, label: int | None) -> None:
    assert parse_label(value) == label


@pytest.mark.parametrize("value", [2, "yes", 0.5])
def test_parse_label_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="label must be"):
        parse_label(value)
