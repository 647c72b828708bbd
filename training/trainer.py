"""The three-stage LogLLM recipe: decoder LoRA on the answer, then projector (+ encoder LoRA), then everything.

Each stage is checkpointed under ``<output>/stages/<name>`` and recorded in ``<output>/progress.json``, so an
interrupted run resumes after its last completed stage. The final checkpoint (``<output>`` itself) carries the
threshold picked on the validation split (best F1, or the most recall within ``--max-fpr``) and the test metrics.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from model.backbones import set_torch_threads
from model.checkpoint import CheckpointError, Manifest, build_model, load_checkpoint, save_checkpoint
from model.logllm import LogLLM
from training.data import LabeledSequence
from training.sampling import oversample_minority, seed_everything
from training.settings import TrainSettings

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """A stage could not train (its loss or gradients kept going non-finite); the message says where."""


@dataclass(frozen=True)
class StagePlan:
    """One training stage: which parts learn, at what rate, on how many samples."""

    name: str
    projector: bool
    encoder_lora: bool
    decoder_lora: bool
    lr: float
    samples: int


def plan_stages(settings: TrainSettings, n_train: int) -> list[StagePlan]:
    """The paper's stages; stage 2 spends half its epochs on the projector alone, then adds the encoder LoRA."""
    per_epoch = min(n_train, settings.max_train_samples or n_train)
    half2 = max(1, round(per_epoch * settings.stage2_epochs / 2))
    plans = {
        "1": [StagePlan("1-decoder", False, False, True, settings.stage1_lr, settings.stage1_samples)],
        "2": [
            StagePlan("2a-projector", True, False, False, settings.lr, half2),
            StagePlan("2b-encoder", True, True, False, settings.lr, half2),
        ],
        "3": [StagePlan("3-all", True, True, True, settings.lr, max(1, round(per_epoch * settings.stage3_epochs)))],
    }
    return [plan for stage in ("1", "2", "3") if stage in settings.stages for plan in plans[stage]]


def sample_order(n: int, samples: int, rng: random.Random) -> list[int]:
    """Shuffled passes over ``range(n)``, concatenated until ``samples`` indices: epochs without repeats inside."""
    order: list[int] = []
    while len(order) < samples:
        epoch = list(range(n))
        rng.shuffle(epoch)
        order.extend(epoch)
    return order[:samples]


