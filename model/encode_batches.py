"""Messages cut into encoder batches of similar token length, so padding costs little.

A batch is padded to its longest message. BGL's messages run from 5 to 29 MiniLM tokens (mean ~12): one padded batch
of all of them spent ~2.4x the tokens it needed, and encoding was a fifth of a one-model scoring pass and a third of a
mixed pass over 16 models (which encode ~1.8x the messages: every model its own). Sorted by length and cut where
padding would add more than ``SLACK``, each message costs about its own tokens; a few more forward passes of the small
encoder cost far less. A message's vector does not depend on its batch (the attention mask hides the padding).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from transformers import BatchEncoding, PreTrainedTokenizerBase

SLACK = 1.25  # a batch's padded tokens at most this many times its real ones...
SPARE_TOKENS = 32  # ...or at most this many padding tokens: fewer cost less than another forward pass


def length_batches(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int, max_rows: int
) -> list[list[int]]:
    """Indices into ``texts``: batches of at most ``max_rows``, shortest messages first, each padded to at most
    ``SLACK`` times its tokens or by at most ``SPARE_TOKENS`` (a single message always makes a batch)."""
    if not texts:
        return []
    lengths = [len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]]
    order = sorted(range(len(texts)), key=lengths.__getitem__)
    batches: list[list[int]] = []
    batch: list[int] = []
    tokens = 0
    for i in order:
        padding = (len(batch) + 1) * lengths[i] - tokens - lengths[i]
        if batch and (len(batch) >= max_rows or padding > max((SLACK - 1) * (tokens + lengths[i]), SPARE_TOKENS)):
            batches.append(batch)
            batch, tokens = [], 0
        batch.append(i)
        tokens += lengths[i]
    batches.append(batch)
    return batches


def token_batches(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int, max_rows: int
) -> Iterator[tuple[list[int], BatchEncoding]]:
    """``length_batches``, each with its messages tokenized for the encoder: padded, cut at ``max_length``."""
    for batch in length_batches(tokenizer, texts, max_length, max_rows):
        chunk = [texts[i] for i in batch]
        yield batch, tokenizer(chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
