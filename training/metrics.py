"""Detection metrics from labels (1 = anomalous) and scores (P(anomalous)), as plain JSON-ready values.

A sequence counts as anomalous when its score is ``>= threshold``. Precision, recall and F1 follow
scikit-learn's ``zero_division=0``; the false-positive rate is ``None`` without normal sequences and the AUCs
are ``None`` unless both classes occur, because a number there would be made up.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

UNDEFINED_THRESHOLD = 0.5
# Share of anomalous sequences in the real data sets (HDFS: 16,838 of 575,061 block sessions; BGL: windows of the
# paper's split). Test splits are far more anomaly-heavy, which flatters precision; see project_to_prevalence.
PREVALENCE: dict[str, float] = {"hdfs-sessions": 0.0293, "hdfs": 0.0293, "bgl": 0.0867}


@dataclass(frozen=True)
class Confusion:
    """Counts at one threshold; the other metrics are ratios of these."""

    tn: int
    fp: int
    fn: int
    tp: int


def as_arrays(labels: ArrayLike, scores: ArrayLike) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Validate once here so every metric fails with the same clear message instead of deep in sklearn."""
    y = np.asarray(labels).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"metrics: {y.size} labels but {s.size} scores")
    bad = np.flatnonzero((y != 0) & (y != 1))
    if bad.size:
        raise ValueError(f"metrics: labels must be 0 or 1, got {y[bad[0]].item()!r} at index {bad[0]}")
    bad = np.flatnonzero(~np.isfinite(s))
    if bad.size:
        raise ValueError(f"metrics: scores must be finite, got {s[bad[0]].item()!r} at index {bad[0]}")
    return y.astype(np.int64), s


def confusion(labels: ArrayLike, scores: ArrayLike, threshold: float) -> Confusion:
    """Counts of the decision ``score >= threshold``, the rule the model and the service apply."""
    y, s = as_arrays(labels, scores)
    pred = s >= threshold
    truth = y == 1
    return Confusion(
        tn=int(np.sum(~pred & ~truth)),
        fp=int(np.sum(pred & ~truth)),
        fn=int(np.sum(~pred & truth)),
        tp=int(np.sum(pred & truth)),
    )


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def compute_metrics(labels: ArrayLike, scores: ArrayLike, threshold: float = 0.5) -> dict[str, Any]:
    """Everything the report and the multi-seed summary need, at one operating point."""
    y, s = as_arrays(labels, scores)
    c = confusion(y, s, threshold)
    precision = _ratio(c.tp, c.tp + c.fp)
    recall = _ratio(c.tp, c.tp + c.fn)
    both_classes = 0 < int(y.sum()) < y.size
    return {
        "threshold": float(threshold),
        "n": int(y.size),
        "positives": int(y.sum()),
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn),
        "fpr": c.fp / (c.fp + c.tn) if c.fp + c.tn else None,
        "roc_auc": float(roc_auc_score(y, s)) if both_classes else None,
        "pr_auc": float(average_precision_score(y, s)) if both_classes else None,
        **asdict(c),
    }


def project_to_prevalence(recall: float, fpr: float | None, prevalence: float) -> dict[str, Any]:
    """Precision and F1 the same recall and FPR would give at the data set's real share of anomalies.

    precision = recall·p / (recall·p + FPR·(1−p)): a test split that is 78% anomalous hides false alarms that
    dominate at 3%, and those are what operators feel. ``None`` where the FPR is undefined (no normal sequence).
    """
    if not 0 < prevalence < 1:
        raise ValueError(f"prevalence must lie strictly between 0 and 1, got {prevalence}")
    if fpr is None:
        return {"prevalence": prevalence, "precision": None, "f1": None}
    flagged = recall * prevalence + fpr * (1 - prevalence)
    precision = recall * prevalence / flagged if flagged else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"prevalence": prevalence, "precision": precision, "f1": f1}


