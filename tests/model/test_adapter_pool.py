"""The adapter pool: checkpoints on the same backbones share them, mixed batches score as each model alone, other
backbones load side by side up to the memory limit, and bad checkpoints are refused by name while the rest serve.
Real checkpoints on tiny backbones (conftest.py's ``tiny_models``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from model.adapter_pool import MIB, AdapterPool, score_mixed
from model.checkpoint import CheckpointError, load_checkpoint
from model.settings import ModelSettings

pytestmark = pytest.mark.slow
SETTINGS = ModelSettings(device="cpu", quantize="none", torch_threads=1)
WINDOWS = [["alpha beta", "gamma 3"], ["x y", "x y", "x y"], ["delta"], ["a b", "x y"]]


def test_models_on_the_same_backbones_share_them_and_a_mixed_batch_scores_as_each_alone(
    tiny_models: dict[str, Path],
) -> None:
    pool = AdapterPool(SETTINGS, 1 << 30)
    default = pool.load(tiny_models["default"])
    after_one = pool.nbytes
    web = pool.load(tiny_models["web"])
    assert len(pool.bases()) == 1 and default.base is web.base
    assert pool.nbytes - after_one == web.nbytes < default.base.nbytes / 10  # grows by the adapters only
    alone = {m.version: m.score(WINDOWS) for m in (default, web)}
    reference, _ = load_checkpoint(tiny_models["web"], SETTINGS)  # merged, as one model is served
    assert alone[web.version] == pytest.approx(reference.score(WINDOWS), abs=1e-5)
    assert alone[web.version] != pytest.approx(alone[default.version], abs=1e-3)  # the adapters matter
    pairs = [(m, w) for w in WINDOWS for m in (default, web)]
    mixed = score_mixed(pairs, batch_size=3)  # batches cut across models
    assert mixed == pytest.approx([alone[m.version][WINDOWS.index(w)] for m, w in pairs], abs=1e-5)
    assert web.vocabulary is not None and "x y" in web.vocabulary.normal

    pool.release(web)
    assert web.adapter not in default.base.adapters and pool.nbytes == after_one
    assert default.score(WINDOWS) == pytest.approx(alone[default.version], abs=1e-6)
    pool.release(default)
    assert pool.bases() == [] and pool.nbytes == 0


def test_other_backbones_load_side_by_side_up_to_the_memory_limit(tiny_models: dict[str, Path]) -> None:
    pool = AdapterPool(SETTINGS, 1 << 30)
    web, other = pool.load(tiny_models["web"]), pool.load(tiny_models["other"])
    assert len(pool.bases()) == 2 and web.base is not other.base
    assert score_mixed([(web, WINDOWS[0]), (other, WINDOWS[0])]) == pytest.approx(
        [web.score(WINDOWS[:1])[0], other.score(WINDOWS[:1])[0]], abs=1e-5
    )
    tight = AdapterPool(SETTINGS, pool.bases()[0].nbytes + 4 * MIB)
    tight.load(tiny_models["web"])
    refused = rf"checkpoint {tiny_models['other']}: backbones .*decoder2 need \d+ MiB .* of the \d+ MiB limit"
    with pytest.raises(CheckpointError, match=refused):
        tight.load(tiny_models["other"])
    assert len(tight.bases()) == 1


def test_a_partial_or_corrupt_checkpoint_is_refused_by_name_and_the_loaded_ones_keep_scoring(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    pool = AdapterPool(SETTINGS, 1 << 30)
    web = pool.load(tiny_models["web"])
    before = web.score(WINDOWS)
    partial = tmp_path / "partial"
    shutil.copytree(tiny_models["web2"], partial)
    (partial / "projector.safetensors").unlink()
    with pytest.raises(CheckpointError, match=rf"checkpoint {partial} is partial: projector.safetensors missing"):
        pool.load(partial)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_models["web2"], corrupt)
    (corrupt / "decoder_lora" / "adapter_model.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match=rf"checkpoint {corrupt} failed to load"):
        pool.load(corrupt)
    other_backbone = tmp_path / "other-backbone"
    shutil.copytree(tiny_models["web2"], other_backbone)
    manifest = json.loads((other_backbone / "manifest.json").read_text())
    manifest["decoder"]["fingerprint"] = "sha256:0000"
    (other_backbone / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"checkpoint decoder was trained on .* \(sha256:0000"):
        pool.load(other_backbone)
    with pytest.raises(CheckpointError, match="nowhere does not exist"):
        pool.load(tmp_path / "nowhere")
    assert set(web.base.adapters) == {web.adapter}  # the failed loads left nothing behind
    assert web.score(WINDOWS) == pytest.approx(before, abs=1e-6)
    with pytest.raises(CheckpointError, match="quantize=int8"):
        AdapterPool(ModelSettings(quantize="int8"), 1 << 30)
