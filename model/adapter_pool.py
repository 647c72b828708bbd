"""Many checkpoints on one pair of backbones: each adds only its LoRA adapters, projector, threshold and vocabulary.

A checkpoint holds a few MB (adapters and projector); its backbones hold hundreds (minilm + smollm2: ~600 MB in
full precision). The pool loads each pair of backbones once, as a ``SharedBase`` whose adapted linears take any
number of named adapters (model/multi_lora.py: plain tensors per adapter, no module per adapter), and gives every
checkpoint a ``PooledModel``: a LogLLM whose encoder and decoder are ``AdapterView``s of the shared ones, with its
own projector, prompts, threshold and message cache. The adapters stay unmerged: merging folds one model into
weights that all models share (``--merge-lora`` is for one model).

``score_mixed`` scores the rows of several models of one base in one decoder pass per batch: every row names its
adapter (the base matmul once for all rows, each adapter's LoRA on its rows; the S-LoRA idea). Different backbones
load side by side while the parameters of everything loaded stay under ``max_bytes``; past it, loading refuses and
names the checkpoint and the figures.
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
from torch import nn
from transformers import BatchEncoding

from model.backbones import BackboneError, BackboneInfo, load_decoder, load_encoder, pick_device, set_torch_threads
from model.checkpoint import (
    CheckpointError,
    Manifest,
    _check_backbone,
    as_trained,
    load_trained_parts,
)
from model.checkpoint_files import PARTS, CheckpointFilesError, check_files
from model.encode_batches import token_batches
from model.logllm import LogLLM
from model.multi_lora import LoRAFileError, LoRAPair, MultiLoRALinear, RowAdapters, read_lora, wrap_linears
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
    """One encoder and one decoder in memory, with one named adapter per pooled model in their adapted linears.

    ``lock``: a forward sets which rows use which adapter (``RowAdapters``) for its length, and adding or deleting
    an adapter changes the layers, so forwards, loads and deletes on one base never overlap."""

    def __init__(self, key: BaseKey, encoder: nn.Module, decoder: nn.Module, tokenizers: tuple[Any, Any], nbytes: int):
        self.key = key
        self.encoder: Any = encoder
        self.decoder: Any = decoder
        self.encoder_rows = RowAdapters()
        self.decoder_rows = RowAdapters()
        self.encoder_tokenizer, self.decoder_tokenizer = tokenizers
        self.nbytes = nbytes  # the backbones alone
        self.lock = threading.RLock()
        self.adapters: dict[str, int] = {}  # name -> bytes of its LoRA tensors

    def attach(self, name: str, directory: Path) -> None:
        """Both adapters read and checked before either is installed: a bad file leaves the base as it was."""
        try:
            encoder = read_lora(directory / "encoder_lora", self.encoder)
            decoder = read_lora(directory / "decoder_lora", self.decoder)
        except LoRAFileError as exc:
            raise CheckpointError(f"checkpoint {directory}: {exc}") from None
        with self.lock:
            for model, rows, pairs in (
                (self.encoder, self.encoder_rows, encoder),
                (self.decoder, self.decoder_rows, decoder),
            ):
                for layer, pair in zip(wrap_linears(model, list(pairs), rows), pairs.values(), strict=True):
                    layer.adapters[name] = pair
            self.adapters[name] = sum(p.nbytes for p in itertools.chain(encoder.values(), decoder.values()))

    def detach(self, name: str) -> None:
        with self.lock:
            self.adapters.pop(name, None)
            for layer in self._layers():
                layer.adapters.pop(name, None)

    def _layers(self) -> Iterator[MultiLoRALinear]:
        for model in (self.encoder, self.decoder):
            yield from (m for m in model.modules() if isinstance(m, MultiLoRALinear))

    def adapter_bytes(self, name: str) -> int:
        return self.adapters.get(name, 0)

    def lora_pairs(self, name: str) -> list[LoRAPair]:
        """The adapter's tensors in every layer (tests check they are its own and the base's are shared)."""
        return [layer.adapters[name] for layer in self._layers() if name in layer.adapters]


class AdapterView(nn.Module):
    """A shared model seen through one adapter: every forward routes all its rows to it, so no active adapter is
    switched and the models of one base can be scored in any order, from any thread (under the base's lock)."""

    def __init__(self, shared: nn.Module, adapter: str, rows: RowAdapters, lock: threading.RLock) -> None:
        super().__init__()
        self.shared: Any = shared
        self.adapter = adapter
        self.rows = rows
        self.base_lock = lock

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with self.base_lock, self.rows.use_one(self.adapter):
            return self.shared(*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        with self.base_lock, self.rows.use_one(self.adapter):
            return self.shared.generate(*args, **kwargs)

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
        base = SharedBase(key, encoder.eval(), decoder.eval(), (enc_tok, dec_tok), nbytes)
        base.attach(name, directory)
        self._bases[key] = base
        return base

    def _view(self, base: SharedBase, name: str, directory: Path, manifest: Manifest) -> PooledModel:
        encoder = AdapterView(base.encoder, name, base.encoder_rows, base.lock)
        decoder = AdapterView(base.decoder, name, base.decoder_rows, base.lock)
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


def _encode_together(base: SharedBase, wanted: Sequence[tuple[PooledModel, Sequence[str]]]) -> None:
    """The messages each model's cache lacks, encoded in shared encoder passes (each row through its model's
    adapter, then its model's projector) and cached, so building the rows encodes nothing. One pass per model
    instead cost the mixed batch half its speed (bench/models.py); without a cache each model encodes alone."""
    todo = [
        (model, message)
        for model, messages in wanted
        if model.model.cache.capacity > 0
        for message in dict.fromkeys(messages)
        if message not in model.model.cache
    ]
    limits: dict[int, list[tuple[PooledModel, str]]] = {}  # messages are cut at each model's own token limit
    for model, message in todo:
        limits.setdefault(model.model.max_message_tokens, []).append((model, message))
    for limit, items in limits.items():
        texts = [message for _, message in items]
        for batch, tokens in token_batches(base.encoder_tokenizer, texts, limit, todo[0][0].model.encode_batch_size):
            _encode_chunk(base, [items[i] for i in batch], tokens)


def _encode_chunk(base: SharedBase, chunk: Sequence[tuple[PooledModel, str]], tokens: BatchEncoding) -> None:
    device = chunk[0][0].model.device
    with base.encoder_rows.use([model.adapter for model, _ in chunk], device):
        pooled = base.encoder(**tokens.to(device)).pooler_output
    index: dict[PooledModel, list[int]] = {}
    for i, (model, _) in enumerate(chunk):
        index.setdefault(model, []).append(i)
    for model, rows in index.items():
        projector = model.model.projector
        projected = projector(pooled[torch.tensor(rows, device=pooled.device)].to(projector.weight.dtype))
        for i, vector in zip(rows, projected, strict=True):
            model.model.cache.put(chunk[i][1], vector.detach())


def _score_rows(base: SharedBase, rows: Sequence[tuple[PooledModel, tuple[str, ...]]]) -> list[float]:
    """One decoder pass: each model builds its rows (its encoder adapter, projector, prompts), then all rows are
    left-padded together and every row names its decoder adapter."""
    groups: dict[PooledModel, list[int]] = {}
    for i, (model, _) in enumerate(rows):
        groups.setdefault(model, []).append(i)
    _encode_together(base, [(model, [m for i in index for m in rows[i][1]]) for model, index in groups.items()])
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
    with base.decoder_rows.use(names, sample.device):
        logits = base.decoder(
            inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids, logits_to_keep=1
        ).logits[:, -1, :]
    every = torch.arange(len(rows), device=logits.device)
    pair = torch.stack([logits[every, normal], logits[every, anomalous]], dim=-1).float()
    return [float(x) for x in pair.softmax(-1)[:, 1].tolist()]
