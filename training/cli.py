"""``logllm train`` and ``logllm eval``: the offline half of logllm."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from model.cli_args import add_settings_arguments, settings_from_args
from model.reading import training_reading
from model.vocab import (
    NoveltyMode,
    Vocabulary,
    attach_vocabulary,
    build_vocabulary,
    for_windows,
    load_vocabulary,
    pick_session_rules,
    with_window_rules,
)
from training.datasets import Splits
from training.settings import DataSettings, TrainSettings


class EvalSettings(DataSettings):
    """Which checkpoint is evaluated on which data, and where the report goes."""

    checkpoint: Path = Field(Path("checkpoints/default"), description="checkpoint directory")
    report: Path | None = Field(None, description="report directory (default: <checkpoint>/eval-<dataset>)")
    batch_size: int = Field(16, gt=0, description="sequences per forward pass")
    threshold: float | None = Field(None, ge=0, le=1, description="override the manifest's threshold")
    part: Literal["test", "validation"] = Field("test", description="which part of the split to score")
    prevalence: float | None = Field(
        None, gt=0, lt=1, description="real share of anomalies for projected precision/F1 (default: HDFS, BGL known)"
    )
    novelty: NoveltyMode = Field(
        "flag", description="novelty vs the checkpoint's vocabulary: flag (also report model + rule), annotate, off"
    )


class VocabSettings(DataSettings):
    """Which training data the vocabulary of an existing checkpoint is read from."""

    pick_threshold: bool = Field(
        False,
        description="also re-pick the threshold on the validation split for the budget (--max-fpr), as logllm train"
        " does, and write it to the manifest; the model's false alarms there then count against the session"
        " rules' budget (loads the model)",
    )
    batch_size: int = Field(16, gt=0, description="sequences per forward pass (--pick-threshold)")


# The data settings a checkpoint's manifest records and `logllm vocab` reuses, so the split is the trained one.
SPLIT_FIELDS = ("dataset", "window_size", "window_step", "max_lines", "max_messages", "seed", "split",
                "validation_fraction", "log_format", "window_mode", "session_pattern")  # fmt: skip


def add_training_parsers(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    train = subparsers.add_parser("train", help="train a checkpoint with the three-stage LogLLM recipe")
    add_settings_arguments(train, TrainSettings)
    train.set_defaults(handler=run_train)
    evaluate = subparsers.add_parser("eval", help="evaluate a checkpoint: F1, FPR, ROC/PR-AUC, plots, speed")
    add_settings_arguments(evaluate, EvalSettings)
    evaluate.set_defaults(handler=run_eval)
    vocab = subparsers.add_parser(
        "vocab",
        help="write a checkpoint's training vocabulary (templates of normal / only anomalous training windows)",
        description="Reads the checkpoint's training split again: flags given here, else the data settings its"
        " manifest recorded (dataset, seed, split, window sizes), else the defaults.",
    )
    vocab.add_argument("checkpoint_dir", type=Path, metavar="CKPT", help="checkpoint directory")
    add_settings_arguments(vocab, VocabSettings)
    vocab.set_defaults(handler=run_vocab)


def _prevalence(settings: DataSettings, given: float | None) -> float | None:
    from training.metrics import PREVALENCE

    return given if given is not None else PREVALENCE.get(settings.dataset)


def _seen(
    splits: Splits, parts: tuple[str, ...] = ("train", "validation"), unlabeled: bool = False
) -> set[tuple[str, ...]]:
    """Message lists of the whole train split (validation included: it picked the threshold).

    For a checkpoint trained ``--unlabeled`` only the normal ones: its labeled anomalies were never trained on.
    """
    return {tuple(s.messages) for part in parts for s in getattr(splits, part) if not (unlabeled and s.label)}


def training_vocabulary(
    splits: Splits, max_fpr: float | None, flagged_by_model: Sequence[bool] | None = None, seed: int = 0
) -> Vocabulary:
    """The templates of the windows the model trained on (not the validation part); for sessions also their
    transitions and counts, with the session rules picked on the normal sessions (cross-validated training ones
    and the validation ones) so that the model (``flagged_by_model``: its verdict on each validation normal, if
    given) and the rules together stay within the false-positive budget (``--max-fpr``; no false alarm without).
    Fixed windows get the window rules (model/window_rules.py), picked the same way."""
    from model.preprocess import PREPROCESS_VERSION

    windows = ((s.messages, s.label) for s in splits.train)
    vocabulary = build_vocabulary(windows, PREPROCESS_VERSION, sessions=splits.report.sessions)
    trained = [s.messages for s in splits.train if not s.label]
    held_out = [s.messages for s in splits.validation if not s.label]
    if not splits.report.sessions:  # fixed windows: counts over their ceiling, steps left out
        return with_window_rules(vocabulary, trained, held_out, max_fpr or 0.0, flagged_by_model, seed)
    return pick_session_rules(vocabulary, trained, held_out, max_fpr or 0.0, flagged_by_model, seed)


def run_train(args: argparse.Namespace) -> int:
    """Load the data, train the stages, evaluate on the test split and save the final checkpoint."""
    from model.checkpoint import CheckpointError, save_checkpoint
    from training.datasets import load_splits
    from training.evaluate import evaluate, write_evaluation
    from training.report import format_table
    from training.trainer import TrainingError, train
    from training.unlabeled import limit_test_anomalies, move_anomalies_to_test

    settings = settings_from_args(TrainSettings, args)
    service_data = None
    if settings.from_service is not None:  # a source's own model from a running service (training/from_service.py)
        from training.from_service import FromServiceError, fetch, read_as_service, service_splits

        try:
            service_data = fetch(settings, keep_in=settings.output)
        except FromServiceError as exc:
            raise SystemExit(f"logllm train: {exc}") from None
        settings = read_as_service(settings, service_data)
        splits = service_splits(service_data, settings)
        print(f"from {settings.from_service}: source {settings.source}, read as {service_data.reading}", flush=True)
    else:
        splits = load_splits(settings)
    if settings.unlabeled:
        splits = move_anomalies_to_test(splits)
    if settings.test_anomalies is not None:
        splits = limit_test_anomalies(splits, settings.test_anomalies, settings.seed)
    print(f"data: {splits.describe()}", flush=True)
    try:
        model, manifest, _, validation_scores = train(settings, splits.train, splits.validation, splits.report.sessions)
    except (TrainingError, CheckpointError) as exc:
        raise SystemExit(f"logllm train: {exc}") from None
    if settings.unlabeled:
        manifest.training["unlabeled_data"]["moved_to_test"] = splits.report.moved_to_test
    manifest.training["test_anomalies_left_out"] = splits.report.test_anomalies_left_out
    normals = [score >= model.threshold for s, score in zip(splits.validation, validation_scores, strict=True)
               if not s.label]  # fmt: skip
    vocabulary = training_vocabulary(splits, settings.max_fpr, normals, settings.seed)
    result = evaluate(
        model,
        splits.test,
        batch_size=settings.micro_batch_size * 4,
        seen=_seen(splits),
        prevalence=_prevalence(settings, None),
        vocabulary=vocabulary,
        novelty="flag",
    )
    manifest.metrics = {"dataset": settings.dataset, "split": "test", **result.metrics}
    manifest.reading = training_reading(settings, splits.report.sessions)  # what serve and score default to
    if service_data is not None:
        manifest.training["from_service"] = {"url": settings.from_service, "source": settings.source,
                                             **service_data.summary()}  # fmt: skip
    save_checkpoint(model, settings.output, manifest)
    attach_vocabulary(settings.output, vocabulary)
    fpr = settings.max_fpr
    extra: dict[str, Any] = {
        "dataset": settings.dataset,
        "split": "test",
        "model": manifest.version,
        "threshold_rule": "best F1" if fpr is None else f"most recall at validation FPR <= {fpr}",
        "unlabeled": settings.unlabeled,
    }
    if settings.eval_limit is not None:
        extra["eval_limit"] = settings.eval_limit  # a stratified sample of the split, not all of it
    write_evaluation(settings.output / "eval", result, extra, settings.output)
    print(format_table(flat_metrics(result.metrics)))
    print(f"checkpoint written to {settings.output} (version {manifest.version})")
    if settings.register:
        from training.from_service import FromServiceError, register

        try:
            registered = register(settings, settings.output, manifest.version)
        except FromServiceError as exc:
            raise SystemExit(f"logllm train: {exc}") from None
        print(f"registered: {json.dumps(registered)}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    """Score a split with a saved checkpoint and write report.json and plots."""
    from model.checkpoint import load_checkpoint
    from training.datasets import load_splits
    from training.evaluate import evaluate, validation_threshold, write_evaluation
    from training.report import format_table

    settings = settings_from_args(EvalSettings, args)
    if settings.threshold is not None and settings.max_fpr is not None:
        raise SystemExit("logllm eval: give --threshold or --max-fpr, not both")
    splits = load_splits(settings)
    print(f"data: {splits.describe()}", file=sys.stderr)
    model, manifest = load_checkpoint(settings.checkpoint, settings)
    unlabeled = bool(manifest.training.get("unlabeled"))
    vocabulary = checkpoint_vocabulary(settings.checkpoint, settings.novelty)
    if vocabulary is not None:
        vocabulary = for_windows(vocabulary, splits.report.sessions)
    threshold, rule = settings.threshold, "given" if settings.threshold is not None else "manifest"
    if settings.max_fpr is not None:  # re-pick on the validation split, never on the split being scored
        threshold, _ = validation_threshold(model, splits.validation, settings.max_fpr, settings.batch_size)
        rule = f"most recall at validation FPR <= {settings.max_fpr}"
    result = evaluate(
        model,
        getattr(splits, settings.part),
        settings.batch_size,
        threshold,
        seen=_seen(splits, ("train", "validation") if settings.part == "test" else ("train",), unlabeled),
        prevalence=_prevalence(settings, settings.prevalence),
        vocabulary=vocabulary,
        novelty=settings.novelty,
    )
    out = settings.report or settings.checkpoint / f"eval-{settings.dataset}"
    extra: dict[str, Any] = {
        "dataset": settings.dataset,
        "split": settings.part,
        "split_rule": settings.split,
        "seed": settings.seed,
        "model": manifest.version,
        "threshold_rule": rule,
    }
    if settings.eval_limit is not None:
        extra["eval_limit"] = settings.eval_limit  # a stratified sample of the split, not all of it
    path = write_evaluation(out, result, extra, settings.checkpoint)
    print(format_table(flat_metrics(result.metrics)))
    print(json.dumps({"report": str(path), "sequences_per_second": result.metrics["sequences_per_second"]}))
    return 0


def checkpoint_vocabulary(checkpoint: Path, mode: NoveltyMode) -> Vocabulary | None:
    """The checkpoint's vocabulary when novelty is on; a checkpoint without one says how to make it."""
    if mode == "off":
        return None
    vocabulary = load_vocabulary(checkpoint)
    if vocabulary is None:
        print(f"novelty off: {checkpoint} has no vocabulary (make one with `logllm vocab {checkpoint}`)",
              file=sys.stderr)  # fmt: skip
    return vocabulary


