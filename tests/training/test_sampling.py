"""The beta rule balances whichever class is rarer, deterministically under a seed."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
import torch

from training.sampling import oversample_minority, seed_everything


def _labelled(n_normal: int, n_anomalous: int) -> tuple[list[tuple[int, int]], list[int]]:
    """Items are (index, label) so a copy can be traced to its original."""
    labels = [0] * n_normal + [1] * n_anomalous
    return list(enumerate(labels)), labels


def _share(result: list[tuple[int, int]], label: int) -> float:
    return sum(1 for _, lab in result if lab == label) / len(result)


@pytest.mark.parametrize(("n_normal", "n_anomalous", "minority"), [(970, 30, 1), (40, 960, 0), (900, 7, 1)])
def test_minority_reaches_beta_in_either_direction(n_normal: int, n_anomalous: int, minority: int) -> None:
    items, labels = _labelled(n_normal, n_anomalous)
    result = oversample_minority(items, labels, beta=0.3, seed=7)
    n_majority = max(n_normal, n_anomalous)
    assert abs(_share(result, minority) - 0.3) <= 1 / (len(result))  # within one item of the exact share
    assert sum(1 for _, lab in result if lab != minority) == n_majority  # the majority is never touched
    assert result[: len(items)] == items  # originals first, in order


def test_share_matches_the_closed_form() -> None:
    items, labels = _labelled(700, 100)
    result = oversample_minority(items, labels, beta=0.3, seed=0)
    assert Counter(lab for _, lab in result) == {0: 700, 1: 300}  # 0.3 * 700 / 0.7 = 300


def test_copies_are_even_the_remainder_drawn_without_replacement() -> None:
    items, labels = _labelled(1000, 10)
    result = oversample_minority(items, labels, beta=0.3, seed=3)
    copies = Counter(index for index, lab in result if lab == 1)
    assert sum(copies.values()) == round(0.3 * 1000 / 0.7)  # 429
    assert set(copies.values()) <= {42, 43}  # 429 = 10 * 42 + 9: nobody gets two extra copies


def test_seed_makes_it_deterministic_and_changes_the_draw() -> None:
    items, labels = _labelled(1000, 7)
    first = oversample_minority(items, labels, beta=0.3, seed=11)
    assert first == oversample_minority(items, labels, beta=0.3, seed=11)
    draws = {tuple(oversample_minority(items, labels, beta=0.3, seed=s)) for s in range(10)}
    assert len(draws) > 1


def test_balanced_enough_input_is_unchanged() -> None:
    items, labels = _labelled(60, 40)
    assert oversample_minority(items, labels, beta=0.3, seed=1) == items
    items, labels = _labelled(70, 30)  # exactly beta
    assert oversample_minority(items, labels, beta=0.3, seed=1) == items


@pytest.mark.parametrize("labels", [[0, 0, 0], [1, 1], []])
def test_single_class_is_returned_unchanged_with_a_warning(labels: list[int]) -> None:
    items = [f"seq{i}" for i in range(len(labels))]
    with pytest.warns(UserWarning, match="nothing to balance"):
        assert oversample_minority(items, labels, seed=0) == items


def test_input_is_not_mutated() -> None:
    items, labels = _labelled(90, 2)
    before = list(items)
    oversample_minority(items, labels, seed=0)
    assert items == before


@pytest.mark.parametrize(
    ("items", "labels", "beta", "match"),
    [
        ([1, 2], [0], 0.3, "2 items but 1 labels"),
        ([1, 2], [0, 2], 0.3, "got 2 at index 1"),
        ([1, 2], [0, 1], 1.0, "beta"),
        ([1, 2], [0, 1], 0.0, "beta"),
    ],
)
def test_bad_input_says_what_is_wrong(items: list[int], labels: list[int], beta: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        oversample_minority(items, labels, beta=beta, seed=0)


def test_seed_everything_reseeds_every_generator() -> None:
    def draw() -> tuple[float, float, float]:
        return random.random(), float(np.random.rand()), float(torch.rand(1))

    seed_everything(123)
    first = draw()
    seed_everything(123)
    assert draw() == first
    seed_everything(124)
    assert draw() != first
