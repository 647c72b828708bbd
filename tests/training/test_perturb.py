"""Synthetic anomalies: every perturbation changes the window, is seeded, and uses only the allowed messages."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from model.preprocess import preprocess
from training.data import LabeledSequence
from training.perturb import (
    DEFAULT_PERTURBATIONS,
    PERTURBATIONS,
    check_names,
    cut_end,
    drop_terminal,
    fit_length,
    perturb,
    synthesize_anomalies,
    wrong_count,
)
from training.settings import TrainSettings

WINDOW = ["open block", "receive block", "receive block", "write block", "close block"]
DONORS = ["disk failure", "kernel panic", "open block"]


@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_each_perturbation_changes_the_window_and_keeps_to_the_pools(name: str) -> None:
    for seed in range(50):
        out = PERTURBATIONS[name](WINDOW, random.Random(seed), DONORS)
        assert out != WINDOW, (name, seed)
        assert set(out) <= set(WINDOW) | set(DONORS)
        allowed = set(WINDOW) if name not in ("insert", "interrupt") else set(WINDOW) | set(DONORS)
        assert set(out) <= allowed


@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_each_perturbation_is_deterministic_for_a_seed(name: str) -> None:
    runs = [[PERTURBATIONS[name](WINDOW, random.Random(s), DONORS) for s in range(20)] for _ in range(2)]
    assert runs[0] == runs[1]
    assert len({tuple(w) for w in runs[0]}) > 1 or name == "drop-terminal"  # the seed matters where there is a choice


def test_the_shapes_match_the_failures_they_mimic() -> None:
    assert drop_terminal(WINDOW, random.Random(0), DONORS) == WINDOW[:-1]
    for seed in range(30):
        cut = cut_end(WINDOW, random.Random(seed), DONORS)
        assert 1 <= len(cut) < len(WINDOW) and cut == WINDOW[: len(cut)]
        longer = wrong_count(WINDOW, random.Random(seed), DONORS)
        assert len(longer) > len(WINDOW) and set(longer) == set(WINDOW)


def test_perturb_tries_another_when_one_cannot_change_the_window() -> None:
    # a single repeated message: swap finds no pair, drop and cut have nothing to remove; duplicate still works
    for seed in range(20):
        made = perturb(["tick"], random.Random(seed), ["swap", "drop", "cut-end", "duplicate"], DONORS)
        assert made == ("duplicate", ["tick", "tick"])
    assert perturb(["tick"], random.Random(0), ["swap", "drop"], DONORS) is None


def test_perturb_never_returns_a_real_normal_window_and_respects_max_messages() -> None:
    normals = {tuple(WINDOW[:-1])}
    names = ["drop-terminal", "cut-end"]
    made = [perturb(WINDOW, random.Random(s), names, DONORS, forbidden=normals) for s in range(30)]
    assert all(m is None or tuple(m[1]) not in normals for m in made)
    assert sum(m is not None and m[0] == "cut-end" for m in made) > 25  # drop-terminal can only give the normal
    # appending beyond max_messages is invisible to the model: not a change
    assert perturb(WINDOW, random.Random(0), ["interrupt"], DONORS, max_messages=2) is not None
    assert perturb(WINDOW[:2], random.Random(0), ["drop-terminal"], DONORS, max_messages=1) is None


def test_synthesize_anomalies_is_seeded_and_draws_donors_from_other_windows_and_extra_messages() -> None:
    normals = [LabeledSequence(f"s{i}", [f"step {j}" for j in range(i % 4 + 2)], 0) for i in range(40)]
    normals.append(LabeledSequence("other", ["gc pause", "step 0"], 0))
    first, counts = synthesize_anomalies(normals, DEFAULT_PERTURBATIONS, seed=3, extra_messages=["bgl: node down"])
    again, _ = synthesize_anomalies(normals, DEFAULT_PERTURBATIONS, seed=3, extra_messages=["bgl: node down"])
    other, _ = synthesize_anomalies(normals, DEFAULT_PERTURBATIONS, seed=4, extra_messages=["bgl: node down"])
    assert [s.messages for s in first] == [s.messages for s in again] != [s.messages for s in other]
    assert all(s.label == 1 for s in first) and len(first) + counts["unchanged"] == len(normals)
    assert sum(v for k, v in counts.items() if k != "unchanged") == len(first)
    real = {tuple(s.messages) for s in normals}
    assert not any(tuple(s.messages) in real for s in first)
    pool = {m for s in normals for m in s.messages} | {"bgl: node down"}
    assert all(set(s.messages) <= pool for s in first)


def test_fit_length_cuts_the_end_or_fills_from_the_lines_that_follow() -> None:
    assert fit_length(["a", "b", "c", "x"], 3, ["n1", "n2"]) == ["a", "b", "c"]
    assert fit_length(["a"], 3, ["n1", "n2", "n3"]) == ["a", "n1", "n2"]
    assert fit_length(["a"], 3, []) == ["a"]  # nothing follows: as long as it can be


def test_fixed_windows_get_copies_of_their_own_length() -> None:
    """A fixed window of a real log always holds window_size lines: a copy that did not would teach the model to
    flag a length, which never varies in service, instead of the fault."""
    windows = [LabeledSequence(f"w{i}", [f"step {i} {k}" for k in range(6)], 0) for i in range(40)]
    made, counts = synthesize_anomalies(windows, DEFAULT_PERTURBATIONS, seed=3, fixed_length=True)
    assert len(made) == 40 and counts["unchanged"] == 0
    assert all(len(m.messages) == 6 for m in made)
    follows = {f"w{i}": windows[(i + 1) % 40].messages for i in range(40)}
    filled = [m for m in made if m.sequence_id.split("~")[1] in ("cut-end", "drop", "drop-terminal")]
    assert filled and all(m.messages[-1] in follows[m.sequence_id.split("~")[0]] for m in filled)
    free, _ = synthesize_anomalies(windows, DEFAULT_PERTURBATIONS, seed=3)
    assert {len(m.messages) for m in free} != {6}  # sessions: lengths vary, as real sessions' do


def test_names_are_checked_and_swap_is_off_by_default() -> None:
    assert "swap" not in DEFAULT_PERTURBATIONS and set(DEFAULT_PERTURBATIONS) < set(PERTURBATIONS)
    assert check_names(["drop", "swap"]) == ["drop", "swap"]
    with pytest.raises(ValueError, match="unknown \\['shuffle'\\]; choose from drop"):
        check_names(["drop", "shuffle"])
    assert TrainSettings(perturbations="drop, insert").perturbation_names == ["drop", "insert"]
    assert TrainSettings(unlabeled=True).max_fpr == 0.01 and TrainSettings().max_fpr is None
    assert TrainSettings(unlabeled=True, max_fpr=0.001).max_fpr == 0.001


def test_foreign_messages_are_read_preprocessed_and_distinct(tmp_path: Path) -> None:
    from training.unlabeled import read_foreign_messages

    path = tmp_path / "other-system.log"
    path.write_text("node 17 down at 10.0.0.5\n\nnode 18 down at 10.0.0.6\nkernel panic\n")
    assert read_foreign_messages(path) == [preprocess("node 17 down at 10.0.0.5"), "kernel panic"]
