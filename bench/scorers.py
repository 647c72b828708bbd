"""Stand-in scorers for benchmarks and tests of the service itself (``logllm serve --scorer bench.scorers:NAME``).

Both call a window anomalous iff one of its messages says 'error'.
- ``fixed_cost``: every call costs ``FIXED_COST_MS`` (default 50), standing for a GPU call whose time hardly
  depends on the batch size; the sleep releases the GIL as a real model call does, so the scale-out figures show
  the queueing.
- ``RecordingScorer``: instant, and it appends every window it scores to the file named by
  LOGLLM_BENCH_SCORED_LOG (one JSON list of the window's messages per line), so bench/faults.py can tell which
  lines were scored and which windows were scored twice.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence

COST_ENV = "FIXED_COST_MS"


def keyword_scores(sequences: Sequence[Sequence[str]]) -> list[float]:
    return [0.9 if any("error" in m.lower() for m in s) else 0.1 for s in sequences]


class FixedCostScorer:
    """Every call sleeps ``cost_ms``."""

    threshold = 0.5

    def __init__(self, cost_ms: float) -> None:
        self.cost_s = cost_ms / 1000
        self.version = f"fixed-cost-{cost_ms:g}ms"

    def score(self, sequences: Sequence[Sequence[str]]) -> list[float]:
        time.sleep(self.cost_s)
        return keyword_scores(sequences)


def fixed_cost(settings: object) -> FixedCostScorer:
    """The ``--scorer`` factory: the cost comes from the environment, as this is no service setting."""
    return FixedCostScorer(float(os.environ.get(COST_ENV, "50")))


class RecordingScorer:
    """Each scored window is appended (and flushed) before its verdict is written, so a window scored by a
    process killed before it acknowledged shows up twice."""

    threshold = 0.5
    version = "fault-bench"

    def __init__(self, settings: object = None) -> None:
        self.path = os.environ.get("LOGLLM_BENCH_SCORED_LOG", "")

    def score(self, sequences: Sequence[Sequence[str]]) -> list[float]:
        if self.path and sequences != [["service warm-up"]]:
            with open(self.path, "a", encoding="utf-8") as out:
                out.write("".join(json.dumps(list(s)) + "\n" for s in sequences))
        return keyword_scores(sequences)
