"""Every CLI flag is also a LOGLLM_ env var; flags win; bad values name the flag."""

from __future__ import annotations

import argparse

import pytest

from model.cli_args import add_settings_arguments, settings_from_args
from model.score_cli import ScoreSettings


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser, ScoreSettings)
    return parser.parse_args(argv)


def test_env_var_applies_when_no_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGLLM_WINDOW_SIZE", "20")
    assert settings_from_args(ScoreSettings, parse([])).window_size == 20


def test_flag_beats_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGLLM_WINDOW_SIZE", "20")
    settings = settings_from_args(ScoreSettings, parse(["--window-size", "7", "--log-format", "bgl"]))
    assert (settings.window_size, settings.log_format) == (7, "bgl")


def test_bad_value_exits_naming_the_flag() -> None:
    with pytest.raises(SystemExit, match=r"--window-size: .*got '-3'"):
        settings_from_args(ScoreSettings, parse(["--window-size", "-3"]))
    with pytest.raises(SystemExit, match=r"--log-format"):
        settings_from_args(ScoreSettings, parse(["--log-format", "syslog"]))
