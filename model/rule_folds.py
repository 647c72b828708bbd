"""The normal windows a rule's strictness is picked on, within a false-alarm budget (session and window rules alike).

A rule learned from some normal windows is checked on normal windows it did not learn from: each of ``FOLDS``
folds of the training windows against a rule learned from the other folds, and the held-out windows against a
rule learned from all training windows. The model's own flags on held-out windows count as false alarms already
(the budget is for the model and the rules together). No anomaly is given to the pick.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import TypeVar

Window = TypeVar("Window")
FOLDS = 5  # cross-validation folds over the normal training windows


def folds(train_normal: Sequence[Window], seed: int) -> list[tuple[list[Window], list[Window]]]:
    """``(learned from, checked)`` for each fold of ``train_normal`` (shuffled by ``seed``); none when there are
    fewer windows than folds."""
    order = list(range(len(train_normal)))
    random.Random(seed).shuffle(order)
    out = []
    for fold in range(FOLDS if len(train_normal) >= FOLDS else 0):
        held = set(order[fold::FOLDS])
        out.append(([w for i, w in enumerate(train_normal) if i not in held], [train_normal[i] for i in held]))
    return out


def not_flagged_by_model(
    held_out_normal: Sequence[Window], flagged_by_model: Sequence[bool] | None
) -> tuple[list[Window], int]:
    """The held-out normal windows the model does not flag (the ones a rule can still cost), and how many it flags."""
    model = list(flagged_by_model) if flagged_by_model is not None else [False] * len(held_out_normal)
    return [w for w, by_model in zip(held_out_normal, model, strict=True) if not by_model], sum(model)


def allowed_false_alarms(max_fpr: float, windows: int) -> int:
    """False alarms ``max_fpr`` allows on ``windows`` normal windows (rounded down)."""
    return math.floor(max_fpr * windows + 1e-9)
