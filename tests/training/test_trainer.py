"""The three-stage recipe end to end through ``logllm train`` / ``logllm eval`` on the real backbones, with a
handful of steps: each stage tunes only its parts, every stage is checkpointed, an interrupted run resumes
after its last completed stage, and QLoRA (4-bit NF4 via bitsandbytes) trains and reloads on the CPU, and on CUDA
where a GPU is present.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import logllm_cli
from model.logllm import LogLLM
from training.data import LabeledSequence
from training.settings import TrainSettings
from training.trainer import StagePlan, TrainingError, plan_stages, run_stage

pytestmark = pytest.mark.slow
STAGES = ["1-decoder", "2a-projector", "2b-encoder", "3-all"]
TINY_RECIPE = [
    "--stage1-samples", "4", "--max-train-samples", "4", "--stage2-epochs", "1", "--stage3-epochs", "1",
    "--batch-size", "2", "--micro-batch-size", "2", "--lr", "5e-3", "--stage1-lr", "5e-3",
    "--device", "cpu", "--seed", "7",
]  # fmt: skip


def write_sessions(path: Path, n: int) -> Path:
    """JSONL sessions of 3 lines; every third session has an error line, so both labels reach every split."""
    rng = random.Random(0)
    with path.open("w") as out:
        for session in range(n):
            anomalous = session % 3 == 0
            for step in range(3):
                bad = anomalous and step == 2
                message = f"disk failure on node {rng.randint(1, 99)}" if bad else f"job {step} finished ok"
                out.write(json.dumps({"sequence_id": f"s{session}", "message": message, "label": int(bad)}) + "\n")
    return path


def run_cli(*argv: str) -> int:
    args = logllm_cli.build_parser().parse_args(list(argv))
    return int(args.handler(args))


def weights(stage_dir: Path, part: str) -> dict[str, torch.Tensor]:
    name = "projector.safetensors" if part == "projector" else f"{part}/adapter_model.safetensors"
    return load_file(str(stage_dir / name))


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_stage_plan_follows_the_paper_and_skips_stages_for_the_ablation() -> None:
    full = plan_stages(TrainSettings(stage1_samples=1000, stage2_epochs=2, stage3_epochs=2), n_train=500)
    assert [(p.name, p.projector, p.encoder_lora, p.decoder_lora, p.samples) for p in full] == [
        ("1-decoder", False, False, True, 1000),
        ("2a-projector", True, False, False, 500),
        ("2b-encoder", True, True, False, 500),
        ("3-all", True, True, True, 1000),
    ]
    assert [p.lr for p in full] == [5e-4, 5e-5, 5e-5, 5e-5]
    assert [p.name for p in plan_stages(TrainSettings(stages=["1", "3"]), n_train=10)] == ["1-decoder", "3-all"]


def test_each_stage_tunes_its_parts_and_an_interrupted_run_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_sessions(tmp_path / "sessions.jsonl", 40)
    out = tmp_path / "run"
    train = ["train", "--dataset", "generic", "--data", str(data), "--output", str(out), "--quantize", "none"]
    assert run_cli(*train, *TINY_RECIPE) == 0

    stage = {name: out / "stages" / name for name in STAGES}
    progress = json.loads((out / "progress.json").read_text())
    assert progress["completed"] == STAGES
    # every optimizer step's loss is kept: 4 stage-1 samples and 4 stage-3 samples at batch 2, 2 + 2 in stage 2
    assert [len(progress["curves"][name]) for name in STAGES] == [2, 1, 1, 2]
    assert progress["losses"][STAGES[3]] == pytest.approx(sum(progress["curves"][STAGES[3]]) / 2)
    # stage 1: only the decoder LoRA learns (the encoder LoRA keeps its zero-initialised B matrices)
    assert all(not v.any() for k, v in weights(stage["1-decoder"], "encoder_lora").items() if "lora_B" in k)
    assert any(v.any() for k, v in weights(stage["1-decoder"], "decoder_lora").items() if "lora_B" in k)
    changed = {
        (before, after): {
            part: not same(weights(stage[before], part), weights(stage[after], part))
            for part in ("projector", "encoder_lora", "decoder_lora")
        }
        for before, after in zip(STAGES, STAGES[1:], strict=False)
    }
    assert changed[("1-decoder", "2a-projector")] == {"projector": True, "encoder_lora": False, "decoder_lora": False}
    assert changed[("2a-projector", "2b-encoder")] == {"projector": True, "encoder_lora": True, "decoder_lora": False}
    assert changed[("2b-encoder", "3-all")] == {"projector": True, "encoder_lora": True, "decoder_lora": True}

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["training"]["stages_run"] == STAGES and manifest["training"]["seed"] == 7
    assert set(manifest["metrics"]) >= {"f1", "precision", "recall", "fpr", "roc_auc", "pr_auc"}
    assert 0.0 <= manifest["threshold"] <= 1.0
    plots = {"report.json", "pr_curve.png", "score_histogram.png", "training_curve.png"}
    assert {p.name for p in (out / "eval").iterdir()} >= plots
    # the trainer records the templates of its training windows, named and hashed in the manifest
    from model.vocab import load_vocabulary

    vocabulary = load_vocabulary(out)
    assert vocabulary is not None and manifest["vocabulary"]["file"] == "vocabulary.json"
    assert set(vocabulary.normal) == {"job <*> finished ok"}
    assert set(vocabulary.anomalous_only) == {"disk failure on node <*>"}
    assert sum(vocabulary.windows.values()) == manifest["training"]["train_sequences"]
    assert manifest["metrics"]["novelty"]["mode"] == "flag" and "unseen" in manifest["metrics"]

    # killed during stage 3: the rerun starts from stage 2b's checkpoint and trains stage 3 only
    kept = {k: v for k, v in progress["curves"].items() if k != "3-all"}
    (out / "progress.json").write_text(
        json.dumps({"completed": STAGES[:3], "losses": progress["losses"], "curves": kept, "batch_size": 2})
    )
    capsys.readouterr()
    assert run_cli(*train, *TINY_RECIPE) == 0
    assert "resuming after stage 2b-encoder" in capsys.readouterr().out
    resumed = json.loads((out / "progress.json").read_text())
    assert list(resumed["losses"]) == ["3-all"]
    assert list(resumed["curves"]) == STAGES and all(resumed["curves"][k] == v for k, v in kept.items())

    report_dir = tmp_path / "report"
    evaluate = ["eval", "--checkpoint", str(out), "--dataset", "generic", "--data", str(data), "--device", "cpu"]
    assert run_cli(*evaluate, "--report", str(report_dir), "--seed", "7") == 0
    report = json.loads((report_dir / "report.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    assert report["threshold"] == manifest["threshold"]
    assert report["plots"]["training_curve"] == "training_curve.png" and (report_dir / "training_curve.png").is_file()
    assert report["metrics"]["sequences"] == manifest["metrics"]["sequences"]
    assert report["metrics"]["f1"] == pytest.approx(manifest["metrics"]["f1"])

    # an alert budget instead of best F1: no false alarm on the split the threshold was picked on
    budget = tmp_path / "budget"
    assert run_cli(*evaluate, "--report", str(budget), "--seed", "7", "--part", "validation", "--max-fpr", "0") == 0
    report = json.loads((budget / "report.json").read_text())
    assert report["metrics"]["fp"] == 0 and report["extra"]["threshold_rule"].endswith("FPR <= 0.0")
    with pytest.raises(SystemExit, match="--threshold or --max-fpr, not both"):
        run_cli(*evaluate, "--threshold", "0.5", "--max-fpr", "0.01")


CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"))


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_qlora_trains_and_reloads_in_4bit(device: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The QLoRA path end to end; CI runs it on the CPU, a lent GPU on CUDA (README's GPU section)."""
    from bitsandbytes.nn import Linear4bit

    from model.checkpoint import load_checkpoint, save_checkpoint
    from training.datasets import load_splits
    from training.trainer import train

    settings = TrainSettings(
        dataset="generic", data=write_sessions(tmp_path / "sessions.jsonl", 15), output=tmp_path / "qlora",
        stages=["1", "3"], stage1_samples=2, max_train_samples=2, stage3_epochs=1, batch_size=2,
        micro_batch_size=2, device=device, quantize="4bit",
    )  # fmt: skip
    splits = load_splits(settings)
    model, manifest, losses, _ = train(settings, splits.train, splits.validation)
    assert list(losses) == ["1-decoder", "3-all"] and all(loss == loss for loss in losses.values())  # not NaN
    assert isinstance(model.decoder.get_base_model().model.layers[0].self_attn.q_proj.base_layer, Linear4bit)
    sequences = [s.messages for s in splits.test]
    trained = model.score(sequences)
    save_checkpoint(model, settings.output, manifest)
    assert any(v.any() for k, v in weights(settings.output, "decoder_lora").items() if "lora_B" in k)

    reloaded, manifest = load_checkpoint(settings.output, settings)
    assert manifest.decoder_precision == "nf4" and reloaded.device.type == device
    assert isinstance(reloaded.decoder.get_base_model().model.layers[0].self_attn.q_proj.base_layer, Linear4bit)
    assert reloaded.score(sequences) == pytest.approx(trained, abs=1e-4)

    caplog.clear()
    load_checkpoint(settings.output, settings.model_copy(update={"quantize": "none"}))
    assert "trained on a decoder in 4-bit NF4 and is loaded in full precision" in caplog.text


