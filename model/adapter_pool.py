"""Many checkpoints on one pair of backbones: each adds only its LoRA adapters, projector, threshold and vocabulary.

A checkpoint holds a few MB (adapters and projector); its backbones hold hundreds (minilm + smollm2: ~600 MB in
full precision). The pool loads each pair of backbones once, as a ``SharedBase`` (both wrapped by peft, one named
adapter per checkpoint), and gives every checkpoint a ``PooledModel``: a LogLLM whose encoder and decoder are
``AdapterView``s of the shared ones, with its own projector, prompts, threshold and message cache. The adapters
stay unmerged: merging folds one model into weights that all models share (``--merge-lora`` is for one model).

``score_mixed`` scores the rows of several models of one base in one decoder pass per batch: every row names its
adapter (peft's mixed adapter batches: the base matmul once for all rows, each adapter's LoRA on its rows; the
S-LoRA idea). Different backbones load side by side while the parameters of everything loaded stay under
``max_bytes``; past it, loading refuses and names the checkpoint and the figures.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from torch import nn

from model.backbones import BackboneError, BackboneInfo, load_decoder, load_encoder, pick_device, set_torch_threads
from model.checkpoint import (
    CheckpointError,
    Manifest,
    _check_backbone,
    as_trained,
    load_trained_parts,
)
from model.checkpoint_files import PARTS, CheckpointFilesError, check_files
from model.logllm import LogLLM
from model.settings import ModelSettings
from model.vocab import Vocabulary, load_vocabulary

log = logging.getLogger(__name__)
MIB = 1 << 20


@dataclass(frozen=True)
class BaseKey:
    """Checkpoints with equal keys share one loaded encoder and decoder."""

    encoder: BackboneInfo
    decoder: BackboneInfo
    quantize: str

    def describe(self) -> str:
        return f"{self.encoder.name}+{self.decoder.name}"


def _tensor_bytes(tensors: Iterator[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def module_bytes(module: nn.Module) -> int:
    return _tensor_bytes(itertools.chain(module.parameters(), module.buffers()))


class SharedBase:
    """One encoder and one decoder in memory, wrapped by peft, with one named adapter per pooled model.

    ``lock``: peft's mixed batches hook every LoRA layer for the length of one call, and adding or deleting an
    adapter changes those layers, so forwards, loads and deletes on one base never overlap."""

    def __init__(self, key: BaseKey, encoder: PeftModel, decoder: PeftModel, tokenizers: tuple[Any, Any], nbytes: int):
        self.key = key
        self.encoder: Any = encoder
        self.decoder: Any = decoder
        self.encoder_tokenizer, self.decoder_tokenizer = tokenizers
        self.nbytes = nbytes  # the backbones alone
        self.lock = threading.RLock()
        self.adapters: set[str] = set()

    def attach(self, name: str, directory: Path) -> None:
        with self.lock:
            self.encoder.load_adapter(str(directory / "encoder_lora"), adapter_name=name)
            try:
                self.decoder.load_adapter(str(directory / "decoder_lora"), adapter_name=name)
            except Exception:
                self.encoder.delete_adapter(name)
                raise
            self.adapters.add(name)
            self.encoder.eval()
            self.decoder.eval()

    def detach(self, name: str) -> None:
        with self.lock:
            self.adapters.discard(name)
            if not self.adapters:
                return  # the pool drops the whole base
            for shared in (self.encoder, self.decoder):
                if name in shared.peft_config:
                    if shared.active_adapter == name:  # peft only hooks mixed batches while an adapter is active
                        shared.set_adapter(next(iter(self.adapters)))
                    shared.delete_adapter(name)

    def adapter_bytes(self, name: str) -> int:
        marker = f".{name}."
        params = itertools.chain(self.encoder.named_parameters(), self.decoder.named_parameters())
        return _tensor_bytes(p for n, p in params if marker in n)


class AdapterView(nn.Module):
    """A shared peft model seen through one adapter: every forward names it for each row, so no active adapter is
    switched and the models of one base can be scored in any order, from any thread (under the base's lock)."""

    def __init__(self, shared: nn.Module, adapter: str, lock: threading.RLock) -> None:
        super().__init__()
        self.shared = shared
        self.adapter = adapter
        self.base_lock = lock

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        first = kwargs.get("input_ids", kwargs.get("inputs_embeds"))
        rows = int(first.shape[0]) if first is not None else int(args[0].shape[0])
        with self.base_lock:
            return self.shared(*args, adapter_names=[self.adapter] * rows, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["shared"], name)


@dataclass(eq=False)
class PooledModel:
    """One checkpoint in the pool; a Scorer on its own (``score``, ``threshold``, ``version``)."""

    directory: Path
    manifest: Manifest
    adapter: str
    base: SharedBase
    model: LogLLM
    vocabulary: Vocabulary | None
    nbytes: int  # its adapters and projector
    released: bool = field(default=False)

    @property
    def threshold(self) -> float:
        return float(self.model.threshold)

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def max_messages(self) -> int:
        return self.model.max_messages

    def score(self, sequences: Sequence[Sequence[str]], batch_size: int = 16) -> list[float]:
        return self.model.score(sequences, batch_size=batch_size)


def check_parts(directory: Path) -> Manifest:
    """The manifest and every file loading reads, so a partial copy is named before anything is loaded."""
    try:
        check_files(directory)
    except CheckpointFilesError as exc:
        raise CheckpointError(str(exc)) from None
    return Manifest.read(directory)


class AdapterPool:
    """Loads checkpoints onto shared backbones (``load``), drops them (``release``), within ``max_bytes``."""

    def __init__(self, settings: ModelSettings, max_bytes: int, spare_cores: int = 0) -> None:
        if settings.quantize == "int8":
            raise CheckpointError(
                "quantize=int8 quantizes one model's merged weights; models per source share unmerged backbones:"
                " use quantize none or auto with --models"
            )
        self.settings = settings
        self.max_bytes = max_bytes
        self.device = pick_device(settings.device)
        set_torch_threads(settings.torch_threads, spare_cores)
        self._bases: dict[BaseKey, SharedBase] = {}
        self._models: set[PooledModel] = set()
        self._names = itertools.count()
        self._lock = threading.Lock()  # one load or release at a time

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self._bases.values()) + sum(m.nbytes for m in self._models)

    def bases(self) -> list[SharedBase]:
        return list(self._bases.values())

    def load(self, directory: Path | str) -> PooledModel:
        """The checkpoint as a PooledModel; CheckpointError (naming it) for a missing, partial or corrupt one, other
        backbones past the memory limit, or backbones that differ from what is installed."""
        directory = Path(directory).resolve()
        manifest = check_parts(directory)
        settings = as_trained(self.settings, manifest)
        key = BaseKey(manifest.encoder, manifest.decoder, settings.quantize)
        with self._lock:
            name = f"m{next(self._names)}"
            base = self._bases.get(key)
            try:
                if base is None:
                    base = self._new_base(key, settings, directory, name)
                else:
                    self._check_room(directory, sum((directory / p).stat().st_size for p in PARTS), "its adapters")
                    base.attach(name, directory)
                model = self._view(base, name, directory, manifest)
            except Exception as exc:  # safetensors, peft and torch raise their own kinds; each one means "not loaded"
                if base is not None and name in base.adapters:
                    self._drop(base, name)
                if isinstance(exc, CheckpointError):
                    raise
                raise CheckpointError(f"checkpoint {directory} failed to load: {type(exc).__name__}: {exc}") from exc
            self._models.add(model)
        log.info("loaded %s (%s) on %s; pool %.0f MiB", directory, manifest.version, key.describe(), self.nbytes / MIB)
        return model

    def release(self, model: PooledModel) -> None:
        """Drop a model; its base goes with its last model. Waits for a forward pass on the base to finish."""
        with self._lock:
            if model.released:
                return
            model.released = True
            self._models.discard(model)
            self._drop(model.base, model.adapter)
            model.model.cache.clear()

    def _drop(self, base: SharedBase, name: str) -> None:
        base.detach(name)
        if not base.adapters:
            self._bases.pop(base.key, None)

    def _check_room(self, directory: Path, more: int, what: str) -> None:
        if self.nbytes + more > self.max_bytes:
            raise CheckpointError(
                f"checkpoint {directory}: {what} need {more / MIB:.0f} MiB and the loaded models hold"
                f" {self.nbytes / MIB:.0f} MiB of the {self.max_bytes / MIB:.0f} MiB limit (models_max_memory_mb);"
                " remove a model, share backbones or raise the limit"
            )

    def _new_base(self, key: BaseKey, settings: ModelSettings, directory: Path, name: str) -> SharedBase:
        """Load the backbones (refused past the limit) and wrap them with the checkpoint's adapters as ``name``."""
        self._check_room(directory, 0, f"backbones {key.describe()}")
        try:
            encoder, enc_tok, enc_info = load_encoder(key.encoder.name, self.device)
            decoder, dec_tok, dec_info = load_decoder(
                key.decoder.name, self.device, settings.cache_dir, settings.quantize
            )
        except BackboneError as exc:
            raise CheckpointError(f"checkpoint {directory}: {exc}") from exc
        _check_backbone("encoder", key.encoder, enc_info)
        _check_backbone("decoder", key.decoder, dec_info)
        nbytes = module_bytes(encoder) + module_bytes(decoder)
        self._check_room(directory, nbytes, f"backbones {key.describe()}")
        shared_encoder = PeftModel.from_pretrained(encoder, str(directory / "encoder_lora"), adapter_name=name)
        shared_decoder = PeftModel.from_pretrained(decoder, str(directory / "decoder_lora"), adapter_name=name)
        base = SharedBase(key, shared_encoder, shared_decoder, (enc_tok, dec_tok), nbytes)
        base.adapters.add(name)
        base.encoder.eval()
        base.decoder.eval()
        self._bases[key] = base
        return base

    def _view(self, base: SharedBase, name: str, directory: Path, manifest: Manifest) -> PooledModel:
        encoder = AdapterView(base.encoder, name, base.lock)
        decoder = AdapterView(base.decoder, name, base.lock)
        model = LogLLM(
            encoder,  # type: ignore[arg-type]
            base.encoder_tokenizer,
            decoder,  # type: ignore[arg-type]
            base.decoder_tokenizer,
            prompts=manifest.prompts,
            cache_size=self.settings.embedding_cache_size,
        )
        load_trained_parts(model, directory, manifest)
        model.eval()
        vocabulary = load_vocabulary(directory)
        nbytes = base.adapter_bytes(name) + module_bytes(model.projector)
        return PooledModel(directory, manifest, name, base, model, vocabulary, nbytes)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@torch.no_grad()