def run_stage(
    model: LogLLM, plan: StagePlan, data: Sequence[LabeledSequence], settings: TrainSettings, seed: int
) -> list[float]:
    """Train one stage with AdamW and gradient accumulation; returns the loss of each step taken (its curve).

    A step whose loss or gradient norm is not finite is skipped, so one bad batch cannot turn every weight into NaN.
    Past 1% of the stage's steps (at least 3) the stage stops with an error and nothing of it is saved: a run that
    keeps producing NaN has a real fault (precision, kernel, data), and a NaN checkpoint would only hide it.
    """
    model.train()
    model.set_trainable(projector=plan.projector, encoder_lora=plan.encoder_lora, decoder_lora=plan.decoder_lora)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=plan.lr)
    order = sample_order(len(data), plan.samples, random.Random(seed))
    use_bf16 = model.device.type == "cuda" and torch.cuda.is_bf16_supported()
    curve: list[float] = []
    steps = math.ceil(len(order) / settings.batch_size)
    skipped, allowed = 0, max(3, steps // 100)
    started = time.perf_counter()
    bar = tqdm(total=len(order), desc=f"stage {plan.name}", unit="seq", dynamic_ncols=True)
    for start in range(0, len(order), settings.batch_size):
        batch = [data[i] for i in order[start : start + settings.batch_size]]
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for micro in range(0, len(batch), settings.micro_batch_size):
            part = batch[micro : micro + settings.micro_batch_size]
            with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss = model.loss([s.messages for s in part], [s.label for s in part]) * (len(part) / len(batch))
            loss.backward()
            total += float(loss)
        norm = float(torch.nn.utils.clip_grad_norm_(params, 1.0))
        bar.update(len(batch))
        if not (math.isfinite(total) and math.isfinite(norm)):
            skipped += 1
            lengths = sorted(len(s.messages) for s in batch)
            log.warning("stage %s step %d skipped: loss %s, gradient norm %s (messages per sequence %s)",
                        plan.name, start // settings.batch_size + 1, total, norm, lengths)  # fmt: skip
            if skipped > allowed:
                bar.close()
                raise TrainingError(
                    f"stage {plan.name}: loss or gradients not finite in {skipped} steps (more than {allowed} of"
                    f" {steps}); stopped without saving the stage. Last batch: messages per sequence {lengths}."
                )
            continue
        optimizer.step()
        curve.append(total)
        rate = bar.n / max(time.perf_counter() - started, 1e-9)
        bar.set_postfix(loss=f"{total:.4f}", seq_s=f"{rate:.1f}", skipped=skipped)
    bar.close()
    if skipped:
        log.warning("stage %s: %d of %d steps skipped for a non-finite loss or gradient", plan.name, skipped, steps)
    return curve


def final_loss(curve: Sequence[float]) -> float:
    """A stage's loss as reported: the mean of its last 10 steps (NaN when no step was taken)."""
    tail = list(curve)[-10:]
    return sum(tail) / len(tail) if tail else math.nan


def read_progress(output: Path | None) -> dict[str, Any]:
    """``progress.json``: the completed stages, their final losses and (since curves were kept) each step's loss."""
    path = None if output is None else output / "progress.json"
    progress = json.loads(path.read_text()) if path is not None and path.exists() else {}
    return {"completed": [], "losses": {}, "curves": {}, **progress}


def fresh_or_initial(settings: TrainSettings) -> tuple[LogLLM, Manifest]:
    """New LoRA adapters and projector, or (``--init-from``) the trainable ones of an existing checkpoint.

    The checkpoint's own backbone check refuses a source trained on other backbones, naming both.
    """
    if settings.init_from is None:
        model, enc_info, dec_info = build_model(settings)
        return model, Manifest(encoder=enc_info, decoder=dec_info, prompts=model.prompts)
    try:
        model, loaded = load_checkpoint(
            settings.init_from, settings, encoder=settings.encoder, decoder=settings.decoder, trainable=True
        )
    except CheckpointError as exc:
        raise TrainingError(f"--init-from {settings.init_from}: {exc}") from None
    print(f"starting from {settings.init_from} (version {loaded.version})", flush=True)
    return model, Manifest(encoder=loaded.encoder, decoder=loaded.decoder, prompts=loaded.prompts)


def train(
    settings: TrainSettings,
    train_set: Sequence[LabeledSequence],
    validation: Sequence[LabeledSequence],
    sessions: bool = True,
) -> tuple[LogLLM, Manifest, dict[str, float], list[float]]:
    """Run the planned stages (resuming if asked) and pick the threshold on the validation split; returns the
    model, its manifest, each stage's final loss and the validation scores the threshold was picked on.

    With ``--unlabeled`` ``train_set`` must hold normal windows only: perturbed copies become the anomalous class
    (of the same length as their window when ``sessions`` is False: fixed windows, in log order).
    """
    from training.evaluate import validation_threshold

    print(f"seed {settings.seed}", flush=True)
    set_torch_threads(settings.torch_threads)
    seed_everything(settings.seed)
    examples, unlabeled = list(train_set), None
    if settings.unlabeled:
        from training.unlabeled import with_synthetic_anomalies

        examples, unlabeled = with_synthetic_anomalies(examples, settings, sessions)
        print(f"unlabeled: {unlabeled['normal_windows']} normal windows, {unlabeled['synthetic_anomalies']}"
              f" synthetic anomalies {unlabeled['perturbation_counts']}", flush=True)  # fmt: skip
    labels = [s.label for s in examples]
    balanced = oversample_minority(examples, labels, beta=settings.beta, seed=settings.seed)
    plans = plan_stages(settings, len(balanced))
    progress = read_progress(settings.output if settings.resume else None)
    done: list[str] = progress["completed"]
    resumed = [p for p in plans if p.name in done]
    if resumed:
        last = settings.output / "stages" / resumed[-1].name
        print(f"resuming after stage {resumed[-1].name} from {last}", flush=True)
        model, manifest = load_checkpoint(last, settings, trainable=True)
    else:
        model, manifest = fresh_or_initial(settings)
    manifest.max_messages = settings.max_messages
    model.max_messages = settings.max_messages
    manifest.training = {
        **settings.model_dump(mode="json", exclude={"cache_dir", "data", "output", "token"}),
        "train_sequences": len(train_set),
        "after_oversampling": len(balanced),
        "stages_run": [p.name for p in plans],
    }
    if unlabeled is not None:
        manifest.training["unlabeled_data"] = unlabeled
    if settings.init_from is not None:
        manifest.training["init_from_version"] = Manifest.read(settings.init_from).version
    if settings.gradient_checkpointing:
        model.decoder.gradient_checkpointing_enable()
    losses: dict[str, float] = {}
    curves: dict[str, list[float]] = {k: v for k, v in progress["curves"].items() if k in done}
    for index, plan in enumerate(plans):
        if plan.name in done:
            continue
        curves[plan.name] = run_stage(model, plan, balanced, settings, settings.seed + index)
        losses[plan.name] = final_loss(curves[plan.name])
        save_checkpoint(model, settings.output / "stages" / plan.name, manifest)
        done.append(plan.name)
        record = {"completed": done, "losses": losses, "curves": curves, "batch_size": settings.batch_size}
        (settings.output / "progress.json").write_text(json.dumps(record) + "\n")
    model.threshold, validation_scores = validation_threshold(
        model, validation, settings.max_fpr, settings.micro_batch_size * 4
    )
    rule = "best F1" if settings.max_fpr is None else f"most recall at FPR <= {settings.max_fpr}"
    print(f"threshold {model.threshold:.4f} ({rule} on {len(validation)} validation sequences)", flush=True)
    manifest.training["final_losses"] = losses
    return model, manifest, losses, validation_scores
