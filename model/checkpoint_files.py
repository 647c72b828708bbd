"""The files a checkpoint must hold, checked without torch: the api role validates a registration with it.

Loading (model/checkpoint.py, model/adapter_pool.py) reads these files; a partial copy or a checkpoint of another
preprocessing version is named here before anything is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from model.preprocess import PREPROCESS_VERSION

FORMAT = "logllm-checkpoint/1"
MANIFEST = "manifest.json"
PARTS = (
    "projector.safetensors",
    "encoder_lora/adapter_config.json",
    "encoder_lora/adapter_model.safetensors",
    "decoder_lora/adapter_config.json",
    "decoder_lora/adapter_model.safetensors",
)


class CheckpointFilesError(ValueError):
    """The directory is missing, partial, or not a checkpoint this logllm can read; the message names it."""


def check_files(directory: Path) -> dict[str, Any]:
    """The manifest as JSON, once the directory holds every part and was preprocessed as this logllm does."""
    if not directory.is_dir():
        raise CheckpointFilesError(f"checkpoint {directory} does not exist (or is not a directory)")
    try:
        raw = json.loads((directory / MANIFEST).read_text())
    except OSError:
        raise CheckpointFilesError(f"{directory} is not a logllm checkpoint: {MANIFEST} is missing") from None
    except ValueError as exc:
        raise CheckpointFilesError(f"{directory / MANIFEST}: not JSON ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointFilesError(f"{directory / MANIFEST}: not a {FORMAT} manifest")
    missing = [part for part in PARTS if not (directory / part).is_file()]
    if missing:
        raise CheckpointFilesError(f"checkpoint {directory} is partial: {', '.join(missing)} missing")
    if raw.get("preprocess_version") != PREPROCESS_VERSION:
        raise CheckpointFilesError(
            f"{directory}: trained with preprocessing version {raw.get('preprocess_version')}, this logllm has"
            f" {PREPROCESS_VERSION}; retrain or install the matching logllm"
        )
    return raw
