"""``logllm train --unlabeled`` and ``--init-from`` end to end on the real backbones, with the tiny recipe.

An unlabeled run never trains on a labeled anomaly (they move to the test split), its threshold keeps the FPR
budget on the validation normals, and the manifest says what it trained on. ``--init-from`` starts from a
checkpoint's adapters and projector and refuses one trained on other backbones.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file

from model.vocab import load_vocabulary
from tests.training.test_trainer import TINY_RECIPE, run_cli, write_sessions

pytestmark = pytest.mark.slow
SESSIONS = 60  # every third anomalous: 20 anomalies in all
ANOMALOUS_TEMPLATE = "disk failure on node <*>"


@pytest.fixture(scope="module")
def unlabeled_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One ``--unlabeled`` run: (data file, checkpoint directory)."""
    tmp = tmp_path_factory.mktemp("unlabeled")
    data = write_sessions(tmp / "sessions.jsonl", SESSIONS)
    out = tmp / "run"
    argv = ["train", "--dataset", "generic", "--data", str(data), "--output", str(out), "--quantize", "none",
            "--unlabeled", "--validation-fraction", "0.3", "--test-anomalies", "15"]  # fmt: skip
    assert run_cli(*argv, *TINY_RECIPE) == 0
    return data, out


def test_an_unlabeled_run_trains_on_normal_windows_and_perturbed_copies_only(unlabeled_run: tuple[Path, Path]) -> None:
    data, out = unlabeled_run
    manifest = json.loads((out / "manifest.json").read_text())
    training = manifest["training"]
    assert training["unlabeled"] is True and training["max_fpr"] == 0.01  # the default budget without labels
    assert training["perturbations"].split(",") == [
        "drop", "duplicate", "insert", "cut-end", "interrupt", "drop-terminal", "wrong-count"
    ]  # fmt: skip
    info = training["unlabeled_data"]
    assert info["normal_windows"] == training["train_sequences"] > 0
    assert 0 < info["synthetic_anomalies"] <= info["normal_windows"]
    assert sum(n for k, n in info["perturbation_counts"].items() if k != "unchanged") == info["synthetic_anomalies"]
    # no labeled anomaly was trained on: the training windows' vocabulary never saw the failure template
    vocabulary = load_vocabulary(out)
    assert vocabulary is not None
    assert ANOMALOUS_TEMPLATE not in vocabulary.normal and not vocabulary.anomalous_only
    assert sum(vocabulary.windows.values()) == info["normal_windows"]
    (out / "vocabulary.json").unlink()  # `logllm vocab` rebuilds it from the manifest's split, as trained
    assert run_cli("vocab", str(out), "--data", str(data)) == 0
    rebuilt = load_vocabulary(out)
    assert rebuilt is not None and rebuilt.normal == vocabulary.normal and not rebuilt.anomalous_only
    # every real anomaly went to the test split (15 there + 5 sampled out = all 20)
    total = SESSIONS // 3
    assert info["moved_to_test"] > 0 and training["test_anomalies_left_out"] == total - 15
    report = json.loads((out / "eval" / "report.json").read_text())
    assert report["metrics"]["positives"] == 15 and report["extra"]["unlabeled"] is True
    assert report["extra"]["threshold_rule"] == "most recall at validation FPR <= 0.01"
    metrics = report["metrics"]
    assert metrics["fp"] + metrics["tn"] == metrics["n"] - 15 and "unseen" in metrics  # FPR with its counts


def test_the_threshold_keeps_the_fpr_budget_on_validation_normals(unlabeled_run: tuple[Path, Path]) -> None:
    data, out = unlabeled_run
    report_dir = out.parent / "validation"
    argv = ["eval", "--checkpoint", str(out), "--dataset", "generic", "--data", str(data), "--device", "cpu",
            "--seed", "7", "--validation-fraction", "0.3", "--part", "validation",
            "--report", str(report_dir)]  # fmt: skip
    assert run_cli(*argv) == 0
    metrics = json.loads((report_dir / "report.json").read_text())["metrics"]
    normals = metrics["n"] - metrics["positives"]
    assert normals >= 10 and metrics["fp"] <= 0.01 * normals  # 1% of ~13 normals: no false alarm allowed
    # eval knows the checkpoint never trained on labeled anomalies: every anomalous test window counts as unseen
    test_dir = out.parent / "test"
    assert run_cli(*argv[:-4], "--report", str(test_dir)) == 0
    metrics = json.loads((test_dir / "report.json").read_text())["metrics"]
    assert metrics["unseen"]["positives"] == metrics["positives"] > 0


def test_init_from_starts_from_the_checkpoint_and_refuses_other_backbones(
    unlabeled_run: tuple[Path, Path], tmp_path: Path
) -> None:
    data, source = unlabeled_run
    out = tmp_path / "adapted"
    argv = ["train", "--dataset", "generic", "--data", str(data), "--quantize", "none", "--init-from", str(source)]
    assert run_cli(*argv, "--output", str(out), "--stages", "1", *TINY_RECIPE) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["training"]["init_from_version"] == json.loads((source / "manifest.json").read_text())["version"]
    # stage 1 trains the decoder LoRA only: the encoder LoRA and projector are the source's, not fresh ones
    for part in ("projector.safetensors", "encoder_lora/adapter_model.safetensors"):
        before, after = load_file(str(source / part)), load_file(str(out / part))
        assert before.keys() == after.keys() and all((before[k] == after[k]).all() for k in before)
    assert any((v != 0).any() for k, v in load_file(str(out / "encoder_lora/adapter_model.safetensors")).items()
               if "lora_B" in k)  # fmt: skip

    other = tmp_path / "other-encoder"
    shutil.copytree(source, other)
    raw = json.loads((other / "manifest.json").read_text())
    raw["encoder"] = {**raw["encoder"], "name": "bert-base", "fingerprint": "hub:bert-base-uncased"}
    (other / "manifest.json").write_text(json.dumps(raw))
    refused = r"--init-from .*: checkpoint encoder was trained on bert-base \(hub:bert-base-uncased"
    with pytest.raises(SystemExit, match=refused):
        run_cli(*argv, "--init-from", str(other), "--output", str(tmp_path / "refused"), *TINY_RECIPE)
    assert not (tmp_path / "refused" / "manifest.json").exists()
