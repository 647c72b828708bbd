"""Model settings shared by training, scoring and the service (env prefix ``LOGLLM_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_cache_dir() -> Path:
    """Converted backbone weights live outside the repo so they are never committed."""
    return Path.home() / ".cache" / "logllm"


class ModelSettings(BaseSettings):
    """Which backbones to use and where; every field is also an env var such as ``LOGLLM_ENCODER``."""

    model_config = SettingsConfigDict(env_prefix="LOGLLM_", extra="ignore")

    encoder: str = Field("minilm", description="encoder: 'minilm', a local directory or a hub id")
    decoder: str = Field("smollm2", description="decoder: 'smollm2', a local directory, a .gguf file or a hub id")
    cache_dir: Path = Field(default_factory=default_cache_dir, description="where converted weights are cached")
    device: str = Field("auto", description="'auto' (cuda when present), 'cpu', 'cuda', 'cuda:1', ...")
    quantize: Literal["auto", "4bit", "int8", "none"] = Field(
        "auto",
        description="'auto': a checkpoint loads as it was trained, a fresh model (training) in 4-bit NF4 (QLoRA)"
        " on CUDA and full precision elsewhere; '4bit' forces NF4 (CPU too); 'int8': dynamic int8 linears on the"
        " CPU, for scoring only (faster, scores shift slightly)",
    )
    merge_lora: bool = Field(
        True, description="fold the LoRA adapters into the weights when loading a checkpoint to score (not to train)"
    )
    torch_threads: int = Field(
        0, ge=0, description="torch CPU threads; 0 = auto: every core offline, all but one in the service (HTTP's)"
    )
    embedding_cache_size: int = Field(
        50_000, ge=0, description="message vectors kept in an LRU cache at inference (0 = off)"
    )
