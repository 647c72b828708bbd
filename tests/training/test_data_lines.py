"""BGL, Thunderbird and Liberty: chronological split by line, then windows labeled by any anomalous line."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.data import DataFormatError, LoadReport, load_line_labeled

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_bgl_fixture_split_then_windows() -> None:
    train, test = load_line_labeled(FIXTURES / "bgl" / "BGL.log", "bgl", window_size=10, step=10)
    # 40 lines: lines 1-32 train (the last window partial), 33-40 test; lines 9-10 and 21-40 are alerts
    assert [(s.sequence_id, s.label, len(s.messages)) for s in train] == [
        ("BGL.log:1-10", 1, 10),
        ("BGL.log:11-20", 0, 10),
        ("BGL.log:21-30", 1, 10),
        ("BGL.log:31-32", 1, 2),
    ]
    assert [(s.sequence_id, s.label) for s in test] == [("BGL.log:33-40", 1)]
    assert train[0].messages[0] == "instruction cache parity error corrected"


def test_real_bgl_2k_windows(shared_data: Path) -> None:
    """DATA.md: 12 of the 20 non-overlapping 100-line windows of BGL_2k are anomalous."""
    train, test = load_line_labeled(shared_data / "BGL" / "BGL_2k.log", "bgl")
    assert (len(train), len(test)) == (16, 4)
    assert sum(s.label for s in train + test) == 12
    small_train, small_test = load_line_labeled(shared_data / "BGL" / "BGL_2k.log", "bgl", 20, 20)
    assert (len(small_train), len(small_test)) == (80, 20)


def test_sliding_windows_cap_and_max_lines() -> None:
    train, test = load_line_labeled(FIXTURES / "liberty" / "Liberty.log", "liberty", 3, 2, max_lines=8, max_messages=2)
    # 8 lines read: 1-6 train, 7-8 test; alerts on lines 3 and 9 (9 is beyond max_lines)
    assert [(s.sequence_id, s.label) for s in train] == [
        ("Liberty.log:1-3", 1),
        ("Liberty.log:3-5", 1),
        ("Liberty.log:5-6", 0),
    ]
    assert [(s.sequence_id, s.label) for s in test] == [("Liberty.log:7-8", 0)]
    assert all(len(s.messages) <= 2 for s in train + test)
    assert test[0].messages == ["kernel link watchdog reset without a colon", "restart."]


def test_thunderbird_fixture() -> None:
    train, test = load_line_labeled(FIXTURES / "thunderbird" / "Thunderbird.log", "thunderbird", 4, 4)
    assert (len(train), len(test)) == (4, 1) and not any(s.label for s in train + test)
    assert train[0].messages[1] == "session opened for user root by (uid=<*>)"


def test_malformed_lines_keep_the_split_point(tmp_path: Path) -> None:
    lines = (FIXTURES / "bgl" / "BGL.log").read_text().splitlines()[:10]
    lines[1] = "- 1117838570 too short"
    path = tmp_path / "bgl.log"
    path.write_text("\n".join(lines))
    with pytest.raises(DataFormatError, match=r"bgl\.log:2: bgl: expected at least 9 header fields"):
        load_line_labeled(path, "bgl", 5, 5, on_error="fail")
    report = LoadReport()
    train, test = load_line_labeled(path, "bgl", 5, 5, report=report)
    assert [s.sequence_id for s in train + test] == ["bgl.log:1-6", "bgl.log:7-8", "bgl.log:9-10"]
    assert report.malformed == 1 and report.examples[0].startswith(f"{path}:2: bgl:")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fmt": "hdfs"}, "has no line labels"),
        ({"train_fraction": 1.0}, "strictly between 0 and 1"),
        ({"window_size": 0}, "must be positive"),
        ({"max_lines": 0}, "max_lines must be positive"),
        ({"max_messages": 0}, "max_messages must be positive"),
    ],
)
def test_arguments_are_validated(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"path": FIXTURES / "bgl" / "BGL.log", "fmt": "bgl", **kwargs}
    with pytest.raises(ValueError, match=message):
        load_line_labeled(**arguments)  # type: ignore[arg-type]
