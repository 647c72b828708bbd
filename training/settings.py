"""Training settings: the paper's recipe as defaults; every field is a ``logllm train`` flag and a LOGLLM_ env var."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from model.settings import ModelSettings
from training.data_splits import SplitMode
from training.perturb import DEFAULT_PERTURBATIONS, check_names

UNLABELED_MAX_FPR = 0.01  # --unlabeled without --max-fpr: F1 needs anomalies, validation holds none

DatasetKind = Literal["hdfs-sessions", "hdfs", "bgl", "thunderbird", "liberty", "generic", "text", "service"]
Recipe = Literal["paper", "own-logs", "smoke"]
# Presets of the sample counts and steps; a flag or env var still wins field by field. own-logs: the docs' "Train
# on your own logs" (about two minutes for 60 windows on 2 cores); smoke: a handful of steps, for tests.
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {},
    "own-logs": {"stage1_samples": 96, "max_train_samples": 256, "stage2_epochs": 1.0, "stage3_epochs": 1.0,
                 "lr": 5e-4, "batch_size": 8, "micro_batch_size": 4},
    "smoke": {"stage1_samples": 4, "max_train_samples": 4, "stage2_epochs": 1.0, "stage3_epochs": 1.0, "lr": 5e-3,
              "stage1_lr": 5e-3, "batch_size": 2, "micro_batch_size": 2},
}  # fmt: skip
Stage = Literal["1", "2", "3"]


class DataSettings(ModelSettings):
    """Where the labeled logs are and how they become sequences."""

    dataset: DatasetKind = Field("hdfs-sessions", description="which loader reads --data")
    data: Path = Field(Path("../shared/data"), description="data directory (or file for 'generic' and 'text')")
    log_format: Literal["raw", "hdfs", "bgl", "thunderbird", "liberty", "rfc3164", "rfc5424"] = Field(
        "raw", description="'text' data: how to cut the message content out of each line"
    )
    window_mode: Literal["session", "fixed"] = Field(
        "fixed", description="'text' data: windows by session id (--session-pattern) or fixed (--window-size)"
    )
    session_pattern: str = Field(r"blk_-?\d+", description="'text' data: regex that finds session ids in a line")
    window_size: int = Field(100, gt=0, description="lines per window for line-labeled logs")
    window_step: int = Field(100, gt=0, description="lines between window starts for line-labeled logs")
    max_lines: int | None = Field(None, gt=0, description="read only the first N lines (Thunderbird: 10M)")
    max_messages: int = Field(128, gt=0, description="messages kept per sequence (the first N)")
    on_error: Literal["skip", "fail"] = Field("skip", description="malformed lines: count and skip, or stop")
    seed: int = Field(42, description="seeds the split, sampling, initialisation and dropout")
    split: SplitMode = Field(
        "random",
        description="random: the paper's split; distinct: identical sequences never straddle train and test"
        " (chronological logs: test windows also in train are dropped)",
    )
    validation_fraction: float = Field(0.1, gt=0, lt=1, description="share of train held out for model selection")
    max_fpr: float | None = Field(
        None, ge=0, lt=1, description="threshold = most recall at this validation FPR or below (default: best F1)"
    )
    eval_limit: int | None = Field(
        None, gt=1, description="score at most N validation/test sequences (stratified sample; smoke runs only)"
    )


# `--register` is the flag's name; the field shadows ABCMeta.register on the class, which nothing here calls.
warnings.filterwarnings("ignore", message='Field name "register" in "TrainSettings" shadows', category=UserWarning)


class TrainSettings(DataSettings):
    """The three-stage recipe of the paper; CPU users shrink the sample counts (see README)."""

    output: Path = Field(Path("runs/latest"), description="checkpoint directory; each stage is saved under it")
    beta: float = Field(0.3, gt=0, lt=1, description="minority-class share after oversampling")
    stages: list[Stage] = Field(["1", "2", "3"], description="stages to run (drop some for the ablation)")
    stage1_samples: int = Field(1000, gt=0, description="samples for stage 1 (decoder LoRA on the answer)")
    stage1_lr: float = Field(5e-4, gt=0)
    lr: float = Field(5e-5, gt=0, description="learning rate of stages 2 and 3")
    stage2_epochs: float = Field(2.0, gt=0, description="epochs of stage 2 (projector, then + encoder LoRA)")
    stage3_epochs: float = Field(2.0, gt=0, description="epochs of stage 3 (projector + both LoRAs)")
    max_train_samples: int | None = Field(
        None, gt=0, description="cap on training samples per epoch after oversampling (a CPU budget)"
    )
    batch_size: int = Field(16, gt=0, description="effective batch size")
    micro_batch_size: int = Field(4, gt=0, description="sequences per forward pass; accumulates to batch_size")
    gradient_checkpointing: bool = Field(False, description="trade compute for decoder activation memory")
    resume: bool = Field(True, description="continue after the last completed stage found in --output")
    unlabeled: bool = Field(
        False,
        description="treat every training window as normal (labeled anomalies go to the test split) and train on"
        " perturbed copies as the anomalous class; threshold by --max-fpr on validation normals (default 0.01)",
    )
    perturbations: str = Field(
        ",".join(DEFAULT_PERTURBATIONS), description="comma-separated perturbations for --unlabeled (also: swap)"
    )
    foreign_messages: Path | None = Field(
        None, description="text file of log lines from another source or system: insert/interrupt draw from it too"
    )
    test_anomalies: int | None = Field(
        None, gt=0, description="keep at most N real anomalies in the test split (seeded sample; shorter CPU eval)"
    )
    init_from: Path | None = Field(
        None, description="start from this checkpoint's adapters and projector instead of fresh ones"
    )

    recipe: Recipe | None = Field(
        None,
        description="preset sample counts and steps under the flags: paper (the defaults), own-logs (the CPU recipe of"
        " 'Train on your own logs'; the default with --from-service), smoke (a few steps, tests only)",
    )
    from_service: str | None = Field(
        None,
        description="train on a running service's sample of a source (--source): its kept normal windows and labeled"
        " windows (GET /sources/{source}/training-sample), read as the service reads the source (needs --unlabeled)",
    )
    source: str | None = Field(
        None, pattern=r"^[^\s#:]+$", description="--from-service: the source whose own model is trained"
    )
    token: SecretStr | None = Field(None, description="--from-service: the service's bearer token (auth_token)")
    register: bool = Field(
        False,
        description="--from-service: then register the checkpoint as the source's model (POST /models); the service"
        " must read --output at the same path (same machine or a shared volume)",
    )
    register_wait_s: float = Field(
        120.0, ge=0, description="--register: wait this long for every worker to report the model loaded"
    )

    @model_validator(mode="before")
    @classmethod
    def _recipe(cls, data: Any) -> Any:
        """A recipe's values fill the fields no flag or env var gave (the data holds only given ones here)."""
        if not isinstance(data, dict):
            return data
        name = data.get("recipe") or ("own-logs" if data.get("from_service") else "paper")
        return {**RECIPES.get(str(name), {}), **data}

    @field_validator("perturbations")
    @classmethod
    def _known_perturbations(cls, value: str) -> str:
        return ",".join(check_names([n.strip() for n in value.split(",") if n.strip()]))

    @model_validator(mode="after")
    def _unlabeled_threshold(self) -> TrainSettings:
        if self.dataset == "text" and not self.unlabeled:
            raise ValueError("--dataset text has no labels: train it with --unlabeled")
        if self.from_service is not None:
            if not self.source:
                raise ValueError("--from-service needs --source (the source whose model is trained)")
            if not self.unlabeled:
                raise ValueError("--from-service trains on windows judged normal: add --unlabeled")
            self.dataset = "service"
        elif self.register:
            raise ValueError("--register hands a model trained --from-service to that service: add --from-service")
        if self.unlabeled and self.max_fpr is None:
            self.max_fpr = UNLABELED_MAX_FPR
        return self

    @property
    def perturbation_names(self) -> list[str]:
        return self.perturbations.split(",")
