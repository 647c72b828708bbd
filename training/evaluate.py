"""Score a labeled split with a model and turn the scores into metrics, timing and a report."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.logllm import LogLLM
from training.data import LabeledSequence


@dataclass
class Evaluation:
    """Scores of one split and what they add up to."""

    labels: list[int]
    scores: list[float]
    threshold: float
    metrics: dict[str, Any]
    seconds: float

    @property
    def sequences_per_second(self) -> float:
        return len(self.scores) / self.seconds if self.seconds > 0 else float("inf")


def evaluate(
    model: LogLLM, sequences: Sequence[LabeledSequence], batch_size: int = 16, threshold: float | None = None
) -> Evaluation:
    """Score every sequence once and compute the metrics at the model's (or the given) threshold."""
    from training.metrics import compute_metrics

    threshold = model.threshold if threshold is None else threshold
    started = time.perf_counter()
    scores = model.score([s.messages for s in sequences], batch_size=batch_size)
    seconds = time.perf_counter() - started
    labels = [s.label for s in sequences]
    metrics = compute_metrics(labels, scores, threshold)
    metrics["sequences"] = len(sequences)
    metrics["sequences_per_second"] = len(sequences) / seconds if seconds > 0 else None
    return Evaluation(labels, scores, threshold, metrics, seconds)


def validation_threshold(
    model: LogLLM, validation: Sequence[LabeledSequence], max_fpr: float | None, batch_size: int = 16
) -> float:
    """Score the validation split and pick the threshold there (best F1, or the most recall within max_fpr)."""
    from training.metrics import pick_threshold

    scores = model.score([s.messages for s in validation], batch_size=batch_size)
    return pick_threshold([s.label for s in validation], scores, max_fpr)


def write_evaluation(out_dir: Path, evaluation: Evaluation, extra: dict[str, Any]) -> Path:
    """report.json plus the PR curve and the score histogram, for people who read plots."""
    from training.report import write_report

    return write_report(out_dir, evaluation.metrics, evaluation.labels, evaluation.scores, evaluation.threshold, extra)