def score_mixed(items: Sequence[tuple[PooledModel, Sequence[str]]], batch_size: int = 16) -> list[float]:
    """P(anomalous) of each (model, sequence): rows of all models of one base share each decoder pass.

    Like ``LogLLM.score``: equal (model, sequence) pairs are scored once and batches are cut by length."""
    keys = [(m, tuple(seq[: m.max_messages])) for m, seq in items]
    by_base: dict[SharedBase, list[tuple[PooledModel, tuple[str, ...]]]] = {}
    for key in dict.fromkeys(keys):
        by_base.setdefault(key[0].base, []).append(key)
    scored: dict[tuple[PooledModel, tuple[str, ...]], float] = {}
    for base, distinct in by_base.items():
        distinct.sort(key=lambda k: len(k[1]))
        with base.lock:
            for chunk in _chunks(distinct, batch_size):
                scored.update(zip(chunk, _score_rows(base, chunk), strict=True))
    return [scored[key] for key in keys]


def _score_rows(base: SharedBase, rows: Sequence[tuple[PooledModel, tuple[str, ...]]]) -> list[float]:
    """One decoder pass: each model builds its rows (its encoder adapter, projector, prompts), then all rows are
    left-padded together and every row names its decoder adapter."""
    groups: dict[PooledModel, list[int]] = {}
    for i, (model, _) in enumerate(rows):
        groups.setdefault(model, []).append(i)
    built = [(model, index, model.model.scoring_batch([rows[i][1] for i in index])) for model, index in groups.items()]
    width = max(batch.embeds.shape[1] for _, _, batch in built)
    sample = built[0][2].embeds
    embeds = torch.zeros(len(rows), width, sample.shape[2], dtype=sample.dtype, device=sample.device)
    mask = torch.zeros(len(rows), width, dtype=torch.long, device=sample.device)
    names = [""] * len(rows)
    normal = [0] * len(rows)
    anomalous = [0] * len(rows)
    for model, index, batch in built:
        at = torch.tensor(index, device=sample.device)
        embeds[at, width - batch.embeds.shape[1] :] = batch.embeds
        mask[at, width - batch.embeds.shape[1] :] = batch.attention_mask
        for i in index:
            names[i], normal[i], anomalous[i] = model.adapter, model.model.normal_token, model.model.anomalous_token
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = base.decoder(
        inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids, logits_to_keep=1, adapter_names=names
    ).logits[:, -1, :]
    every = torch.arange(len(rows), device=logits.device)
    pair = torch.stack([logits[every, normal], logits[every, anomalous]], dim=-1).float()
    return [float(x) for x in pair.softmax(-1)[:, 1].tolist()]
