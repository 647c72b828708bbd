"""The LogLLM module: BERT per message -> linear projector -> Llama decoder answering normal/anomalous.

The decoder reads ``[prefix || one projected vector per message || question || answer]`` as input embeddings.
Sequences are left-padded and position ids come from the attention mask, so a sequence scores the same alone or in a
padded batch (the reference code gets this wrong). Scoring is one forward pass: the answers differ in exactly one
token ("normal" vs "anomalous"), and the softmax over those two logits is P(anomalous).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from model.embedding_cache import EmbeddingCache
from model.encode_batches import token_batches


@dataclass(frozen=True)
class Prompts:
    """The paper's prompt and answer template; stored in every checkpoint manifest."""

    prefix: str = "Below is a sequence of system log messages:"
    question: str = ". Is this sequence normal or anomalous?"
    normal_answer: str = "The sequence is normal."
    anomalous_answer: str = "The sequence is anomalous."

    def to_json(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class DecoderBatch:
    """Left-padded decoder inputs for a batch of sequences."""

    embeds: Tensor
    attention_mask: Tensor
    position_ids: Tensor
    labels: Tensor | None


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class LogLLM(nn.Module):
    """Encoder + projector + decoder; knows nothing of files, HTTP or Redis."""

    def __init__(
        self,
        encoder: PreTrainedModel,
        encoder_tokenizer: PreTrainedTokenizerBase,
        decoder: PreTrainedModel,
        decoder_tokenizer: PreTrainedTokenizerBase,
        *,
        prompts: Prompts | None = None,
        max_messages: int = 128,
        max_message_tokens: int = 100,
        threshold: float = 0.5,
        cache_size: int = 0,
        encode_batch_size: int = 256,
    ) -> None:
        super().__init__()
        # Any: these become peft wrappers around the transformers models, and both APIs are only loosely typed
        self.encoder: Any = encoder
        self.decoder: Any = decoder
        self.encoder_tokenizer = encoder_tokenizer
        self.decoder_tokenizer = decoder_tokenizer
        self.prompts = prompts or Prompts()
        self.max_messages = max_messages
        self.max_message_tokens = max_message_tokens
        self.threshold = threshold
        self.encode_batch_size = encode_batch_size
        self.version = "untrained"
        self.cache = EmbeddingCache(cache_size)
        enc_dim = int(encoder.config.hidden_size)
        dec_dim = int(decoder.config.hidden_size)
        self.projector = nn.Linear(enc_dim, dec_dim).to(self._first_device(encoder))
        self._prefix_ids = self._token_ids(self.prompts.prefix)
        self._question_ids = self._token_ids(self.prompts.question)
        normal = self._token_ids(self.prompts.normal_answer)
        anomalous = self._token_ids(self.prompts.anomalous_answer)
        split = next((i for i, (a, b) in enumerate(zip(normal, anomalous, strict=False)) if a != b), None)
        if split is None:
            raise ValueError("the two answers must differ in at least one token")
        self._answer_stem = normal[:split]
        self.normal_token, self.anomalous_token = normal[split], anomalous[split]
        eos = [decoder_tokenizer.eos_token_id] if decoder_tokenizer.eos_token_id is not None else []
        self._answers = {0: normal + eos, 1: anomalous + eos}

    @staticmethod
    def _first_device(module: nn.Module) -> torch.device:
        return next(module.parameters()).device

    @property
    def device(self) -> torch.device:
        return self.projector.weight.device

    def _token_ids(self, text: str) -> list[int]:
        return list(self.decoder_tokenizer(text, add_special_tokens=False)["input_ids"])

    def train(self, mode: bool = True) -> LogLLM:
        """Cached message vectors go stale as soon as weights can change."""
        if mode:
            self.cache.clear()
        return super().train(mode)

    # -- messages -> vectors -------------------------------------------------------------------------------------
    def encode_messages(self, messages: Sequence[str]) -> Tensor:
        """One projected vector per message; each distinct message is encoded once (windows repeat templates)."""
        distinct = list(dict.fromkeys(messages))
        use_cache = self.cache.capacity > 0 and not torch.is_grad_enabled()
        found = {m: v for m in distinct if use_cache and (v := self.cache.get(m)) is not None}
        missing = [m for m in distinct if m not in found]
        encoded: dict[str, Tensor] = {}
        batches = token_batches(self.encoder_tokenizer, missing, self.max_message_tokens, self.encode_batch_size)
        for batch, tokens in batches:
            pooled = self.encoder(**tokens.to(self._first_device(self.encoder))).pooler_output
            projected = self.projector(pooled.to(self.projector.weight.dtype))
            for text, vector in zip((missing[i] for i in batch), projected, strict=True):
                encoded[text] = vector
                if use_cache:
                    self.cache.put(text, vector.detach())
        vectors = {**found, **encoded}
        table = torch.stack([vectors[m] for m in distinct])
        index = {m: i for i, m in enumerate(distinct)}
        return table[torch.tensor([index[m] for m in messages], device=table.device)]

    # -- decoder inputs ------------------------------------------------------------------------------------------
    def _embedding_table(self) -> nn.Embedding:
        return cast(nn.Embedding, self.decoder.get_input_embeddings())

    def _embed_ids(self, ids: list[int]) -> Tensor:
        table = self._embedding_table()
        return table(torch.tensor(ids, dtype=torch.long, device=table.weight.device))

    def build_batch(self, sequences: Sequence[Sequence[str]], answers: Sequence[list[int]] | None) -> DecoderBatch:
        """Left-pad ``[prefix || messages || question || answer]``; labels cover the answer tokens only."""
        sequences = [list(seq)[: self.max_messages] for seq in sequences]
        if any(len(seq) == 0 for seq in sequences):
            raise ValueError("every sequence needs at least one message")
        vectors = self.encode_messages([m for seq in sequences for m in seq])
        embed_dtype = self._embedding_table().weight.dtype
        prefix, question = self._embed_ids(self._prefix_ids), self._embed_ids(self._question_ids)
        rows: list[Tensor] = []
        label_rows: list[list[int]] = []
        offset = 0
        for i, seq in enumerate(sequences):
            answer = list(answers[i]) if answers is not None else []
            parts = [prefix, vectors[offset : offset + len(seq)].to(embed_dtype), question]
            if answer:
                parts.append(self._embed_ids(answer))
            offset += len(seq)
            rows.append(torch.cat(parts))
            label_rows.append([-100] * (rows[-1].shape[0] - len(answer)) + answer)
        width = max(row.shape[0] for row in rows)
        dim = rows[0].shape[1]
        device = rows[0].device
        embeds = torch.zeros(len(rows), width, dim, dtype=embed_dtype, device=device)
        mask = torch.zeros(len(rows), width, dtype=torch.long, device=device)
        labels = torch.full((len(rows), width), -100, dtype=torch.long, device=device)
        for i, row in enumerate(rows):
            embeds[i, width - row.shape[0] :] = row
            mask[i, width - row.shape[0] :] = 1
            labels[i, width - row.shape[0] :] = torch.tensor(label_rows[i], device=device)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        return DecoderBatch(embeds, mask, position_ids, labels if answers is not None else None)

    # -- training ------------------------------------------------------------------------------------------------
    def training_mask(self, attention_mask: Tensor) -> Tensor:
        """The causal + padding mask as a 4D boolean mask in which each padding position attends to itself.

        With left padding, a padding query otherwise sees no key at all. The fused SDPA kernels on CUDA can make such
        a fully masked row NaN, and the backward pass then carries the NaN into the real tokens' gradients: the
        likely cause of the NaN loss our QLoRA run on an H200 hit with batches of mixed lengths (README, "On a GPU").
        Real positions never attend to padding either way, so their outputs are the same as with the 2D mask.
        Other attention implementations take the 2D mask as before.
        """
        if getattr(self.decoder.config, "_attn_implementation", None) != "sdpa":
            return attention_mask
        width = attention_mask.shape[1]
        causal = torch.ones(width, width, dtype=torch.bool, device=attention_mask.device).tril()
        keep = causal & attention_mask.bool()[:, None, :]
        keep |= torch.eye(width, dtype=torch.bool, device=attention_mask.device)
        return keep[:, None]

    def loss(self, sequences: Sequence[Sequence[str]], labels: Sequence[int]) -> Tensor:
        """Cross-entropy on the answer tokens ("The sequence is normal." / "... anomalous.")."""
        batch = self.build_batch(sequences, [self._answers[int(label)] for label in labels])
        out = self.decoder(
            inputs_embeds=batch.embeds,
            attention_mask=self.training_mask(batch.attention_mask),
            position_ids=batch.position_ids,
            labels=batch.labels,
        )
        return out.loss

    # -- inference -----------------------------------------------------------------------------------------------
    def scoring_batch(self, sequences: Sequence[Sequence[str]]) -> DecoderBatch:
        """Decoder inputs that end at the answer stem, where the next token decides normal vs anomalous."""
        return self.build_batch(sequences, [self._answer_stem] * len(sequences))

    def _score_batch(self, sequences: Sequence[Sequence[str]]) -> Tensor:
        batch = self.scoring_batch(sequences)
        logits = self.decoder(
            inputs_embeds=batch.embeds,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            logits_to_keep=1,  # only the next-token logits after the answer stem are needed
        ).logits[:, -1, :]
        pair = torch.stack([logits[:, self.normal_token], logits[:, self.anomalous_token]], dim=-1).float()
        return pair.softmax(-1)[:, 1]

    @torch.no_grad()
    def score(self, sequences: Sequence[Sequence[str]], batch_size: int = 16) -> list[float]:
        """P(anomalous) per sequence of preprocessed messages, from one forward pass per batch.

        Equal sequences (after the ``max_messages`` cut) are scored once: session windows repeat the same event
        sequences a lot (the HDFS test split: 4,339 sessions, 1,408 distinct). Distinct sequences are batched by
        length to cut padding; the result keeps the input order.
        """
        was_training = self.training
        self.eval()
        keys = [tuple(seq[: self.max_messages]) for seq in sequences]
        distinct = sorted(dict.fromkeys(keys), key=len)
        scored: dict[tuple[str, ...], float] = {}
        for chunk in _chunks(distinct, batch_size):
            scored.update(zip(chunk, map(float, self._score_batch(chunk).tolist()), strict=True))
        self.train(was_training)
        return [scored[key] for key in keys]

    def label(self, score: float) -> str:
        return "anomalous" if score >= self.threshold else "normal"

    @torch.no_grad()
    def generate(self, sequences: Sequence[Sequence[str]], max_new_tokens: int = 6) -> list[str]:
        """The answer text by greedy decoding: the reference method, kept to cross-check ``score``."""
        was_training = self.training
        self.eval()
        batch = self.build_batch(sequences, None)
        out = self.decoder.generate(
            inputs_embeds=batch.embeds,
            attention_mask=batch.attention_mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=self.decoder_tokenizer.pad_token_id or self.decoder_tokenizer.eos_token_id,
        )
        self.train(was_training)
        return [text.strip() for text in self.decoder_tokenizer.batch_decode(out, skip_special_tokens=True)]

    def set_trainable(self, *, projector: bool, encoder_lora: bool, decoder_lora: bool) -> None:
        """Freeze everything but the parts a training stage tunes (LoRA weights are named ``lora_``)."""
        for param in self.parameters():
            param.requires_grad_(False)
        self.projector.requires_grad_(projector)
        for module, on in ((self.encoder, encoder_lora), (self.decoder, decoder_lora)):
            for name, param in module.named_parameters():
                if "lora_" in name:
                    param.requires_grad_(on)
