"""Training without labels: the splits an ``--unlabeled`` run sees and the anomalous class it trains on.

Every training window counts as normal. Labeled anomalies found in train or validation are not trained on and
do not pick the threshold: they move to the test split, which thus keeps every real anomaly (the LoadReport
counts them). The anomalous class comes from perturbing the normal training windows (training/perturb.py).
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

from model.preprocess import preprocess
from training.data import LabeledSequence
from training.data_common import LoadReport, read_lines
from training.datasets import Splits
from training.perturb import synthesize_anomalies
from training.settings import TrainSettings


def move_anomalies_to_test(splits: Splits) -> Splits:
    """Train and validation keep their normal windows; their labeled anomalies join the test split."""
    moved = [s for s in (*splits.train, *splits.validation) if s.label == 1]
    splits.report.moved_to_test += len(moved)
    return replace(
        splits,
        train=[s for s in splits.train if s.label == 0],
        validation=[s for s in splits.validation if s.label == 0],
        test=[*splits.test, *moved],
    )


def limit_test_anomalies(splits: Splits, limit: int, seed: int) -> Splits:
    """At most ``limit`` real anomalies in the test split (a seeded sample, order kept); normals all stay."""
    anomalous = [i for i, s in enumerate(splits.test) if s.label == 1]
    if len(anomalous) <= limit:
        return splits
    kept = set(random.Random(seed).sample(anomalous, limit))
    splits.report.test_anomalies_left_out += len(anomalous) - limit
    return replace(splits, test=[s for i, s in enumerate(splits.test) if s.label == 0 or i in kept])


def with_synthetic_anomalies(
    normals: list[LabeledSequence], settings: TrainSettings, sessions: bool = True
) -> tuple[list[LabeledSequence], dict[str, Any]]:
    """The normal windows plus one perturbed copy of each (label 1), and what the manifest records of it.

    ``sessions`` False (fixed windows): every copy keeps its window's length (perturb.synthesize_anomalies)."""
    if any(s.label for s in normals):
        raise ValueError("--unlabeled: the training split still holds labeled anomalies; move them to test first")
    foreign = read_foreign_messages(settings.foreign_messages) if settings.foreign_messages else []
    synthetic, counts = synthesize_anomalies(
        normals,
        settings.perturbation_names,
        settings.seed,
        extra_messages=foreign,
        max_messages=settings.max_messages,
        fixed_length=not sessions,
    )
    info = {
        "normal_windows": len(normals),
        "synthetic_anomalies": len(synthetic),
        "perturbation_counts": counts,
        "foreign_messages": len(foreign),
        "fixed_length": not sessions,
    }
    return [*normals, *synthetic], info


def read_foreign_messages(path: Path) -> list[str]:
    """The distinct preprocessed lines of a log file from another source or system, in first-seen order."""
    return list(dict.fromkeys(preprocess(line) for _, line in read_lines(path, LoadReport())))
