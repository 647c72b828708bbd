"""Seeded, stratified splits: the same seed gives the same split anywhere; both classes land on both sides."""

from __future__ import annotations

import random
from collections.abc import Sequence

from training.data_common import LabeledSequence


def stratified_split(
    sequences: Sequence[LabeledSequence], fraction: float, seed: int
) -> tuple[list[LabeledSequence], list[LabeledSequence]]:
    """``(rest, held out)``: ``fraction`` of each class drawn at random; both keep the input order."""
    if not 0 < fraction < 1:
        raise ValueError(f"split fraction must lie strictly between 0 and 1, got {fraction}")
    rng = random.Random(seed)
    held: set[int] = set()
    for label in sorted({s.label for s in sequences}):
        indices = [i for i, s in enumerate(sequences) if s.label == label]
        rng.shuffle(indices)
        held.update(indices[: round(len(indices) * fraction)])
    rest = [s for i, s in enumerate(sequences) if i not in held]
    return rest, [s for i, s in enumerate(sequences) if i in held]


def split_validation(
    train: Sequence[LabeledSequence], fraction: float = 0.1, seed: int = 42
) -> tuple[list[LabeledSequence], list[LabeledSequence]]:
    """``(train, validation)`` carved out of train, for model selection (the test split never selects)."""
    return stratified_split(train, fraction, seed)
