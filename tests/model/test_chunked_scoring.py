"""Windows longer than the model's max_messages are scored whole: every message in some chunk, score = max."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from model.chunked_scoring import chunks, score_whole


def test_chunks_are_consecutive_and_cover_every_message() -> None:
    messages = [f"m{i}" for i in range(10)]
    assert chunks(messages, 4) == [messages[0:4], messages[4:8], messages[8:10]]
    assert chunks(messages, 10) == [messages]
    with pytest.raises(ValueError, match="max_messages"):
        chunks(messages, 0)


def test_a_window_scores_as_its_worst_chunk_in_one_model_call() -> None:
    calls: list[list[list[str]]] = []

    def error_share(sequences: Sequence[Sequence[str]]) -> list[float]:
        calls.append([list(s) for s in sequences])
        return [sum("error" in m for m in s) / len(s) for s in sequences]

    tail_error = ["ok"] * 6 + ["error", "ok"]  # the anomaly sits past the first 4 messages
    short = ["error", "ok"]
    assert score_whole(error_share, [tail_error, short], 4) == [0.25, 0.5]  # head chunk alone: 0.0
    assert len(calls) == 1 and [len(s) for s in calls[0]] == [4, 4, 2]
    assert score_whole(error_share, [tail_error], None) == [1 / 8]  # no limit: as given
