"""Build a LogLLM from backbones and save/load checkpoints.

A checkpoint is a directory: ``manifest.json`` (backbones with fingerprints, dims, prompts, threshold, preprocessing
version, training config, metrics, how it reads logs: model/reading.py), ``projector.safetensors`` and the peft
LoRA adapters ``decoder_lora/`` and ``encoder_lora/``. It holds only the small trained parts (a few MB); the
backbones come from their names, and loading refuses a checkpoint whose backbones do not match what is installed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from torch import nn

from model import preprocess
from model.backbones import BackboneInfo, load_decoder, load_encoder, pick_device, set_torch_threads
from model.logllm import LogLLM, Prompts
from model.settings import ModelSettings

FORMAT = "logllm-checkpoint/1"
MANIFEST = "manifest.json"
log = logging.getLogger(__name__)
PRECISION_NAMES = {"nf4": "4-bit NF4", "full": "full precision"}


class CheckpointError(RuntimeError):
    """The checkpoint is missing, malformed, or was trained on other backbones."""


def decoder_lora_config() -> LoraConfig:
    """The paper's decoder LoRA: r=8, alpha=16, dropout 0.1 on q_proj and v_proj."""
    return LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")


def encoder_lora_config() -> LoraConfig:
    """The paper's encoder LoRA: r=4, alpha=32, dropout 0.01 on query and value."""
    return LoraConfig(r=4, lora_alpha=32, lora_dropout=0.01, target_modules=["query", "value"])


