"""Stand-in scorers for scale-out tests and benchmarks: ``logllm serve --scorer bench.scorers:fixed_cost``.

A fixed cost per batch (``FIXED_COST_MS``, default 50) stands for a GPU call whose time hardly depends on the
batch size; the sleep releases the GIL as a real model call does, so what the figures show is the queueing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

COST_ENV = "FIXED_COST_MS"


class FixedCostScorer:
    """Anomalous iff a message says 'error'; every call sleeps ``cost_ms``."""

    threshold = 0.5

    def __init__(self, cost_ms: float) -> None:
        self.cost_s = cost_ms / 1000
        self.version = f"fixed-cost-{cost_ms:g}ms"

    def score(self, sequences: Sequence[Sequence[str]]) -> list[float]:
        time.sleep(self.cost_s)
        return [0.9 if any("error" in m.lower() for m in s) else 0.1 for s in sequences]


def fixed_cost(settings: object) -> FixedCostScorer:
    """The ``--scorer`` factory: the cost comes from the environment, as this is no service setting."""
    return FixedCostScorer(float(os.environ.get(COST_ENV, "50")))
