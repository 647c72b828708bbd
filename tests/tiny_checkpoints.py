"""Tiny backbones (one layer, hidden 32, the real tokenizers) and checkpoints on them: every code path of loading
and scoring is real, in a fraction of a second per model instead of the real backbones' seconds."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertModel, LlamaConfig, LlamaForCausalLM

from model.backbones import convert_gguf, resolve
from model.checkpoint import Manifest, build_model, save_checkpoint
from model.settings import ModelSettings
from model.vocab import attach_vocabulary, build_vocabulary


def tiny_encoder(directory: Path) -> Path:
    tokenizer = AutoTokenizer.from_pretrained(resolve("minilm").location)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )  # fmt: skip
    BertModel(config, add_pooling_layer=True).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def tiny_decoder(directory: Path, hidden: int = 32, seed: int = 0) -> Path:
    """A one-layer Llama; another ``hidden`` (or seed) is another backbone, with another fingerprint."""
    tokenizer = AutoTokenizer.from_pretrained(convert_gguf(resolve("smollm2"), ModelSettings().cache_dir))
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def tiny_checkpoint(
    directory: Path, encoder: Path, decoder: Path, seed: int, threshold: float = 0.5, normal: tuple[str, ...] = ()
) -> Path:
    """Fresh adapters made to matter (LoRA B random instead of zero), a seeded projector; ``normal``: templates of a
    vocabulary written with it."""
    torch.manual_seed(seed)
    settings = ModelSettings(quantize="none", device="cpu")
    model, enc_info, dec_info = build_model(settings, encoder=str(encoder), decoder=str(decoder))
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    model.threshold = threshold
    save_checkpoint(model, directory, Manifest(encoder=enc_info, decoder=dec_info))
    if normal:
        attach_vocabulary(directory, build_vocabulary([(list(normal), 0)]))
    return directory
