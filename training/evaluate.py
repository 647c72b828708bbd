"""Score a labeled split with a model and turn the scores into metrics, timing and a report."""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from model.logllm import LogLLM
from model.vocab import (
    KNOWN_ANOMALOUS,
    MISSING_STEP,
    NOVEL,
    NOVEL_COUNT,
    NOVEL_TRANSITION,
    Novelty,
    NoveltyMode,
    Vocabulary,
    decide,
    templates_only,
    window_novelty,
)
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


def score_distinct(model: LogLLM, sequences: Sequence[Sequence[str]], batch_size: int = 16) -> tuple[list[float], int]:
    """Scores in input order, each distinct message list scored once; and how many were scored.

    A sequence scores the same alone or in any batch (left padding with position ids), and HDFS test splits
    repeat a few shapes thousands of times, so this gives the same figures in a third of the time.
    """
    index: dict[tuple[str, ...], int] = {}
    for messages in sequences:
        index.setdefault(tuple(messages), len(index))
    distinct = model.score([list(m) for m in index], batch_size=batch_size)
    return [distinct[index[tuple(m)]] for m in sequences], len(index)


def evaluate(
    model: LogLLM,
    sequences: Sequence[LabeledSequence],
    batch_size: int = 16,
    threshold: float | None = None,
    *,
    seen: Collection[tuple[str, ...]] | None = None,
    prevalence: float | None = None,
    vocabulary: Vocabulary | None = None,
    novelty: NoveltyMode = "off",
) -> Evaluation:
    """Score every sequence and compute the metrics at the model's (or the given) threshold.

    ``seen`` (the train split's message lists) adds metrics on the unseen test sequences only; ``prevalence``
    adds precision and F1 projected to the data set's real share of anomalies; ``vocabulary`` with a novelty mode
    adds what the novelty rule finds and, with ``flag``, the metrics of the model and the rule together.
    """
    threshold = model.threshold if threshold is None else threshold
    started = time.perf_counter()
    scores, scored = score_distinct(model, [s.messages for s in sequences], batch_size)
    seconds = time.perf_counter() - started
    labels = [s.label for s in sequences]
    metrics = honest_metrics(labels, scores, threshold, prevalence)
    metrics["sequences"] = len(sequences)
    metrics["distinct_scored"] = scored
    metrics["sequences_per_second"] = scored / seconds if seconds > 0 else None
    if seen is not None:
        unseen = [i for i, s in enumerate(sequences) if tuple(s.messages) not in seen]
        metrics["unseen"] = {
            **honest_metrics([labels[i] for i in unseen], [scores[i] for i in unseen], threshold, prevalence),
            "distinct": len({tuple(sequences[i].messages) for i in unseen}),
        }
    if vocabulary is not None and novelty != "off":
        metrics["novelty"] = novelty_metrics(sequences, scores, threshold, vocabulary, novelty, prevalence)
    return Evaluation(labels, scores, threshold, metrics, seconds)


def honest_metrics(
    labels: Sequence[int], scores: Sequence[float], threshold: float, prevalence: float | None
) -> dict[str, Any]:
    """``compute_metrics`` plus, when the prevalence is known, precision and F1 projected to it."""
    from training.metrics import compute_metrics, project_to_prevalence

    metrics: dict[str, Any] = compute_metrics(labels, scores, threshold) if labels else {"n": 0}
    if prevalence is not None and labels:
        metrics["projected"] = project_to_prevalence(metrics["recall"], metrics["fpr"], prevalence)
    return metrics


def _tally(labels: Sequence[int]) -> dict[str, int]:
    return {"windows": len(labels), "anomalous": sum(labels), "normal": len(labels) - sum(labels)}


def novelty_metrics(
    sequences: Sequence[LabeledSequence],
    scores: Sequence[float],
    threshold: float,
    vocabulary: Vocabulary,
    mode: NoveltyMode,
    prevalence: float | None,
) -> dict[str, Any]:
    """How many windows the rule marks, by true class; with ``flag``, the metrics of model and rule together
    (and, when a session rule is on, of model and template rule alone, so the session rules' share shows)."""
    found = [window_novelty(s.messages, vocabulary) for s in sequences]
    labels = [s.label for s in sequences]
    report: dict[str, Any] = {"mode": mode}
    reasons = [NOVEL, KNOWN_ANOMALOUS]
    if vocabulary.transitions is not None:
        reasons.append(NOVEL_TRANSITION)
        report["rare_transition"] = vocabulary.rare_transition
    if vocabulary.counts is not None:
        reasons.append(NOVEL_COUNT)
        report["count_rule"] = vocabulary.count_rule
    if vocabulary.window_max is not None:  # fixed windows' rules (model/window_rules.py)
        reasons.extend([MISSING_STEP, NOVEL_COUNT])
        report["count_slack"] = vocabulary.count_slack
        report["step_support"] = vocabulary.step_support
    for reason in reasons:
        marked = [s.label for s, n in zip(sequences, found, strict=True) if n.reason == reason]
        report[reason] = _tally(marked)
    if vocabulary.shapes is not None:  # sessions the shape rule clears (if nothing else flags them)
        report["shape_rule"] = vocabulary.shape_rule
        cleared = [s.label for s, n in zip(sequences, found, strict=True) if n.normal_shape and n.reason is None]
        report["normal_shape"] = _tally(cleared)
    if mode == "flag":
        report["with_novelty"] = _decided_metrics(labels, scores, threshold, found, prevalence)
        if templates_only(vocabulary) is not vocabulary:
            plain = [replace(n, transitions=(), counts=(), normal_shape=False, missing=()) for n in found]
            report["templates_only"] = _decided_metrics(labels, scores, threshold, plain, prevalence)
    return report


def _decided_metrics(
    labels: Sequence[int],
    scores: Sequence[float],
    threshold: float,
    found: Sequence[Novelty],
    prevalence: float | None,
) -> dict[str, Any]:
    decided = [decide(score, threshold, n, "flag")[0] for score, n in zip(scores, found, strict=True)]
    metrics = honest_metrics(labels, [float(d) for d in decided], 0.5, prevalence)
    for key in ("threshold", "roc_auc", "pr_auc"):  # of 0/1 decisions: no threshold, not a ranking
        metrics.pop(key, None)
    return metrics


def validation_threshold(
    model: LogLLM, validation: Sequence[LabeledSequence], max_fpr: float | None, batch_size: int = 16
) -> tuple[float, list[float]]:
    """Score the validation split and pick the threshold there (best F1, or the most recall within max_fpr);
    also the scores, in split order, for what else is picked on the same split (the vocabulary's path rule)."""
    from training.metrics import pick_threshold

    scores, _ = score_distinct(model, [s.messages for s in validation], batch_size)
    return pick_threshold([s.label for s in validation], scores, max_fpr), scores


def write_evaluation(out_dir: Path, evaluation: Evaluation, extra: dict[str, Any], checkpoint: Path) -> Path:
    """report.json plus the PR curve, the score histogram and the checkpoint's training curves, for people who
    read plots."""
    from training.report import write_report
    from training.trainer import read_progress

    progress = read_progress(checkpoint)
    return write_report(
        out_dir,
        evaluation.metrics,
        evaluation.labels,
        evaluation.scores,
        evaluation.threshold,
        extra,
        curves=progress["curves"],
        batch_size=int(progress.get("batch_size", 1)),
    )
