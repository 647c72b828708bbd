"""Encoder batches of similar token length: every message once, padding bounded, and the same vectors as one padded
batch of all messages."""

from __future__ import annotations

import torch

from model.encode_batches import SLACK, SPARE_TOKENS, length_batches
from model.logllm import LogLLM

MESSAGES = [
    "x",
    "ciod: generated <*> core files for program <*>",
    "y z",
    "data TLB error interrupt",
    "instruction cache parity error corrected",
    "ciod: Message code <*> is not <*> or <*> from node <*> on <*> , rank <*> , pid <*> , core <*> , thread <*>",
    "a",
    "generating core.<*>",
]


def test_batches_hold_every_message_once_by_length_with_bounded_padding(fresh_model: LogLLM) -> None:
    tokenizer = fresh_model.encoder_tokenizer
    lengths = [len(ids) for ids in tokenizer(MESSAGES, truncation=True, max_length=100)["input_ids"]]
    batches = length_batches(tokenizer, MESSAGES, 100, max_rows=3)
    assert sorted(i for batch in batches for i in batch) == list(range(len(MESSAGES)))
    assert [lengths[i] for batch in batches for i in batch] == sorted(lengths)
    assert len(batches) > 1 and all(len(batch) <= 3 for batch in batches)
    for batch in batches:
        tokens = sum(lengths[i] for i in batch)
        padding = len(batch) * max(lengths[i] for i in batch) - tokens
        assert padding <= max((SLACK - 1) * tokens, SPARE_TOKENS)
    assert length_batches(tokenizer, [], 100, 3) == []


def test_vectors_do_not_depend_on_the_batching(fresh_model: LogLLM) -> None:
    def encoded(messages: list[str]) -> torch.Tensor:
        fresh_model.cache.clear()  # encoded, not served from the cache
        return fresh_model.encode_messages(messages)

    with torch.no_grad():
        batched = encoded(MESSAGES)
        alone = torch.cat([encoded([m]) for m in MESSAGES])
        tokens = fresh_model.encoder_tokenizer(MESSAGES, padding=True, return_tensors="pt")
        pooled = fresh_model.encoder(**tokens).pooler_output
        together = fresh_model.projector(pooled)
    assert torch.allclose(batched, alone, atol=1e-5)
    assert torch.allclose(batched, together, atol=1e-5)
