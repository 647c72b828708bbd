"""A checkpoint records how it reads logs; serve and score take each setting from a flag, else an env var, else
the checkpoint, else the default, and say which."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from model.reading import READING_FIELDS, describe_reading, manifest_reading, resolve_reading, training_reading

REPO = Path(__file__).resolve().parents[2]


def test_the_shipped_checkpoint_reads_hdfs_sessions_by_block_id() -> None:
    assert manifest_reading(REPO / "checkpoints" / "default") == {
        "log_format": "hdfs", "window_mode": "session", "session_pattern": r"blk_-?\d+"
    }  # fmt: skip


def test_a_checkpoint_without_a_reading_or_a_manifest_has_none(tmp_path: Path) -> None:
    assert manifest_reading(tmp_path) == {}
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "logllm-checkpoint/1"}))
    assert manifest_reading(tmp_path) == {}


def test_flag_beats_env_beats_checkpoint_beats_default() -> None:
    recorded = {"log_format": "hdfs", "window_mode": "session", "session_pattern": "blk_-?\\d+"}
    environ = {"logllm_window_mode": "fixed", "LOGLLM_SESSION_PATTERN": "job-\\d+"}  # env names: any case
    taken, origins = resolve_reading(READING_FIELDS, {"session_pattern"}, recorded, environ)
    assert taken == {"log_format": "hdfs"}
    assert origins == {"log_format": "checkpoint", "window_mode": "env", "session_pattern": "flag",
                       "window_size": "default", "window_step": "default"}  # fmt: skip
    assert describe_reading({"log_format": "hdfs", "window_size": 100}, origins) == (
        "log_format=hdfs (checkpoint), window_size=100 (default)"
    )


def _data(dataset: str, **over: object) -> SimpleNamespace:
    base = {"dataset": dataset, "log_format": "raw", "window_mode": "fixed", "session_pattern": "x-\\d+",
            "window_size": 20, "window_step": 10}  # fmt: skip
    return SimpleNamespace(**{**base, **over})


def test_train_records_the_reading_of_its_data() -> None:
    assert training_reading(_data("hdfs-sessions"), sessions=True)["log_format"] == "hdfs"
    assert training_reading(_data("bgl"), sessions=False) == {
        "log_format": "bgl", "window_mode": "fixed", "window_size": 20, "window_step": 10
    }  # fmt: skip
    text = training_reading(_data("text", log_format="rfc3164", window_mode="session"), sessions=True)
    assert text == {"log_format": "rfc3164", "window_mode": "session", "session_pattern": "x-\\d+"}
    # users' records: the message alone, sessions by their own id field (no pattern to record)
    assert training_reading(_data("generic"), sessions=True) == {"log_format": "raw", "window_mode": "session"}


def test_score_reads_as_the_checkpoint_and_resolves_auto_from_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse

    from model.score_cli import ScoreSettings, with_checkpoint_reading

    for name in READING_FIELDS:
        monkeypatch.delenv(f"LOGLLM_{name.upper()}", raising=False)
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    reading = {"log_format": "hdfs", "window_mode": "session", "session_pattern": "blk_-?\\d+"}
    (checkpoint / "manifest.json").write_text(json.dumps({"reading": reading}))
    log = tmp_path / "x.log"
    log.write_text("<13>Oct 11 22:14:15 host su: one\n<13>Oct 11 22:14:16 host su: two\n")
    args = argparse.Namespace(file=log, checkpoint=str(checkpoint))
    settings = with_checkpoint_reading(ScoreSettings(checkpoint=checkpoint), args)
    assert (settings.log_format, settings.window_mode) == ("hdfs", "session")
    assert "# reading: log_format=hdfs (checkpoint), window_mode=session (checkpoint)" in capsys.readouterr().err
    args = argparse.Namespace(file=log, checkpoint=str(checkpoint), log_format="auto", window_mode="fixed")
    settings = with_checkpoint_reading(ScoreSettings(checkpoint=checkpoint, log_format="auto"), args)
    assert (settings.log_format, settings.window_mode) == ("rfc3164", "fixed")
    assert "log_format=rfc3164 (auto from the first 2 lines, flag)" in capsys.readouterr().err
