"""model/hub.py: which backbone names need the hub, and offline mode only where none does (the served process
itself is checked with every outbound connection refused: tests/service/test_offline_start.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from model.hub import OFFLINE_ENV, checkpoint_backbones, is_hub_id, stay_offline

REPO = Path(__file__).resolve().parents[2]


def test_hub_ids_are_what_is_neither_packaged_nor_a_path(tmp_path: Path) -> None:
    assert not is_hub_id("minilm") and not is_hub_id("smollm2")
    assert not is_hub_id(str(tmp_path)) and not is_hub_id("./missing") and not is_hub_id("~/missing")
    assert is_hub_id("HuggingFaceTB/SmolLM2-135M") and is_hub_id("gpt2")


def test_the_shipped_checkpoint_names_only_local_backbones() -> None:
    names = checkpoint_backbones(REPO / "checkpoints" / "default")
    assert names and not any(map(is_hub_id, names))


def test_offline_only_when_no_backbone_needs_the_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(OFFLINE_ENV, raising=False)
    assert not stay_offline(["minilm", "org/decoder"])
    assert OFFLINE_ENV not in os.environ
    assert stay_offline(checkpoint_backbones(tmp_path))  # no manifest: nothing to fetch, the loader reports it
    assert os.environ[OFFLINE_ENV] == "1"


def test_a_users_choice_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(OFFLINE_ENV, "0")
    assert not stay_offline(["minilm", "smollm2"])
    (tmp_path / "manifest.json").write_text(json.dumps({"encoder": {"name": "minilm"}, "decoder": {"name": "x/y"}}))
    assert checkpoint_backbones(tmp_path) == ["minilm", "x/y"]
