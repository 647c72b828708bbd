"""Seeded, stratified splits: the same seed gives the same split anywhere; both classes land on both sides."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Literal

from training.data_common import LabeledSequence

SplitMode = Literal["random", "distinct"]


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


def distinct_split(
    sequences: Sequence[LabeledSequence], fraction: float, seed: int
) -> tuple[list[LabeledSequence], list[LabeledSequence]]:
    """Like ``stratified_split``, but identical message lists always land on the same side.

    HDFS sessions repeat a few hundred shapes thousands of times, so a random split scores mostly sequences the
    model trained on. Here whole groups of identical sequences are drawn (stratified by the group's majority
    label) until at most ``fraction`` of each class's sequences is held out.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"split fraction must lie strictly between 0 and 1, got {fraction}")
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, s in enumerate(sequences):
        groups.setdefault(tuple(s.messages), []).append(i)
    rng = random.Random(seed)
    held: set[int] = set()
    by_label: dict[int, list[list[int]]] = {}
    for members in groups.values():
        labels = [sequences[i].label for i in members]
        by_label.setdefault(max(set(labels), key=labels.count), []).append(members)
    for label in sorted(by_label):
        candidates = by_label[label]
        rng.shuffle(candidates)
        target = round(sum(len(m) for m in candidates) * fraction)
        taken = 0
        for members in candidates:  # groups that would overshoot are passed over, so shares stay near fraction
            if taken + len(members) <= target:
                held.update(members)
                taken += len(members)
        if target and not taken:  # every group is larger than the share: hold out the smallest
            held.update(sorted(candidates, key=len)[0])
    rest = [s for i, s in enumerate(sequences) if i not in held]
    return rest, [s for i, s in enumerate(sequences) if i in held]


def split_sequences(
    sequences: Sequence[LabeledSequence], fraction: float, seed: int, mode: SplitMode = "random"
) -> tuple[list[LabeledSequence], list[LabeledSequence]]:
    """``(rest, held out)`` by the configured rule: ``random`` (the paper's) or ``distinct``."""
    return (distinct_split if mode == "distinct" else stratified_split)(sequences, fraction, seed)


def split_validation(
    train: Sequence[LabeledSequence], fraction: float = 0.1, seed: int = 42, mode: SplitMode = "random"
) -> tuple[list[LabeledSequence], list[LabeledSequence]]:
    """``(train, validation)`` carved out of train, for model selection (the test split never selects)."""
    return split_sequences(train, fraction, seed, mode)


def drop_seen(
    train: Sequence[LabeledSequence], test: Sequence[LabeledSequence]
) -> tuple[list[LabeledSequence], int]:
    """Test sequences whose message list never occurs in train, and how many were dropped.

    For chronological splits, where ``distinct`` cannot move windows across the time boundary.
    """
    seen = {tuple(s.messages) for s in train}
    kept = [s for s in test if tuple(s.messages) not in seen]
    return kept, len(test) - len(kept)
