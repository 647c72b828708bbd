"""An evaluation written for people: report.json, a PR curve with the operating point, a score histogram and,
for a checkpoint whose training kept them, the loss curves of its stages.

Figures are drawn on matplotlib's object API with the Agg canvas, so no pyplot state or display is touched and
reports can be written from any thread or a headless container.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from sklearn.metrics import average_precision_score, precision_recall_curve

from training.metrics import as_arrays, compute_metrics

PLOTS = {"pr_curve": "pr_curve.png", "score_histogram": "score_histogram.png"}
CURVE_PLOT = {"training_curve": "training_curve.png"}


def write_report(
    out_dir: Path | str,
    metrics: Mapping[str, Any],
    labels: ArrayLike,
    scores: ArrayLike,
    threshold: float,
    extra: Mapping[str, Any] | None = None,
    curves: Mapping[str, Sequence[float]] | None = None,
    batch_size: int = 1,
) -> Path:
    """Write ``report.json`` and the plots into ``out_dir``; returns the JSON's path.

    ``curves`` (stage name -> loss of each optimizer step, in training order; ``batch_size`` sequences a step) adds
    the training-curve plot, so a report shows whether a stage converged or only ran out of samples.
    """
    y, s = as_arrays(labels, scores)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = dict(PLOTS)
    _save(_pr_figure(y, s, threshold), out / PLOTS["pr_curve"])
    _save(_histogram_figure(y, s, threshold), out / PLOTS["score_histogram"])
    if curves and any(curves.values()):
        _save(_curve_figure(curves, batch_size), out / CURVE_PLOT["training_curve"])
        plots.update(CURVE_PLOT)
    report = {
        "metrics": metrics,
        "threshold": threshold,
        "extra": extra or {},
        "plots": plots,
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path = out / "report.json"
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(to_jsonable(report), indent=2, allow_nan=False) + "\n")
    partial.replace(path)  # a reader never sees half a report
    return path


def to_jsonable(value: Any) -> Any:
    """NumPy scalars and arrays, paths, dataclasses and NaN made valid JSON (NaN and inf become null)."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if isinstance(value, list | tuple | np.ndarray):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def format_table(metrics: Mapping[str, Any]) -> str:
    """Two aligned columns for the terminal; summaries from ``summarize_runs`` print as mean ± std (n)."""
    width = max((len(str(k)) for k in metrics), default=0)
    return "\n".join(f"{str(name):<{width}}  {_cell(value)}" for name, value in metrics.items())


def _cell(value: Any) -> str:
    if isinstance(value, Mapping) and "mean" in value:
        std = value.get("std")
        spread = f" ± {_cell(std)}" if std is not None else ""
        return f"{_cell(value['mean'])}{spread} (n={value.get('n', '?')})"
    if value is None:
        return "n/a"
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)
    figure.savefig(path, format="png", dpi=110)


def _pr_figure(y: np.ndarray, s: np.ndarray, threshold: float) -> Figure:
    figure = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = figure.add_subplot()
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02))
    if not 0 < int(y.sum()) < y.size:
        ax.set_title("precision-recall curve")
        note = f"undefined: {y.size} sequences, {int(y.sum())} anomalous"
        ax.text(0.5, 0.5, note, ha="center", va="center")
        return figure
    precision, recall, _ = precision_recall_curve(y, s)
    ax.step(recall, precision, where="post", label="model")
    ax.axhline(float(y.mean()), color="grey", linestyle=":", label=f"chance ({y.mean():.3f})")
    point = compute_metrics(y, s, threshold)
    ax.plot(
        point["recall"],
        point["precision"],
        "o",
        color="red",
        markersize=8,
        label=f"threshold {threshold:.3g}: F1 {point['f1']:.3f}",
    )
    ax.set_title(f"precision-recall curve (AP {average_precision_score(y, s):.3f})")
    ax.legend(loc="lower left")
    return figure


def _histogram_figure(y: np.ndarray, s: np.ndarray, threshold: float) -> Figure:
    figure = Figure(figsize=(6, 4), layout="constrained")
    ax = figure.add_subplot()
    low = min(0.0, float(s.min())) if s.size else 0.0
    high = max(1.0, float(s.max())) if s.size else 1.0
    bins = np.linspace(low, high, 51).tolist()
    for label, name, color in ((0, "normal", "tab:blue"), (1, "anomalous", "tab:orange")):
        ax.hist(s[y == label], bins=bins, alpha=0.6, color=color, label=f"{name} ({int(np.sum(y == label))})")
    ax.axvline(threshold, color="red", linestyle="--", label=f"threshold {threshold:.3g}")
    if s.size:
        ax.set_yscale("log")  # normal sequences outnumber anomalies by orders of magnitude
    ax.set(xlabel="score = P(anomalous)", ylabel="sequences", title="scores by true class")
    ax.legend(loc="upper right")
    return figure


def _curve_figure(curves: Mapping[str, Sequence[float]], batch_size: int) -> Figure:
    """Each stage's step losses (faint) and their moving average, laid end to end over the sequences trained on."""
    figure = Figure(figsize=(7, 4), layout="constrained")
    ax = figure.add_subplot()
    start = 0
    for index, (stage, losses) in enumerate(curves.items()):
        if not losses:
            continue
        steps = np.asarray(losses, dtype=float)
        x = (start + np.arange(1, steps.size + 1)) * batch_size
        color = f"C{index}"
        ax.plot(x, steps, color=color, alpha=0.25, linewidth=0.8)
        width = max(1, steps.size // 20)
        smooth = np.convolve(steps, np.ones(width) / width, mode="valid")
        ax.plot(x[width - 1 :], smooth, color=color, linewidth=2, label=f"{stage} ({steps.size} steps)")
        if start:
            ax.axvline(start * batch_size, color="grey", linestyle=":", linewidth=0.8)
        start += steps.size
    ax.set(xlabel="sequences trained on", ylabel="loss (faint: each step; bold: moving average)", ylim=(0, None))
    ax.set_title("training loss by stage")
    ax.legend(loc="upper right")
    return figure
