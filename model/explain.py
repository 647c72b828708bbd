"""Occlusion explanations: which distinct messages made a window anomalous.

The contribution of a distinct message is the drop in P(anomalous) when all its occurrences are removed from the
window. Windows repeat a few templates, so there are few variants; they all go through the model as one batch
(one forward pass), and since the model encodes each distinct message once per batch, BERT runs once per
template, not once per variant.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol


class SupportsScore(Protocol):
    def score(self, sequences: Sequence[Sequence[str]]) -> list[float]: ...


@dataclass(frozen=True)
class Contribution:
    message: str  # the preprocessed message (template)
    contribution: float  # score of the window minus the score without this message
    count: int  # its occurrences in the window
    line: str | None = None  # the first line that carried it, when lines were given
    raw: str | None = None  # that line as shipped (header included), when raw lines were given

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def one_pass(model: SupportsScore) -> Callable[[list[list[str]]], list[float]]:
    """model.score with a batch as large as the input (LogLLM.score takes ``batch_size``), so one pass."""
    if "batch_size" in inspect.signature(model.score).parameters:
        return lambda sequences: model.score(sequences, batch_size=max(1, len(sequences)))  # type: ignore[call-arg]
    return lambda sequences: list(model.score(sequences))


def explain(
    score: Callable[[list[list[str]]], list[float]],
    messages: Sequence[str],
    top_k: int = 5,
    base_score: float | None = None,
    lines: Sequence[str] | None = None,
    raw_lines: Sequence[str] | None = None,
) -> list[Contribution]:
    """The top_k distinct messages by contribution, largest first (ties: first seen first).

    ``score`` scores a list of sequences in one call (see ``one_pass``); ``base_score`` is the window's own
    score when the caller has it (else it joins the same batch). A window of one distinct message has no
    variant to compare with: that message gets the whole score. ``raw_lines`` (parallel to ``lines``) give each
    top message the shipped text of its first line too, so an operator sees its timestamp and host.
    """
    counts = Counter(messages)
    distinct = list(counts)
    for given in (lines, raw_lines):
        if given is not None and len(given) != len(messages):
            raise ValueError(f"{len(given)} lines for {len(messages)} messages")
    first_line: dict[str, int] = {}
    if lines is not None:
        for i, message in enumerate(messages):
            first_line.setdefault(message, i)
    variants = [[m for m in messages if m != d] for d in distinct]
    batch = [v for v in variants if v]
    if base_score is None:
        batch.append(list(messages))
    scores = iter(score(batch)) if batch else iter(())
    variant_scores = [next(scores) if v else 0.0 for v in variants]
    base = base_score if base_score is not None else next(scores)
    ranked = sorted(
        (
            Contribution(d, float(base - s), counts[d], *_first(d, first_line, lines, raw_lines))
            for d, s in zip(distinct, variant_scores, strict=True)
        ),
        key=lambda c: -c.contribution,
    )
    return ranked[:top_k]


def _first(
    message: str, first_line: dict[str, int], lines: Sequence[str] | None, raw_lines: Sequence[str] | None
) -> tuple[str | None, str | None]:
    """The content and the raw text of the first line that carried a message (None where not given)."""
    i = first_line.get(message)
    if i is None or lines is None:
        return None, None
    return lines[i], raw_lines[i] if raw_lines is not None else None


def lead_with_novelty(
    top: Sequence[Contribution], novel: Sequence[str], known_anomalous: Sequence[str], top_k: int
) -> list[dict[str, Any]]:
    """The explanation as shown: the templates the novelty rule found first (tagged with their kind), then the
    rest by contribution, top_k of those; a window without novelty keeps the occlusion order. ``top`` must hold
    every distinct message when there is novelty, so none of its templates is cut before it can lead."""
    kinds = {m: "known_anomalous" for m in known_anomalous} | {m: "novel" for m in novel}
    first = sorted((c for c in top if c.message in kinds), key=lambda c: kinds[c.message] != "known_anomalous")
    rest = [c.to_json() for c in top if c.message not in kinds][: max(top_k - len(first), 0)]
    return [{**c.to_json(), "novelty": kinds[c.message]} for c in first] + rest

