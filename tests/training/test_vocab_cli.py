"""``logllm vocab`` rebuilds an existing checkpoint's vocabulary from the split its manifest recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import logllm_cli
from model.vocab import load_vocabulary

DEFAULT = Path(__file__).resolve().parents[2] / "checkpoints" / "default"


def _checkpoint(tmp_path: Path, training: dict[str, object]) -> Path:
    """A manifest-only checkpoint: ``logllm vocab`` never loads the weights."""
    directory = tmp_path / "ckpt"
    directory.mkdir()
    manifest = json.loads((DEFAULT / "manifest.json").read_text())
    manifest.pop("vocabulary", None)
    manifest["training"] = training
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def _sessions(path: Path) -> Path:
    with path.open("w") as out:
        for session in range(30):
            bad = session % 3 == 0
            lines = ["job 1 started", "disk 7 failed" if bad else "job 1 finished ok"]
            for line in lines:
                out.write(json.dumps({"sequence_id": f"s{session}", "message": line, "label": int(bad)}) + "\n")
    return path


def run(*argv: str) -> int:
    args = logllm_cli.build_parser().parse_args(list(argv))
    return int(args.handler(args))


def test_vocab_uses_the_recorded_split_and_flags_override_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _sessions(tmp_path / "s.jsonl")
    ckpt = _checkpoint(tmp_path, {"dataset": "generic", "seed": 5, "validation_fraction": 0.5, "train_sequences": 12})
    assert run("vocab", str(ckpt), "--data", str(data)) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["split_settings"]["seed"] == 5 and printed["split_settings"]["dataset"] == "generic"
    vocabulary = load_vocabulary(ckpt)
    assert vocabulary is not None
    assert set(vocabulary.normal) == {"job <*> started", "job <*> finished ok"}
    assert set(vocabulary.anomalous_only) == {"disk <*> failed"}
    # 30 sessions -> 24 train -> half held out for validation: 12 counted, as the manifest says
    assert sum(vocabulary.windows.values()) == 12
    assert run("vocab", str(ckpt), "--data", str(data), "--validation-fraction", "0.25") == 0
    captured = capsys.readouterr()
    assert "manifest records 12 training sequences, this split has 18" in captured.err
    assert sum((load_vocabulary(ckpt) or vocabulary).windows.values()) == 18


def test_vocab_refuses_a_directory_without_manifest(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="manifest.json is missing"):
        run("vocab", str(tmp_path), "--data", str(tmp_path))


def test_the_budget_given_to_vocab_wins_over_the_recorded_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--max-fpr`` picks the session rules for that budget; without it, the budget the checkpoint was trained
    with (before, the flag was read and ignored: the shipped checkpoint got no session rule at all)."""
    data = _sessions(tmp_path / "s.jsonl")
    ckpt = _checkpoint(tmp_path, {"dataset": "generic", "seed": 5, "max_fpr": 0.02})
    assert run("vocab", str(ckpt), "--data", str(data)) == 0
    assert json.loads(capsys.readouterr().out)["max_fpr"] == 0.02
    assert run("vocab", str(ckpt), "--data", str(data), "--max-fpr", "0.2") == 0
    assert json.loads(capsys.readouterr().out)["max_fpr"] == 0.2


def test_pick_threshold_needs_a_budget(tmp_path: Path) -> None:
    data = _sessions(tmp_path / "s.jsonl")
    ckpt = _checkpoint(tmp_path, {"dataset": "generic", "seed": 5})
    with pytest.raises(SystemExit, match="--pick-threshold needs a budget"):
        run("vocab", str(ckpt), "--data", str(data), "--pick-threshold")
