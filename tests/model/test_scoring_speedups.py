"""Scoring shortcuts change speed, not results: merged LoRA, equal sequences scored once, thread sizing, int8."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel

from model.backbones import set_torch_threads
from model.checkpoint import CheckpointError, load_checkpoint
from model.logllm import LogLLM
from model.settings import ModelSettings

DEFAULT = Path(__file__).resolve().parents[2] / "checkpoints" / "default"


def hdfs_sessions(shared_data: Path, count: int) -> list[list[str]]:
    from training.data import load_hdfs_keyseq_benchmark

    _, test = load_hdfs_keyseq_benchmark(shared_data / "HDFS_deeplog_keyseq", seed=7)
    normal = [list(s.messages) for s in test if s.label == 0][: count // 2]
    anomalous = [list(s.messages) for s in test if s.label == 1][: count - len(normal)]
    return normal + anomalous


def test_torch_threads_auto_spares_cores_and_an_explicit_count_wins() -> None:
    before = torch.get_num_threads()
    try:
        usable = len(os.sched_getaffinity(0))
        assert set_torch_threads(0, spare_cores=1) == torch.get_num_threads() == max(1, usable - 1)
        assert set_torch_threads(0) == torch.get_num_threads() == usable
        assert set_torch_threads(3, spare_cores=1) == torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_equal_sequences_reach_the_decoder_once(fresh_model: LogLLM) -> None:
    a, b = ["open file <*>", "read <*> bytes"], ["close <*>"]
    rows: list[int] = []

    def count_rows(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        rows.append(int(kwargs["inputs_embeds"].shape[0]))

    alone = [fresh_model.score([a])[0], fresh_model.score([b])[0]]
    handle = fresh_model.decoder.register_forward_pre_hook(count_rows, with_kwargs=True)
    try:
        scores = fresh_model.score([a, b, a, list(a)], batch_size=8)
    finally:
        handle.remove()
    assert rows == [2]
    assert scores[0] == scores[2] == scores[3]
    assert scores == pytest.approx([alone[0], alone[1], alone[0], alone[0]], abs=1e-5)


@pytest.mark.slow
def test_merged_adapters_score_as_unmerged_ones_on_the_trained_checkpoint(shared_data: Path) -> None:
    sequences = hdfs_sessions(shared_data, 16)
    unmerged, _ = load_checkpoint(DEFAULT, ModelSettings(merge_lora=False))
    merged, _ = load_checkpoint(DEFAULT)
    assert isinstance(unmerged.decoder, PeftModel) and isinstance(unmerged.encoder, PeftModel)
    assert not isinstance(merged.decoder, PeftModel) and not isinstance(merged.encoder, PeftModel)
    before, after = unmerged.score(sequences, batch_size=8), merged.score(sequences, batch_size=8)
    assert after == pytest.approx(before, abs=1e-4)
    # the trained adapters matter: without them the scores move, so the comparison above can fail
    bare = merged.decoder.model.layers[0].self_attn.q_proj.weight
    base = unmerged.decoder.get_base_model().model.layers[0].self_attn.q_proj.base_layer.weight
    assert not torch.equal(bare, base)


@pytest.mark.slow
def test_int8_scores_on_the_cpu_and_refuses_training() -> None:
    model, _ = load_checkpoint(DEFAULT, ModelSettings(quantize="int8", device="cpu"))
    linear = model.decoder.model.layers[0].self_attn.q_proj
    assert type(linear).__module__.startswith("torch.ao.nn.quantized.dynamic")
    assert type(model.decoder.lm_head) is torch.nn.Linear  # the head stays full precision
    scores = model.score([["Receiving block <*> src: <*> dest: <*>"]])
    assert 0.0 <= scores[0] <= 1.0
    with pytest.raises(CheckpointError, match="int8 is for scoring only"):
        load_checkpoint(DEFAULT, ModelSettings(quantize="int8"), trainable=True)