def flat_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections (unseen, projected, novelty) as ``unseen.f1`` rows for the terminal table."""
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update(flat_metrics(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def run_vocab(args: argparse.Namespace) -> int:
    """Write ``vocabulary.json`` for an existing checkpoint from its training split and name it in the manifest."""
    from model.checkpoint import CheckpointError, Manifest
    from training.datasets import load_splits
    from training.unlabeled import move_anomalies_to_test

    try:
        manifest = Manifest.read(args.checkpoint_dir)
    except CheckpointError as exc:
        raise SystemExit(f"logllm vocab: {exc}") from None
    recorded = {k: manifest.training[k] for k in SPLIT_FIELDS if k in manifest.training}
    given = {k: v for k, v in vars(args).items() if k in VocabSettings.model_fields}
    settings = settings_from_args(VocabSettings, argparse.Namespace(**{**recorded, **given}))
    splits = load_splits(settings)
    if manifest.training.get("unlabeled"):  # as trained: labeled anomalies never reached the training windows
        splits = move_anomalies_to_test(splits)
    print(f"data: {splits.describe()}", file=sys.stderr)
    if manifest.training.get("train_sequences") not in (None, len(splits.train)):
        print(
            f"warning: the manifest records {manifest.training['train_sequences']} training sequences, this split"
            f" has {len(splits.train)}: is it the data the checkpoint was trained on?",
            file=sys.stderr,
        )
    # the budget given here (--max-fpr, LOGLLM_MAX_FPR), else the one the checkpoint was trained with
    max_fpr = settings.max_fpr if settings.max_fpr is not None else manifest.training.get("max_fpr")
    flagged: list[bool] | None = None
    picked: dict[str, Any] = {}
    if settings.pick_threshold:
        if max_fpr is None:
            raise SystemExit("logllm vocab: --pick-threshold needs a budget (--max-fpr)")
        threshold, flagged = _repick_threshold(args.checkpoint_dir, settings, splits, max_fpr)
        picked = {"threshold": threshold, "threshold_rule": f"most recall at validation FPR <= {max_fpr}"}
    vocabulary = training_vocabulary(splits, max_fpr, flagged, seed=settings.seed)
    entry = attach_vocabulary(args.checkpoint_dir, vocabulary)
    used = {k: getattr(settings, k) for k in SPLIT_FIELDS}
    print(json.dumps({"checkpoint": str(args.checkpoint_dir), **entry, "max_fpr": max_fpr, **picked,
                      "split_settings": used}))  # fmt: skip
    return 0


def _repick_threshold(
    directory: Path, settings: VocabSettings, splits: Splits, max_fpr: float
) -> tuple[float, list[bool]]:
    """The threshold ``logllm train`` would pick on this split's validation part for the budget, written to the
    manifest (with the budget under ``training.max_fpr``), and the model's verdict on each validation normal."""
    from model.checkpoint import MANIFEST, load_checkpoint
    from training.evaluate import validation_threshold

    model, _ = load_checkpoint(directory, settings)
    threshold, scores = validation_threshold(model, splits.validation, max_fpr, settings.batch_size)
    manifest = json.loads((directory / MANIFEST).read_text())
    manifest["threshold"] = threshold
    manifest["training"]["max_fpr"] = max_fpr
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    flagged = [score >= threshold for s, score in zip(splits.validation, scores, strict=True) if not s.label]
    print(f"threshold {threshold:.6f} (validation FPR <= {max_fpr}: {sum(flagged)} of {len(flagged)} normals"
          " flagged)", file=sys.stderr)  # fmt: skip
    return threshold, flagged
