"""Plain log files with no labels (``--dataset text``): windowed like the service windows them, all normal."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.score_cli import ScoreSettings, windows_of
from training.data import DataFormatError, LoadReport
from training.data_text import load_text
from training.datasets import load_splits
from training.settings import DataSettings, TrainSettings


def test_fixed_windows_of_a_real_log_match_logllm_score(shared_data: Path) -> None:
    path = shared_data / "Thunderbird" / "Thunderbird_2k.log"
    report = LoadReport()
    windows = load_text(path, log_format="thunderbird", window_size=20, window_step=20, report=report)
    assert len(windows) == 100 and not any(w.label for w in windows) and not report.sessions
    assert report.lines_read == 2000 and report.malformed == 0
    assert windows[0].sequence_id == "Thunderbird_2k.log:1-20"
    scored = windows_of(path, ScoreSettings(log_format="thunderbird", window_size=20, window_step=20))
    assert [w.messages for w in windows] == [w.messages for w in scored]  # trains on the windows it will score


def test_sessions_of_a_real_log_match_logllm_score(shared_data: Path) -> None:
    path = shared_data / "HDFS" / "HDFS_2k.log"
    report = LoadReport()
    sessions = load_text(path, log_format="hdfs", window_mode="session", report=report)
    assert report.sessions and report.lines_without_session == 0
    scored = windows_of(path, ScoreSettings(log_format="hdfs", window_mode="session"))
    assert {s.sequence_id: s.messages for s in sessions} == {
        w.window_id.removeprefix("session:default:"): w.messages for w in scored
    }


def test_bad_lines_name_file_and_line_or_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "mixed.log"
    path.write_text("- 1 2005.11.09 dn1 Nov 9 12:01:01 dn1/dn1 crond[1]: ok\nnot a thunderbird line\n")
    report = LoadReport()
    assert len(load_text(path, log_format="thunderbird", report=report)) == 1 and report.malformed == 1
    with pytest.raises(DataFormatError, match=r"mixed.log:2: "):
        load_text(path, log_format="thunderbird", on_error="fail")


def test_text_splits_keep_time_order_and_training_it_needs_unlabeled(shared_data: Path) -> None:
    settings = DataSettings(dataset="text", data=shared_data / "Thunderbird" / "Thunderbird_2k.log",
                            log_format="thunderbird", window_size=20, window_step=20)  # fmt: skip
    splits = load_splits(settings)
    assert (len(splits.train) + len(splits.validation), len(splits.test)) == (80, 20)
    assert splits.test[0].sequence_id == "Thunderbird_2k.log:1601-1620"  # the last fifth of the file
    with pytest.raises(ValueError, match="--dataset text has no labels: train it with --unlabeled"):
        TrainSettings(dataset="text")
    assert TrainSettings(dataset="text", unlabeled=True).max_fpr == 0.01