@dataclass
class Manifest:
    """What a checkpoint says about itself; written as JSON."""

    encoder: BackboneInfo
    decoder: BackboneInfo
    prompts: Prompts = field(default_factory=Prompts)
    threshold: float = 0.5
    preprocess_version: str = preprocess.PREPROCESS_VERSION
    max_messages: int = 128
    max_message_tokens: int = 100
    decoder_precision: str = "full"  # "nf4" when the adapters were trained on a 4-bit decoder (QLoRA)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    vocabulary: dict[str, Any] = field(default_factory=dict)  # {"file", "sha256", ...}: model/vocab.py writes it
    reading: dict[str, Any] = field(default_factory=dict)  # log format and windowing trained with (model/reading.py)
    version: str = "untrained"
    created_at: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": self.version,
            "created_at": self.created_at,
            "encoder": self.encoder.to_json(),
            "decoder": self.decoder.to_json(),
            "prompts": self.prompts.to_json(),
            "threshold": self.threshold,
            "preprocess_version": self.preprocess_version,
            "max_messages": self.max_messages,
            "max_message_tokens": self.max_message_tokens,
            "decoder_precision": self.decoder_precision,
            "training": self.training,
            "metrics": self.metrics,
            **({"vocabulary": self.vocabulary} if self.vocabulary else {}),
            **({"reading": self.reading} if self.reading else {}),
        }

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST
        if not path.is_file():
            raise CheckpointError(f"{directory} is not a logllm checkpoint: {MANIFEST} is missing")
        try:
            raw = json.loads(path.read_text())
            if raw.get("format") != FORMAT:
                raise CheckpointError(f"{path}: format {raw.get('format')!r}, expected {FORMAT!r}")
            return cls(
                encoder=BackboneInfo(**raw["encoder"]),
                decoder=BackboneInfo(**raw["decoder"]),
                prompts=Prompts(**raw["prompts"]),
                threshold=float(raw["threshold"]),
                preprocess_version=str(raw["preprocess_version"]),
                max_messages=int(raw["max_messages"]),
                max_message_tokens=int(raw["max_message_tokens"]),
                decoder_precision=str(raw.get("decoder_precision", "full")),
                training=dict(raw.get("training", {})),
                metrics=dict(raw.get("metrics", {})),
                vocabulary=dict(raw.get("vocabulary", {})),
                reading=dict(raw.get("reading", {})),
                version=str(raw.get("version", "unknown")),
                created_at=str(raw.get("created_at", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: malformed manifest ({exc})") from exc


def build_model(
    settings: ModelSettings | None = None,
    *,
    encoder: str | None = None,
    decoder: str | None = None,
    prompts: Prompts | None = None,
    fresh_lora: bool = True,
) -> tuple[LogLLM, BackboneInfo, BackboneInfo]:
    """A LogLLM on the configured backbones; ``fresh_lora`` attaches new (identity) LoRA adapters for training."""
    settings = settings or ModelSettings()
    device = pick_device(settings.device)
    if fresh_lora and settings.quantize == "int8":
        raise CheckpointError("quantize=int8 is for scoring only; train with 'none', 'auto' or '4bit'")
    enc: Any
    dec: Any
    enc, enc_tok, enc_info = load_encoder(encoder or settings.encoder, device)
    dec, dec_tok, dec_info = load_decoder(decoder or settings.decoder, device, settings.cache_dir, settings.quantize)
    if fresh_lora:
        enc = get_peft_model(enc, encoder_lora_config())
        dec = get_peft_model(dec, decoder_lora_config())
    model = LogLLM(enc, enc_tok, dec, dec_tok, prompts=prompts, cache_size=settings.embedding_cache_size)
    return model, enc_info, dec_info


def decoder_precision(model: LogLLM) -> str:
    """'nf4' for a 4-bit decoder (attribute lookups pass through a peft wrapper), else 'full'."""
    return "nf4" if getattr(model.decoder, "is_loaded_in_4bit", False) else "full"


def _weights_digest(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*.safetensors")):
        digest.update(path.relative_to(directory).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def save_checkpoint(model: LogLLM, directory: Path, manifest: Manifest) -> Manifest:
    """Write projector, adapters and manifest; the version is a digest of the trained weights."""
    directory.mkdir(parents=True, exist_ok=True)
    projector = {k: v.detach().float().cpu().contiguous() for k, v in model.projector.state_dict().items()}
    save_file(projector, str(directory / "projector.safetensors"))
    for name, module in (("decoder_lora", model.decoder), ("encoder_lora", model.encoder)):
        if not isinstance(module, PeftModel):
            raise CheckpointError(f"cannot save {name}: the model has no LoRA adapter on it")
        module.save_pretrained(str(directory / name))
    manifest.version = f"{manifest.encoder.name}+{manifest.decoder.name}-{_weights_digest(directory)}"
    manifest.threshold = model.threshold
    manifest.decoder_precision = decoder_precision(model)
    manifest.created_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    (directory / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
    return manifest


def _check_backbone(kind: str, recorded: BackboneInfo, installed: BackboneInfo) -> None:
    if (recorded.fingerprint, recorded.hidden_size) != (installed.fingerprint, installed.hidden_size):
        raise CheckpointError(
            f"checkpoint {kind} was trained on {recorded.name} ({recorded.fingerprint}, hidden {recorded.hidden_size})"
            f" but {installed.name} is {installed.fingerprint}, hidden {installed.hidden_size}; install the"
            f" recorded {kind} or retrain"
        )


def load_checkpoint(
    directory: Path | str,
    settings: ModelSettings | None = None,
    *,
    encoder: str | None = None,
    decoder: str | None = None,
    trainable: bool = False,
    spare_cores: int = 0,
) -> tuple[LogLLM, Manifest]:
    """Load a checkpoint onto the backbones its manifest names (or the given overrides, if they match).

    To score (``trainable=False``) the adapters are folded into the weights and, with ``quantize=int8``, the decoder's
    linears become int8; to train they stay separate. ``spare_cores``: cores torch leaves free when
    ``torch_threads`` is 0 (auto); the service keeps one for HTTP.
    """
    directory = Path(directory)
    settings = settings or ModelSettings()
    if trainable and settings.quantize == "int8":
        raise CheckpointError("quantize=int8 is for scoring only; load with 'none', 'auto' or '4bit' to train")
    set_torch_threads(settings.torch_threads, spare_cores)
    manifest = Manifest.read(directory)
    if manifest.preprocess_version != preprocess.PREPROCESS_VERSION:
        raise CheckpointError(
            f"{directory}: trained with preprocessing version {manifest.preprocess_version}, this logllm has"
            f" {preprocess.PREPROCESS_VERSION}; retrain or install the matching logllm"
        )
    model, enc_info, dec_info = build_model(
        as_trained(settings, manifest),
        encoder=encoder or manifest.encoder.name,
        decoder=decoder or manifest.decoder.name,
        prompts=manifest.prompts,
        fresh_lora=False,
    )
    _check_backbone("encoder", manifest.encoder, enc_info)
    _check_backbone("decoder", manifest.decoder, dec_info)
    loaded = decoder_precision(model)
    if loaded != manifest.decoder_precision:
        log.warning(
            "%s was trained on a decoder in %s and is loaded in %s: scores shift a little from those its threshold"
            " was picked on; --quantize %s loads it as trained",
            directory, PRECISION_NAMES.get(manifest.decoder_precision, manifest.decoder_precision),
            PRECISION_NAMES[loaded],
            "4bit" if manifest.decoder_precision == "nf4" else "none",
        )  # fmt: skip
    model.encoder = PeftModel.from_pretrained(model.encoder, str(directory / "encoder_lora"), is_trainable=trainable)
    model.decoder = PeftModel.from_pretrained(model.decoder, str(directory / "decoder_lora"), is_trainable=trainable)
    load_trained_parts(model, directory, manifest)
    if not trainable:
        prepare_for_scoring(model, merge_lora=settings.merge_lora, int8=settings.quantize == "int8")
    model.train(trainable)
    return model, manifest


def load_trained_parts(model: LogLLM, directory: Path, manifest: Manifest) -> None:
    """The projector's weights and what the manifest says of scoring: threshold, limits, version."""
    state = load_file(str(directory / "projector.safetensors"))
    model.projector.load_state_dict({k: v.to(model.device) for k, v in state.items()})
    model.threshold = manifest.threshold
    model.max_messages = manifest.max_messages
    model.max_message_tokens = manifest.max_message_tokens
    model.version = manifest.version


def as_trained(settings: ModelSettings, manifest: Manifest) -> ModelSettings:
    """``quantize=auto`` loads a full-precision checkpoint in full precision, on a GPU too.

    Auto means NF4 on CUDA, so a full-precision checkpoint served on a GPU drifted from the scores its threshold
    was picked on (the shipped one: FPR 0.15 instead of at most 0.10 on the 40 sessions of its test, on an H200).
    A QLoRA checkpoint keeps auto's rule: NF4 on CUDA as trained, full precision on a CPU, where NF4 is slow (a
    warning says so). An explicit ``quantize`` stays as given.
    """
    if settings.quantize == "auto" and manifest.decoder_precision == "full":
        return settings.model_copy(update={"quantize": "none"})
    return settings


def prepare_for_scoring(model: LogLLM, *, merge_lora: bool, int8: bool) -> None:
    """Fold LoRA into the weights (W + BA once, instead of two extra matmuls per adapted layer on every forward).

    A 4-bit decoder keeps both adapters: merging would round its own into NF4, and its bf16 compute turns even the
    ~1e-7 change that merging the encoder makes to the message vectors into score shifts near 1e-2 (measured on a
    QLoRA checkpoint: 0.1476 became 0.1383), so it would no longer score as trained. ``int8``: dynamic int8 linears
    in the decoder's blocks (CPU only), which is where scoring spends its time."""
    if merge_lora and decoder_precision(model) != "nf4":
        if isinstance(model.encoder, PeftModel):
            model.encoder = model.encoder.merge_and_unload()
        if isinstance(model.decoder, PeftModel):
            model.decoder = model.decoder.merge_and_unload()
    if int8:
        if model.device.type != "cpu" or decoder_precision(model) == "nf4":
            raise CheckpointError(f"quantize=int8 runs on a full-precision CPU decoder, not on {model.device}")
        # the transformer blocks only: an int8 head shifts the two answer logits far more than int8 blocks do
        body = model.decoder.get_decoder()
        torch.ao.quantization.quantize_dynamic(body, {nn.Linear}, dtype=torch.qint8, inplace=True)
