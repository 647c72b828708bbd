"""``logllm train`` and ``logllm eval``: the offline half of logllm."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import Field

from model.cli_args import add_settings_arguments, settings_from_args
from training.settings import DataSettings, TrainSettings


class EvalSettings(DataSettings):
    """Which checkpoint is evaluated on which data, and where the report goes."""

    checkpoint: Path = Field(Path("checkpoints/default"), description="checkpoint directory")
    report: Path | None = Field(None, description="report directory (default: <checkpoint>/eval-<dataset>)")
    batch_size: int = Field(16, gt=0, description="sequences per forward pass")
    threshold: float | None = Field(None, ge=0, le=1, description="override the manifest's threshold")
    split: str = Field("test", description="which split to score: test or validation")


def add_training_parsers(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    train = subparsers.add_parser("train", help="train a checkpoint with the three-stage LogLLM recipe")
    add_settings_arguments(train, TrainSettings)
    train.set_defaults(handler=run_train)
    evaluate = subparsers.add_parser("eval", help="evaluate a checkpoint: F1, FPR, ROC/PR-AUC, plots, speed")
    add_settings_arguments(evaluate, EvalSettings)
    evaluate.set_defaults(handler=run_eval)


def run_train(args: argparse.Namespace) -> int:
    """Load the data, train the stages, evaluate on the test split and save the final checkpoint."""
    from model.checkpoint import save_checkpoint
    from training.datasets import load_splits
    from training.evaluate import evaluate, write_evaluation
    from training.report import format_table
    from training.trainer import train

    settings = settings_from_args(TrainSettings, args)
    splits = load_splits(settings)
    print(f"data: {splits.describe()}", flush=True)
    model, manifest, _ = train(settings, splits.train, splits.validation)
    result = evaluate(model, splits.test, batch_size=settings.micro_batch_size * 4)
    manifest.metrics = {"dataset": settings.dataset, "split": "test", **result.metrics}
    save_checkpoint(model, settings.output, manifest)
    extra: dict[str, Any] = {"dataset": settings.dataset, "split": "test", "model": manifest.version}
    if settings.eval_limit is not None:
        extra["eval_limit"] = settings.eval_limit  # a stratified sample of the split, not all of it
    write_evaluation(settings.output / "eval", result, extra)
    print(format_table(result.metrics))
    print(f"checkpoint written to {settings.output} (version {manifest.version})")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    """Score a split with a saved checkpoint and write report.json and plots."""
    from model.checkpoint import load_checkpoint
    from training.datasets import load_splits
    from training.evaluate import evaluate, validation_threshold, write_evaluation
    from training.report import format_table

    settings = settings_from_args(EvalSettings, args)
    if settings.split not in ("test", "validation"):
        raise SystemExit(f"logllm eval: --split must be test or validation, got {settings.split!r}")
    if settings.threshold is not None and settings.max_fpr is not None:
        raise SystemExit("logllm eval: give --threshold or --max-fpr, not both")
    splits = load_splits(settings)
    print(f"data: {splits.describe()}", file=sys.stderr)
    model, manifest = load_checkpoint(settings.checkpoint, settings)
    threshold, rule = settings.threshold, "given" if settings.threshold is not None else "manifest"
    if settings.max_fpr is not None:  # re-pick on the validation split, never on the split being scored
        threshold = validation_threshold(model, splits.validation, settings.max_fpr, settings.batch_size)
        rule = f"most recall at validation FPR <= {settings.max_fpr}"
    result = evaluate(model, getattr(splits, settings.split), settings.batch_size, threshold)
    out = settings.report or settings.checkpoint / f"eval-{settings.dataset}"
    extra: dict[str, Any] = {
        "dataset": settings.dataset,
        "split": settings.split,
        "model": manifest.version,
        "threshold_rule": rule,
    }
    if settings.eval_limit is not None:
        extra["eval_limit"] = settings.eval_limit  # a stratified sample of the split, not all of it
    path = write_evaluation(out, result, extra)
    print(format_table(result.metrics))
    print(json.dumps({"report": str(path), "sequences_per_second": result.sequences_per_second}))
    return 0
