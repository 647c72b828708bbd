"""The LogLLM module on the real PyPI backbones: scoring, batch independence, message dedup and the cache."""

from __future__ import annotations

import pytest
import torch

from model.logllm import LogLLM

pytestmark = pytest.mark.slow

SEQUENCES = [
    ["instruction cache parity error corrected"] * 5,
    ["generating core.<*>", "ciod: failed to read message prefix on control stream <*>"] * 20,
    ["session closed for user root"],
]


def test_scores_are_probabilities(fresh_model: LogLLM) -> None:
    scores = fresh_model.score(SEQUENCES)
    assert len(scores) == 3
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert len(set(scores)) == 3, "different sequences should not collapse to one score"


def test_score_does_not_depend_on_batch_composition(fresh_model: LogLLM) -> None:
    batched = fresh_model.score(SEQUENCES, batch_size=3)
    alone = [fresh_model.score([seq])[0] for seq in SEQUENCES]
    assert batched == pytest.approx(alone, abs=1e-5)


def test_left_padding_and_position_ids(fresh_model: LogLLM) -> None:
    batch = fresh_model.build_batch([["a"], ["a", "b", "c"]], None)
    mask = batch.attention_mask
    assert mask[0].tolist()[:2] == [0, 0] and mask[1].all()
    assert batch.position_ids[0, -1] == batch.position_ids[1, -1] - 2
    assert batch.position_ids[0][mask[0].bool()].tolist() == list(range(int(mask[0].sum())))


def test_distinct_messages_are_encoded_once(fresh_model: LogLLM) -> None:
    calls: list[int] = []
    handle = fresh_model.encoder.register_forward_hook(lambda _m, args, _o: calls.append(1))
    try:
        with torch.no_grad():
            vectors = fresh_model.encode_messages(["x <*>", "y", "x <*>", "y", "x <*>"])
    finally:
        handle.remove()
    assert len(calls) == 1
    assert torch.equal(vectors[0], vectors[2]) and torch.equal(vectors[1], vectors[3])
    assert not torch.equal(vectors[0], vectors[1])


def test_cache_serves_repeats_and_gives_the_same_scores(fresh_model: LogLLM) -> None:
    fresh_model.cache.clear()
    first = fresh_model.score(SEQUENCES)
    hits_before = fresh_model.cache.hits
    again = fresh_model.score(SEQUENCES)
    assert fresh_model.cache.hits > hits_before
    assert again == pytest.approx(first, abs=1e-6)


def test_training_mode_clears_the_cache_and_loss_backpropagates(fresh_model: LogLLM) -> None:
    fresh_model.score(SEQUENCES)
    assert len(fresh_model.cache) > 0
    fresh_model.train()
    assert len(fresh_model.cache) == 0
    fresh_model.set_trainable(projector=True, encoder_lora=True, decoder_lora=True)
    loss = fresh_model.loss(SEQUENCES[:2], [0, 1])
    loss.backward()
    assert torch.isfinite(loss)
    assert fresh_model.projector.weight.grad is not None and fresh_model.projector.weight.grad.abs().sum() > 0
    frozen = [p for n, p in fresh_model.decoder.named_parameters() if "lora_" not in n]
    assert all(p.grad is None for p in frozen)
    fresh_model.zero_grad(set_to_none=True)
    fresh_model.eval()


def test_empty_sequence_is_refused(fresh_model: LogLLM) -> None:
    with pytest.raises(ValueError, match="at least one message"):
        fresh_model.score([[]])


def test_sequences_are_capped(fresh_model: LogLLM) -> None:
    long = [f"message {i}" for i in range(fresh_model.max_messages + 50)]
    batch = fresh_model.build_batch([long], None)
    prompt = len(fresh_model._prefix_ids) + len(fresh_model._question_ids)
    assert batch.embeds.shape[1] == prompt + fresh_model.max_messages


def test_training_mask_leaves_no_row_empty_and_the_loss_unchanged(fresh_model: LogLLM) -> None:
    sequences, labels = [["a"], ["a", "b", "c", "d"], SEQUENCES[0]], [0, 1, 0]
    batch = fresh_model.build_batch(sequences, [fresh_model._answers[label] for label in labels])
    real = batch.attention_mask.bool()
    mask = fresh_model.training_mask(batch.attention_mask)
    width = real.shape[1]
    assert mask.shape == (3, 1, width, width) and mask.dtype == torch.bool
    assert mask.any(-1).all(), "a fully masked row is what SDPA's CUDA kernels can turn into NaN"
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    for row in range(3):  # a real position sees exactly the real positions up to itself
        assert torch.equal(mask[row, 0][real[row]], (causal & real[row][None, :])[real[row]])
    with torch.no_grad():
        plain = fresh_model.decoder(
            inputs_embeds=batch.embeds,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            labels=batch.labels,
        ).loss
        assert float(fresh_model.loss(sequences, labels)) == pytest.approx(float(plain), abs=1e-6)