def best_f1_threshold(labels: ArrayLike, scores: ArrayLike) -> float:
    """The threshold that maximises F1 on the validation split (never the test split).

    Ties go to the highest threshold (fewest false alarms). The returned value lies halfway between the lowest
    score flagged and the highest score not flagged (or 0, when every score is flagged), so the boundary is not
    glued to a single validation sample: a test window equal to that sample must not flip on the ~1e-7 a merged
    adapter moves its score. Without both classes F1 says nothing about the boundary: 0.5 is returned, with a
    warning.
    """
    y, s = as_arrays(labels, scores)
    if not 0 < int(y.sum()) < y.size:
        warnings.warn(
            f"best_f1_threshold: {y.size} labels with {int(y.sum())} anomalous; F1 cannot pick a threshold, "
            f"using {UNDEFINED_THRESHOLD}",
            stacklevel=2,
        )
        return UNDEFINED_THRESHOLD
    precision, recall, thresholds = precision_recall_curve(y, s)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    best = np.flatnonzero(f1 >= f1.max() - 1e-12)
    chosen = float(thresholds[best].max())
    below = s[s < chosen]
    midpoint = (chosen + (float(below.max()) if below.size else 0.0)) / 2
    if not below.size:
        return midpoint if midpoint < chosen else chosen  # chosen is 0.0: nothing lies below
    return midpoint if midpoint > below.max() else chosen  # adjacent floats: the midpoint rounds down


def fpr_bounded_threshold(labels: ArrayLike, scores: ArrayLike, max_fpr: float) -> float:
    """The lowest threshold whose false-positive rate on the validation split is at most ``max_fpr``.

    That is the most recall an alert budget allows: operators who page on every anomalous window care more
    about false alarms than F1 does on anomaly-heavy data. Like ``best_f1_threshold`` the value lies halfway to
    the next score up. Without normal sequences there is no FPR to bound: 0.5 is returned, with a warning.
    """
    y, s = as_arrays(labels, scores)
    normal = np.sort(s[y == 0])[::-1]
    if not normal.size:
        warnings.warn(
            f"fpr_bounded_threshold: no normal sequence among {y.size}; using {UNDEFINED_THRESHOLD}", stacklevel=2
        )
        return UNDEFINED_THRESHOLD
    allowed = int(np.floor(max_fpr * normal.size + 1e-9))
    if allowed >= normal.size:
        return float(s.min())  # the budget covers every normal sequence: flag everything
    boundary = float(normal[allowed])  # the highest normal score that must stay below the threshold
    above = s[s > boundary]
    if not above.size:  # nothing scores higher: nothing is flagged, halfway to the top of the score range
        return max((boundary + 1.0) / 2, float(np.nextafter(boundary, np.inf)))
    midpoint = (boundary + float(above.min())) / 2
    return midpoint if midpoint > boundary else float(above.min())


def pick_threshold(labels: ArrayLike, scores: ArrayLike, max_fpr: float | None) -> float:
    """The validation rule: best F1, or the most recall within an FPR budget when one is given."""
    return best_f1_threshold(labels, scores) if max_fpr is None else fpr_bounded_threshold(labels, scores, max_fpr)


def summarize_runs(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float | int | None]]:
    """Mean, sample std, min, max and n per numeric metric over seeds: one run's F1 is not a result.

    Non-numeric entries (dataset names) and ``None`` values (undefined AUCs) are left out of the statistics;
    ``n`` says how many runs each metric rests on, and ``std`` is ``None`` when fewer than two do.
    """
    names: dict[str, None] = {}
    for run in runs:
        names.update(dict.fromkeys(k for k, v in run.items() if _numeric(v)))
    summary: dict[str, dict[str, float | int | None]] = {}
    for name in names:
        values = [float(run[name]) for run in runs if _numeric(run.get(name))]
        summary[name] = {
            "mean": float(np.mean(values)),
            "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
            "min": min(values),
            "max": max(values),
            "n": len(values),
        }
    return summary


def _numeric(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return False
    return math.isfinite(float(value))
