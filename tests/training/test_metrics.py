"""Metrics against hand-computed values on arrays small enough to check on paper."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from training.metrics import (
    best_f1_threshold,
    compute_metrics,
    confusion,
    fpr_bounded_threshold,
    pick_threshold,
    summarize_runs,
)

LABELS = [0, 0, 0, 0, 1, 1, 1, 0]
SCORES = [0.1, 0.2, 0.7, 0.3, 0.8, 0.4, 0.9, 0.05]


def test_confusion_and_ratios_by_hand() -> None:
    # threshold 0.5 flags 0.7 (normal), 0.8 and 0.9 (anomalous); misses 0.4 (anomalous)
    assert confusion(LABELS, SCORES, 0.5).__dict__ == {"tn": 4, "fp": 1, "fn": 1, "tp": 2}
    m = compute_metrics(LABELS, SCORES, 0.5)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["fpr"] == pytest.approx(1 / 5)
    assert (m["tn"], m["fp"], m["fn"], m["tp"]) == (4, 1, 1, 2)
    assert (m["n"], m["positives"], m["threshold"]) == (8, 3, 0.5)


def test_aucs_by_hand() -> None:
    m = compute_metrics(LABELS, SCORES, 0.5)
    # (anomalous, normal) pairs ranked right: 0.8 and 0.9 beat all 5; 0.4 beats 0.1, 0.2, 0.3, 0.05 -> 14/15
    assert m["roc_auc"] == pytest.approx(14 / 15)
    # ranked: 0.9(+) 0.8(+) 0.7(-) 0.4(+): AP = (1 + 1 + 3/4) / 3
    assert m["pr_auc"] == pytest.approx((1 + 1 + 0.75) / 3)


def test_score_equal_to_threshold_counts_as_anomalous() -> None:
    assert confusion([1, 0], [0.5, 0.49], 0.5).tp == 1


def test_everything_is_plain_json() -> None:
    m = compute_metrics(np.array(LABELS), np.array(SCORES, dtype=np.float32), np.float64(0.5))
    assert json.loads(json.dumps(m)) == m
    assert all(type(v) in (int, float) for v in m.values())


@pytest.mark.parametrize("labels", [[0, 0, 0], [1, 1, 1]])
def test_single_class_gives_none_not_a_crash(labels: list[int]) -> None:
    m = compute_metrics(labels, [0.2, 0.6, 0.9], 0.5)
    assert m["roc_auc"] is None and m["pr_auc"] is None
    if labels[0] == 1:
        assert m["fpr"] is None and m["recall"] == pytest.approx(2 / 3)
    else:
        assert m["fpr"] == pytest.approx(2 / 3) and m["f1"] == 0.0


def test_no_flags_gives_zero_precision() -> None:
    m = compute_metrics([0, 1], [0.1, 0.2], 0.9)
    assert (m["precision"], m["recall"], m["f1"]) == (0.0, 0.0, 0.0)


def test_best_threshold_maximises_f1_and_sits_between_scores() -> None:
    t = best_f1_threshold(LABELS, SCORES)
    # flagging {0.9, 0.8, 0.7, 0.4} gives F1 = 6/7, the best; the boundary lies between 0.3 and 0.4
    assert t == pytest.approx(0.35)
    assert compute_metrics(LABELS, SCORES, t)["f1"] == pytest.approx(6 / 7)
    f1s = [compute_metrics(LABELS, SCORES, c)["f1"] for c in np.linspace(0, 1, 201)]
    assert compute_metrics(LABELS, SCORES, t)["f1"] >= max(f1s) - 1e-12


def test_ties_go_to_the_higher_threshold() -> None:
    labels = [1, 0, 1, 0]
    scores = [0.9, 0.6, 0.5, 0.1]
    # candidates: >=0.9 F1 2/3; >=0.6 F1 1/2; >=0.5 F1 0.8; >=0.1 F1 2/3 -> unique best 0.5, midpoint with 0.1
    assert best_f1_threshold(labels, scores) == pytest.approx(0.3)
    tied_labels = [1, 0, 0, 1]
    tied_scores = [0.9, 0.8, 0.7, 0.1]
    # >=0.9: F1 2/3; >=0.8: 1/2; >=0.7: 2/5; >=0.1: 2/3 -> tie, the higher (0.9) wins, midpoint with 0.8
    assert best_f1_threshold(tied_labels, tied_scores) == pytest.approx(0.85)


def test_best_threshold_flagging_every_score_lies_halfway_to_zero() -> None:
    # glued to 0.2, a window equal to the validation one would flip on the ~1e-7 a merged adapter moves its score
    t = best_f1_threshold([1, 1, 0], [0.9, 0.2, 0.2])
    assert t == pytest.approx(0.1) and t <= 0.2 - 1e-7


def test_fpr_bounded_threshold_flagging_nothing_lies_halfway_to_one() -> None:
    t = fpr_bounded_threshold([0, 0, 1], [0.9, 0.4, 0.2], 0.0)
    assert t == pytest.approx(0.95) and t > 0.9 + 1e-7


def test_best_threshold_on_separable_scores_lies_in_the_gap() -> None:
    t = best_f1_threshold([0, 0, 1, 1], [1e-6, 2e-6, 0.999, 0.9999])
    assert 2e-6 < t < 0.999
    assert compute_metrics([0, 0, 1, 1], [1e-6, 2e-6, 0.999, 0.9999], t)["f1"] == 1.0


def test_fpr_budget_gives_the_most_recall_it_allows() -> None:
    labels = [0] * 10 + [1] * 5
    scores = [0.05 * i for i in range(10)] + [0.42, 0.3, 0.95, 0.9, 0.15]  # normals 0.0 .. 0.45
    # no false alarm: only above 0.45, so 0.9 and 0.95 -> between 0.45 and 0.9
    strict = fpr_bounded_threshold(labels, scores, 0.0)
    assert strict == pytest.approx(0.675)
    assert compute_metrics(labels, scores, strict)["fp"] == 0
    # 10% of 10 normals = 1 false alarm: the threshold may drop below 0.45 but not to 0.40
    one = fpr_bounded_threshold(labels, scores, 0.1)
    assert 0.40 < one <= 0.42
    assert (compute_metrics(labels, scores, one)["fp"], compute_metrics(labels, scores, one)["tp"]) == (1, 3)
    for budget in (0.0, 0.1, 0.25, 0.5):  # the lowest threshold within budget: one step lower breaks it
        t = fpr_bounded_threshold(labels, scores, budget)
        assert compute_metrics(labels, scores, t)["fpr"] <= budget
        lower = max(x for x in scores if x < t)
        assert compute_metrics(labels, scores, lower)["fpr"] > budget or lower == min(scores)
    assert fpr_bounded_threshold(labels, scores, 1.0) == 0.0  # every normal may be flagged: flag all


def test_fpr_budget_without_higher_scores_flags_nothing_and_without_normals_warns() -> None:
    t = fpr_bounded_threshold([1, 0], [0.2, 0.9], 0.0)
    assert t > 0.9 and compute_metrics([1, 0], [0.2, 0.9], t)["fp"] == 0
    with pytest.warns(UserWarning, match="no normal sequence"):
        assert fpr_bounded_threshold([1, 1], [0.2, 0.9], 0.01) == 0.5


def test_pick_threshold_uses_f1_unless_a_budget_is_given() -> None:
    assert pick_threshold(LABELS, SCORES, None) == pytest.approx(0.35)  # best F1 flags a normal at 0.7
    assert pick_threshold(LABELS, SCORES, 0.0) == pytest.approx(0.75)  # no false alarm: above that normal


@pytest.mark.parametrize("labels", [[0, 0, 0], [1, 1, 1], []])
def test_best_threshold_undefined_is_half_with_a_warning(labels: list[int]) -> None:
    with pytest.warns(UserWarning, match="cannot pick a threshold"):
        assert best_f1_threshold(labels, [0.3, 0.6, 0.9][: len(labels)]) == 0.5


@pytest.mark.parametrize(
    ("labels", "scores", "match"),
    [
        ([0, 1], [0.5], "2 labels but 1 scores"),
        ([0, 2], [0.1, 0.2], "got 2 at index 1"),
        ([0, 1], [0.1, float("nan")], "got nan at index 1"),
    ],
)
def test_bad_input_says_what_is_wrong(labels: list[int], scores: list[float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        compute_metrics(labels, scores)


def test_summarize_runs_mean_std_n() -> None:
    runs: list[dict[str, Any]] = [
        {"f1": 0.9, "roc_auc": 0.95, "dataset": "bgl", "tp": 9},
        {"f1": 0.8, "roc_auc": None, "dataset": "bgl", "tp": 8},
        {"f1": 0.7, "roc_auc": 0.85, "dataset": "bgl", "tp": 7},
    ]
    summary = summarize_runs(runs)
    assert set(summary) == {"f1", "roc_auc", "tp"}  # strings are not averaged
    assert summary["f1"]["mean"] == pytest.approx(0.8)
    assert summary["f1"]["std"] == pytest.approx(0.1)  # sample std of 0.9, 0.8, 0.7
    assert (summary["f1"]["min"], summary["f1"]["max"], summary["f1"]["n"]) == (0.7, 0.9, 3)
    assert summary["roc_auc"]["n"] == 2 and summary["roc_auc"]["mean"] == pytest.approx(0.9)
    assert json.loads(json.dumps(summary)) == summary


def test_summarize_one_run_has_no_spread() -> None:
    assert summarize_runs([{"f1": 0.5}]) == {"f1": {"mean": 0.5, "std": None, "min": 0.5, "max": 0.5, "n": 1}}
    no_runs: list[dict[str, float]] = []
    assert summarize_runs(no_runs) == {}


def test_summarize_real_metric_dicts() -> None:
    runs = [compute_metrics(LABELS, np.clip(np.array(SCORES) + d, 0, 1), 0.5) for d in (-0.1, 0.0, 0.1)]
    summary = summarize_runs(runs)
    assert summary["f1"]["n"] == 3
    assert summary["f1"]["mean"] == pytest.approx(np.mean([r["f1"] for r in runs]))


def test_projection_to_real_prevalence_by_hand() -> None:
    from training.metrics import project_to_prevalence

    # recall 0.9, FPR 0.01 at 3% anomalies: 0.027 true alarms against 0.0097 false ones
    projected = project_to_prevalence(0.9, 0.01, 0.03)
    assert projected["precision"] == pytest.approx(0.027 / (0.027 + 0.0097))
    p = projected["precision"]
    assert projected["f1"] == pytest.approx(2 * p * 0.9 / (p + 0.9))
    assert project_to_prevalence(0.9, 0.0, 0.03)["precision"] == 1.0  # no false alarm: nothing to dilute
    assert project_to_prevalence(0.0, 0.0, 0.03) == {"prevalence": 0.03, "precision": 0.0, "f1": 0.0}
    assert project_to_prevalence(0.9, None, 0.03)["f1"] is None  # no normal sequence: no FPR to project
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        project_to_prevalence(0.9, 0.01, 1.0)


def test_issue_reference_projection() -> None:
    """Issue 16's figure: FPR 0.018 with recall ~0.99 at HDFS's 2.93% gives precision ~0.62."""
    from training.metrics import PREVALENCE, project_to_prevalence

    assert project_to_prevalence(0.99, 0.018, PREVALENCE["hdfs-sessions"])["precision"] == pytest.approx(0.62, abs=0.01)
