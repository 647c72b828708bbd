"""The report is valid JSON that round-trips, and the plots are real PNG files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from training.metrics import compute_metrics, summarize_runs
from training.report import format_table, to_jsonable, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 100 and height > 100
    assert data[-8:-4] == b"IEND"


@pytest.fixture
def scored() -> tuple[list[int], list[float]]:
    rng = np.random.default_rng(0)
    labels = [0] * 200 + [1] * 20
    scores = np.concatenate([rng.beta(1, 8, 200), rng.beta(6, 2, 20)])
    return labels, [float(s) for s in scores]


def test_report_json_and_png_plots(tmp_path: Path, scored: tuple[list[int], list[float]]) -> None:
    labels, scores = scored
    metrics = compute_metrics(labels, scores, 0.5)
    metrics["sequences_per_second"] = None
    extra = {"dataset": "bgl", "split": "test", "checkpoint": tmp_path / "ckpt", "seeds": (1, 2)}
    path = write_report(tmp_path / "eval", metrics, labels, scores, 0.5, extra)
    assert path == tmp_path / "eval" / "report.json"
    report = json.loads(path.read_text())
    assert report["metrics"] == metrics
    assert report["threshold"] == 0.5
    assert report["extra"] == {
        "dataset": "bgl",
        "split": "test",
        "checkpoint": str(tmp_path / "ckpt"),
        "seeds": [1, 2],
    }
    for name in report["plots"].values():
        _assert_png(path.parent / name)
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "pr_curve.png",
        "report.json",
        "score_histogram.png",
    ]


def test_training_curves_become_a_plot_named_in_the_report(
    tmp_path: Path, scored: tuple[list[int], list[float]]
) -> None:
    labels, scores = scored
    curves = {"1-decoder": [2.0, 1.5, 1.2, 0.9], "2a-projector": [], "3-all": [0.8, 0.5, 0.4]}
    path = write_report(tmp_path, {"f1": 0.5}, labels, scores, 0.5, {}, curves=curves, batch_size=16)
    report = json.loads(path.read_text())
    assert report["plots"]["training_curve"] == "training_curve.png"
    _assert_png(tmp_path / "training_curve.png")
    plain = write_report(tmp_path / "no-curves", {"f1": 0.5}, labels, scores, 0.5, {}, curves={"1-decoder": []})
    assert "training_curve" not in json.loads(plain.read_text())["plots"]
    assert not (tmp_path / "no-curves" / "training_curve.png").exists()


@pytest.mark.parametrize(("labels", "scores"), [([0, 0, 0], [0.1, 0.2, 0.9]), ([1, 1], [0.7, 0.8]), ([], [])])
def test_degenerate_inputs_still_report(tmp_path: Path, labels: list[int], scores: list[float]) -> None:
    metrics = compute_metrics(labels, scores, 0.5) if labels else {}
    path = write_report(tmp_path, metrics, labels, scores, 0.5, None)
    assert json.loads(path.read_text())["metrics"] == metrics
    _assert_png(tmp_path / "pr_curve.png")
    _assert_png(tmp_path / "score_histogram.png")


def test_rewriting_a_report_replaces_it(tmp_path: Path, scored: tuple[list[int], list[float]]) -> None:
    labels, scores = scored
    write_report(tmp_path, {"f1": 0.1}, labels, scores, 0.5, {})
    path = write_report(tmp_path, {"f1": 0.2}, labels, scores, 0.4, {})
    assert json.loads(path.read_text())["metrics"] == {"f1": 0.2}
    assert not list(tmp_path.glob("*.partial"))


def test_to_jsonable_handles_numpy_and_non_finite() -> None:
    value = {
        "a": np.float32(0.5),
        "b": np.int64(3),
        "c": np.array([1, 2]),
        "d": float("nan"),
        4: float("inf"),
    }
    assert to_jsonable(value) == {"a": 0.5, "b": 3, "c": [1, 2], "d": None, "4": None}
    json.dumps(to_jsonable(value), allow_nan=False)


def test_format_table_aligns_and_formats() -> None:
    table = format_table({"f1": 0.91234, "tp": 12, "roc_auc": None, "dataset": "bgl"})
    assert table.splitlines() == ["f1       0.9123", "tp       12", "roc_auc  n/a", "dataset  bgl"]


def test_format_table_prints_run_summaries() -> None:
    summary = summarize_runs([{"f1": 0.9}, {"f1": 0.8}])
    assert format_table(summary) == "f1  0.8500 ± 0.0707 (n=2)"
    assert format_table(summarize_runs([{"f1": 0.9}])) == "f1  0.9000 (n=1)"
    assert format_table({}) == ""
