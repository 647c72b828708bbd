"""LoRA adapters of many models on one base model, each row of a batch through its own adapter (S-LoRA's idea).

The adapted linears of a shared backbone become ``MultiLoRALinear``s: the base matmul once for the whole batch,
then each adapter's ``x @ A^T @ B^T * scaling`` on its rows only (A^T and scaling x B^T are what is kept). An adapter
is nothing but its tensors, one ``LoRAPair`` per adapted linear, read from the files peft saves
(``adapter_config.json`` + ``adapter_model.safetensors``), so a model costs its weights and registering one touches
only its own layers.

peft's mixed adapter batches (``adapter_names``) computed the same sums, but built three modules per adapted layer
per adapter (lora_A, lora_B, dropout: ~0.7 MiB of Python objects per model on minilm + smollm2, a quarter on top of
the 2.7 MiB of weights), and each ``load_adapter`` walked every module of the model, those of all adapters loaded
before included: registering got slower with every model. Only plain LoRA is read (what ``logllm train`` writes);
DoRA, rank patterns and the other peft variants are refused by name.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

PREFIX = "base_model.model."
SUFFIXES = {".lora_A.weight": "a", ".lora_B.weight": "b"}
# peft settings that change what an adapter computes, which this module does not implement: refused when set to
# anything but their 'off' (None: any empty value)
UNSUPPORTED = {
    "use_dora": None, "lora_bias": None, "fan_in_fan_out": None, "bias": "none", "rank_pattern": None,
    "alpha_pattern": None, "modules_to_save": None, "trainable_token_indices": None, "target_parameters": None,
    "use_qalora": None, "use_bdlora": None, "alora_invocation_tokens": None, "arrow_config": None,
    "kasa_config": None, "monteclora_config": None, "velora_config": None,
}  # fmt: skip


class LoRAFileError(ValueError):
    """An adapter directory that cannot be read as plain LoRA on this base; the message names file and key."""


@dataclass(frozen=True)
class LoRAPair:
    """One adapter on one linear, kept in the layout the forward multiplies with: ``a`` is A transposed (in x r),
    ``b`` is B transposed times the adapter's scaling (r x out), so a row's delta is ``x @ a @ b``: no transpose,
    no scaling pass over the output in any forward."""

    a: Tensor
    b: Tensor

    @property
    def nbytes(self) -> int:
        return self.a.numel() * self.a.element_size() + self.b.numel() * self.b.element_size()


class RowAdapters:
    """Which adapter each row of the forward in progress uses. Set only under the shared base's lock (``use``), read
    by every MultiLoRALinear of one model: ``names`` the distinct adapters of the rows and ``positions`` each row's
    place in them when the rows use more than one, ``groups`` (adapter, row indices or None for all rows) for the
    layers that cannot gather (an adapter missing there, or ranks that differ)."""

    def __init__(self) -> None:
        self.groups: list[tuple[str, Tensor | None]] = []
        self.names: Sequence[str] = ()
        self.positions: list[int] = []

    @contextmanager
    def use(self, names: Sequence[str], device: torch.device) -> Iterator[None]:
        previous = self.groups, self.names, self.positions
        rows: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            rows.setdefault(name, []).append(i)
        if len(rows) == 1:
            self.groups, self.names, self.positions = [(names[0], None)], (), []
        else:
            self.groups = [(name, torch.tensor(index, device=device)) for name, index in rows.items()]
            place = {name: k for k, name in enumerate(rows)}
            self.names, self.positions = list(rows), [place[name] for name in names]
        try:
            yield
        finally:
            self.groups, self.names, self.positions = previous

    @contextmanager
    def use_one(self, name: str) -> Iterator[None]:
        """Every row, whatever the batch size (generate's later steps included), through ``name``."""
        previous = self.groups, self.names, self.positions
        self.groups, self.names, self.positions = [(name, None)], (), []
        try:
            yield
        finally:
            self.groups, self.names, self.positions = previous


class MultiLoRALinear(nn.Module):
    """A base linear plus any number of named LoRA adapters; the adapters are plain tensors, not modules."""

    def __init__(self, base_layer: nn.Module, routing: RowAdapters) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.routing = routing
        self.adapters: dict[str, LoRAPair] = {}

    def forward(self, x: Tensor) -> Tensor:
        out = self.base_layer(x)
        if self.routing.positions:
            pairs = [self.adapters.get(name) for name in self.routing.names]
            present = [p for p in pairs if p]
            if len(present) == len(pairs) and len({(p.a.shape, p.a.dtype) for p in present}) == 1:
                return self._gathered(x, out, [present[k] for k in self.routing.positions])
        for name, rows in self.routing.groups:
            pair = self.adapters.get(name)
            if pair is None:
                continue
            if rows is None:
                _add_product(out, x.reshape(-1, x.shape[-1]).to(pair.a.dtype) @ pair.a, pair.b)
            else:
                out.index_add_(0, rows, (x[rows].to(pair.a.dtype) @ pair.a @ pair.b).to(out.dtype))
        return out

    @staticmethod
    def _gathered(x: Tensor, out: Tensor, pairs: list[LoRAPair]) -> Tensor:
        """Rows of many adapters of one shape (``pairs``: each row's): each row's A and B stacked, two batched
        matmuls for all rows, the second adding into the base's output. With 16 windows of 16 models (smollm2,
        messages cached, 2 cores) the mixed pass took as long as one model's (22-26 s against 23-27 s under load),
        a loop over the adapters (peft's way) 36-54 s; per layer (16 rows x 44 tokens, q_proj 576 -> 576, r 8)
        rows of 2, 4 or 16 adapters took 1.4-1.45 ms gathered, 1.65-1.8 ms grouped by adapter (each group's rows
        picked, multiplied, added back), the base matmul 1.25. Few tensor ops per layer: on a loaded machine each
        one waits for both cores, whatever its size."""
        a = torch.stack([p.a for p in pairs])  # rows x in x r
        b = torch.stack([p.b for p in pairs])  # rows x r x out
        _add_product(out, torch.bmm(x.reshape(x.shape[0], -1, x.shape[-1]).to(a.dtype), a), b)
        return out


def _add_product(out: Tensor, down: Tensor, b: Tensor) -> None:
    """``out += down @ b`` (``down``: the rows, flattened or not, times A), in place where ``out`` allows it: no
    delta the size of the output is made and added."""
    if out.dtype != b.dtype or not out.is_contiguous():
        out.add_((down @ b).view(out.shape).to(out.dtype))
    elif down.dim() == 3:
        out.view(down.shape[0], down.shape[1], -1).baddbmm_(down, b)
    else:
        out.view(down.shape[0], -1).addmm_(down, b)


def wrap_linears(model: nn.Module, paths: Sequence[str], routing: RowAdapters) -> list[MultiLoRALinear]:
    """Replace each linear at ``paths`` (module names, ``model.layers.0.self_attn.q_proj``) by a MultiLoRALinear;
    ones already wrapped are returned as they are."""
    wrapped = []
    for path in paths:
        module = model.get_submodule(path)
        if not isinstance(module, MultiLoRALinear):
            if not isinstance(module, nn.Linear):
                raise LoRAFileError(f"{path} is a {type(module).__name__}, not a linear layer")
            parent_path, _, child = path.rpartition(".")
            module = MultiLoRALinear(module, routing)
            setattr(model.get_submodule(parent_path) if parent_path else model, child, module)
        wrapped.append(module)
    return wrapped


def read_lora(directory: Path, model: nn.Module) -> dict[str, LoRAPair]:
    """The adapter in ``directory`` as module path -> LoRAPair, checked against ``model``'s linears (shapes and
    names) and on its device; nothing of ``model`` changes."""
    config_path = directory / "adapter_config.json"
    try:
        config: dict[str, Any] = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise LoRAFileError(f"{config_path}: cannot read ({exc})") from None
    if config.get("peft_type") != "LORA":
        raise LoRAFileError(f"{config_path}: peft_type {config.get('peft_type')!r}, expected 'LORA'")
    for key, plain in UNSUPPORTED.items():
        if config.get(key) and config[key] != plain:
            raise LoRAFileError(f"{config_path}: {key}={config[key]!r} is not supported with models per source")
    try:
        rank, alpha = int(config["r"]), float(config["lora_alpha"])
    except (KeyError, TypeError, ValueError) as exc:
        raise LoRAFileError(f"{config_path}: r and lora_alpha needed ({exc})") from None
    scaling = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    weights_path = directory / "adapter_model.safetensors"
    tensors = load_file(str(weights_path))
    halves: dict[str, dict[str, Tensor]] = {}
    for key, tensor in tensors.items():
        suffix = next((s for s in SUFFIXES if key.endswith(s)), None)
        if not key.startswith(PREFIX) or suffix is None:
            raise LoRAFileError(f"{weights_path}: {key} is not a plain LoRA weight")
        halves.setdefault(key[len(PREFIX) : -len(suffix)], {})[SUFFIXES[suffix]] = tensor
    pairs: dict[str, LoRAPair] = {}
    for path, half in halves.items():
        try:
            layer = model.get_submodule(path)
        except AttributeError:
            raise LoRAFileError(f"{weights_path}: {path} is not a module of this backbone") from None
        if isinstance(layer, MultiLoRALinear):
            layer = layer.base_layer
        if not isinstance(layer, nn.Linear):
            raise LoRAFileError(f"{weights_path}: {path} is a {type(layer).__name__}, not a linear layer")
        a, b = half.get("a"), half.get("b")
        if a is None or b is None:
            raise LoRAFileError(f"{weights_path}: {path} lacks lora_{'A' if a is None else 'B'}")
        expected = ((rank, layer.in_features), (layer.out_features, rank))
        if (tuple(a.shape), tuple(b.shape)) != expected:
            raise LoRAFileError(
                f"{weights_path}: {path} has A {tuple(a.shape)} and B {tuple(b.shape)}, this backbone needs"
                f" {expected[0]} and {expected[1]}"
            )
        device = next(layer.parameters()).device  # a 4-bit weight's dtype is uint8; the adapter stays in float
        float_type = torch.float32 if a.dtype in (torch.float16, torch.bfloat16) else a.dtype
        # new tensors (transposed, scaled, contiguous): load_file's live in a mapping of the file, which a
        # checkpoint rewritten in place changes
        a_t = a.to(device, float_type).t().contiguous()
        b_t = (b.to(device, float_type) * scaling).t().contiguous()
        pairs[path] = LoRAPair(a_t, b_t)
    if not pairs:
        raise LoRAFileError(f"{weights_path}: no LoRA weights")
    return _packed(pairs)


def _packed(pairs: dict[str, LoRAPair]) -> dict[str, LoRAPair]:
    """The pairs as views of one buffer: one allocation per adapter, not two per layer. 256 registered models grew
    the RSS by 762 MiB against 739 of their own tensors and vocabularies, 780 MiB with a tensor per matrix (the
    allocator's headers and rounding of ~150 small blocks per model)."""
    tensors = [t for p in pairs.values() for t in (p.a, p.b)]
    if len({(t.device, t.dtype) for t in tensors}) != 1:
        return pairs
    flat = torch.cat([t.reshape(-1) for t in tensors])
    views = [part.view(t.shape) for part, t in zip(flat.split([t.numel() for t in tensors]), tensors, strict=True)]
    return {path: LoRAPair(views[2 * k], views[2 * k + 1]) for k, path in enumerate(pairs)}
