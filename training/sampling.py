"""Minority oversampling (LogLLM's beta rule) and one place that seeds every random number generator.

Anomalies are rare in HDFS and BGL, but in Liberty the *normal* windows are the rare class; the rule therefore
balances whichever class is smaller, never assuming it is the anomalous one.
"""

from __future__ import annotations

import logging
import random
import warnings
from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch

log = logging.getLogger(__name__)

T = TypeVar("T")


def oversample_minority(
    items: Sequence[T], labels: Sequence[int], beta: float = 0.3, *, seed: int
) -> list[T]:
    """Repeat the minority class until it makes up a share ``beta`` of the result, so it is not drowned out.

    Every minority item is copied the same whole number of times; the remainder is drawn without replacement
    (seeded), so no item gets more than one copy beyond the others. A minority that already has a share
    ``>= beta`` is left alone, as is a single-class input (with a warning: there is nothing to balance).
    The result lists the original items in their order, then the extra copies; the trainer shuffles.
    """
    if len(items) != len(labels):
        raise ValueError(f"oversample_minority: {len(items)} items but {len(labels)} labels")
    if not 0.0 < beta < 1.0:
        raise ValueError(f"oversample_minority: beta must lie in (0, 1), got {beta!r}")
    bad = next((i for i, label in enumerate(labels) if label not in (0, 1)), None)
    if bad is not None:
        raise ValueError(f"oversample_minority: labels must be 0 or 1, got {labels[bad]!r} at index {bad}")

    positives = sum(1 for label in labels if label == 1)
    counts = {0: len(labels) - positives, 1: positives}
    if counts[0] == 0 or counts[1] == 0:
        only = "no items" if not labels else f"only label {labels[0]} ({len(labels)} items)"
        warnings.warn(f"oversample_minority: {only}; nothing to balance", stacklevel=2)
        return list(items)

    minority = 1 if counts[1] <= counts[0] else 0
    n_min, n_maj = counts[minority], counts[1 - minority]
    if n_min / (n_min + n_maj) >= beta:
        return list(items)

    target = max(n_min, round(beta * n_maj / (1.0 - beta)))
    pool = [item for item, label in zip(items, labels, strict=True) if label == minority]
    copies, remainder = divmod(target - n_min, n_min)
    extra = pool * copies + random.Random(seed).sample(pool, remainder)
    log.info(
        "oversampled label %d from %d to %d (share %.3f, beta %.3f, seed %d)",
        minority,
        n_min,
        target,
        target / (target + n_maj),
        beta,
        seed,
    )
    return list(items) + extra


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU): the reference code did not, and its F1 wandered."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    log.info("seeded random, numpy and torch with %d", seed)