@contextlib.contextmanager
def nan_after_projector(model: LogLLM, calls: set[int]) -> Iterator[None]:
    """Turns the projector's output into NaN on the given forward calls (0-based), as a broken kernel would."""
    seen = [0]

    def hook(_module: torch.nn.Module, _args: object, output: torch.Tensor) -> torch.Tensor | None:
        seen[0] += 1
        return output * float("nan") if seen[0] - 1 in calls else None

    handle = model.projector.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def test_a_non_finite_step_is_skipped_and_a_run_of_them_stops_the_stage(
    fresh_model: LogLLM, caplog: pytest.LogCaptureFixture
) -> None:
    data = [LabeledSequence(f"s{i}", ["job <*> finished ok"] * (1 + i % 3), i % 2) for i in range(8)]
    settings = TrainSettings(batch_size=2, micro_batch_size=2)
    # lr 0 keeps the shared model as it was, yet AdamW would still write 0 * NaN = NaN into every weight it steps
    plan = StagePlan("1-decoder", False, False, True, lr=0.0, samples=8)
    lora = [p for n, p in fresh_model.decoder.named_parameters() if "lora_" in n]
    try:
        with nan_after_projector(fresh_model, {1}):
            curve = run_stage(fresh_model, plan, data, settings, seed=0)
        assert len(curve) == 3 and all(math.isfinite(x) for x in curve) and "step 2 skipped: loss nan" in caplog.text
        assert lora and all(torch.isfinite(p).all() for p in lora), "the NaN step must not reach the weights"

        stops = pytest.raises(TrainingError, match=r"stage 1-decoder: loss or gradients not finite in 4 steps")
        with nan_after_projector(fresh_model, set(range(100))), stops:
            run_stage(fresh_model, plan, data, settings, seed=0)
        assert all(torch.isfinite(p).all() for p in lora)
    finally:
        fresh_model.eval()
        fresh_model.zero_grad(set_to_none=True)
