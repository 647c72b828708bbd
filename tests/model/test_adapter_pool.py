"""The adapter pool: checkpoints on the same backbones share them, mixed batches score as each model alone, other
backbones load side by side up to the memory limit, and bad checkpoints are refused by name while the rest serve.
Real checkpoints on tiny backbones (conftest.py's ``tiny_models``)."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from model.adapter_pool import MIB, AdapterPool, SharedBase, score_mixed
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
    for model in (default, web):
        model.model.cache.clear()  # so the mixed pass encodes every message, each through its model's encoder adapter
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


def _base_storages(base: SharedBase) -> dict[str, int]:
    params = itertools.chain(base.encoder.named_parameters(), base.decoder.named_parameters())
    return {name: param.untyped_storage().data_ptr() for name, param in params}


def _module_count(base: SharedBase) -> int:
    return len(list(base.encoder.modules())) + len(list(base.decoder.modules()))


def test_many_models_share_every_base_tensor_and_add_only_their_own(tiny_models: dict[str, Path]) -> None:
    """S-LoRA's memory rule: 32 registered models hold one copy of the backbones (same storages, no module added
    per model) and each adds exactly its own LoRA tensors and projector."""
    pool = AdapterPool(SETTINGS, 1 << 30)
    first = pool.load(tiny_models["web"])
    base = first.base
    shared, modules = _base_storages(base), _module_count(base)
    models = [first] + [pool.load(tiny_models["web" if i % 2 else "web2"]) for i in range(31)]
    assert {m.base for m in models} == {base}
    assert _base_storages(base) == shared  # no parameter copied or added: the adapters are not parameters of the base
    assert _module_count(base) == modules
    owned = [
        {t.untyped_storage().data_ptr(): t.untyped_storage() for p in base.lora_pairs(m.adapter) for t in (p.a, p.b)}
        for m in models
    ]
    pointers = [set(mine) for mine in owned]
    assert sum(map(len, pointers)) == len(set().union(*pointers))  # no model's tensors in another's storage
    assert not set().union(*pointers) & set(shared.values())
    for model, mine in zip(models, owned, strict=True):  # its storages hold its LoRA tensors and nothing more
        assert sum(s.nbytes() for s in mine.values()) == sum(p.nbytes for p in base.lora_pairs(model.adapter))
    assert pool.nbytes == base.nbytes + sum(m.nbytes for m in models)
    assert first.nbytes == sum(p.nbytes for p in base.lora_pairs(first.adapter)) + sum(
        t.numel() * t.element_size() for t in first.model.projector.parameters()
    )
    alone = models[5].score(WINDOWS)
    pool.release(models[3])
    assert base.lora_pairs(models[3].adapter) == [] and models[3].adapter not in base.adapters
    assert models[5].score(WINDOWS) == pytest.approx(alone, abs=1e-6)


def test_an_adapter_the_pool_cannot_compute_as_trained_is_refused_by_name(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    pool = AdapterPool(SETTINGS, 1 << 30)
    web = pool.load(tiny_models["web"])
    before = web.score(WINDOWS)
    dora = tmp_path / "dora"
    shutil.copytree(tiny_models["web2"], dora)
    config_path = dora / "decoder_lora" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["use_dora"] = True
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=rf"checkpoint {dora}: {config_path}: use_dora=True is not supported"):
        pool.load(dora)
    rank = tmp_path / "rank"
    shutil.copytree(tiny_models["web2"], rank)
    config_path = rank / "encoder_lora" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["r"] = 2 * int(config["r"])
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"encoder_lora/adapter_model.safetensors: .*query has A \(4, 32\)"):
        pool.load(rank)
    assert set(web.base.adapters) == {web.adapter}
    assert web.score(WINDOWS) == pytest.approx(before, abs=1e-6)


def test_a_checkpoint_rewritten_in_place_leaves_the_loaded_model_as_it_was(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """The adapters are copied out of their files: a retrain writing into the same directory changes nothing
    served until the model is registered again."""
    pool = AdapterPool(SETTINGS, 1 << 30)
    copy = tmp_path / "web"
    shutil.copytree(tiny_models["web"], copy)
    model = pool.load(copy)
    before = model.score(WINDOWS)
    model.model.cache.clear()
    for part in ("encoder_lora", "decoder_lora"):
        weights = copy / part / "adapter_model.safetensors"
        data = bytearray(weights.read_bytes())
        header = 8 + int.from_bytes(data[:8], "little")
        data[header:] = bytes(len(data) - header)  # every weight zero, same size, same inode
        with weights.open("r+b") as handle:
            handle.write(data)
    assert model.score(WINDOWS) == pytest.approx(before, abs=1e-6)
    assert pool.load(copy).score(WINDOWS) != pytest.approx(before, abs=1e-3)  # what a new registration reads


def _with_double_rank(source: Path, directory: Path) -> Path:
    """A copy of ``source`` whose adapters have twice the rank, the new half zero and alpha doubled: the same
    function as ``source`` in tensors of another shape."""
    shutil.copytree(source, directory)
    for part in ("encoder_lora", "decoder_lora"):
        config_path = directory / part / "adapter_config.json"
        config = json.loads(config_path.read_text())
        config["r"], config["lora_alpha"] = 2 * int(config["r"]), 2 * float(config["lora_alpha"])
        config_path.write_text(json.dumps(config))
        weights = directory / part / "adapter_model.safetensors"
        tensors = load_file(str(weights))
        save_file(
            {
                key: torch.cat([t, torch.zeros_like(t)], dim=0 if key.endswith("lora_A.weight") else 1)
                for key, t in tensors.items()
            },
            str(weights),
        )
    return directory


def test_every_row_of_a_mixed_batch_scores_as_its_checkpoint_served_alone(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """Against each checkpoint as one model is served (load_checkpoint: peft, adapters merged into the weights):
    rows of three models in every batch (each row's adapters gathered), then with a fourth whose adapters have
    another rank (layers fall back to grouping rows by adapter)."""
    wide = _with_double_rank(tiny_models["web"], tmp_path / "web-wide")
    paths = {"default": tiny_models["default"], "web": tiny_models["web"], "web2": tiny_models["web2"], "wide": wide}
    pool = AdapterPool(SETTINGS, 1 << 30)
    models = {name: pool.load(path) for name, path in paths.items()}
    alone = {name: load_checkpoint(path, SETTINGS)[0].score(WINDOWS) for name, path in paths.items()}
    assert alone["wide"] == pytest.approx(alone["web"], abs=1e-5)  # the same function
    assert len({round(scores[0], 3) for scores in alone.values()}) == 3  # default, web and web2 differ
    for names in (["default", "web", "web2"], list(paths)):
        for model in models.values():
            model.model.cache.clear()  # every message encoded in the mixed encoder passes
        rows = [(name, window) for window in WINDOWS for name in names]
        scores = score_mixed([(models[name], window) for name, window in rows], batch_size=2 * len(names))
        assert scores == pytest.approx([alone[name][WINDOWS.index(window)] for name, window in rows], abs=1e-5)
