"""Score windows longer than the model's ``max_messages`` whole: consecutive chunks, window score = max.

The model reads at most ``max_messages`` messages of a sequence; scoring only the head would miss an anomaly in
the tail while the verdict reports every line. One function, used by the service's classifier and by
``logllm score``, so online and offline scores stay one path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def chunks(sequence: Sequence[str], max_messages: int) -> list[list[str]]:
    """Consecutive, non-overlapping pieces of at most ``max_messages`` messages (one piece when it fits)."""
    if max_messages <= 0:
        raise ValueError(f"max_messages must be positive, got {max_messages}")
    return [list(sequence[start : start + max_messages]) for start in range(0, max(len(sequence), 1), max_messages)]


def score_whole(
    score: Callable[[list[list[str]]], Sequence[float]],
    sequences: Sequence[Sequence[str]],
    max_messages: int | None,
) -> list[float]:
    """P(anomalous) per sequence, every message seen: the max over its chunks, all chunks in one ``score`` call.

    A window is anomalous when any part of it is, so the max; ``max_messages`` None scores sequences as given.
    """
    if max_messages is None:
        return [float(x) for x in score([list(s) for s in sequences])]
    pieces: list[list[str]] = []
    owners: list[int] = []
    for index, sequence in enumerate(sequences):
        for piece in chunks(sequence, max_messages):
            pieces.append(piece)
            owners.append(index)
    scores = score(pieces)
    if len(scores) != len(pieces):
        raise ValueError(f"scorer returned {len(scores)} scores for {len(pieces)} sequences")
    best = [float("-inf")] * len(sequences)
    for owner, value in zip(owners, scores, strict=True):
        best[owner] = max(best[owner], float(value))
    return best
