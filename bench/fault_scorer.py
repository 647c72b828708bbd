"""A scorer for benchmarks of the service itself (``--scorer bench.fault_scorer:RecordingScorer``): instant,
and it appends every window it scores to the file named by LOGLLM_BENCH_SCORED_LOG (one JSON list of the window's
messages per line), so bench/faults.py can tell which lines were scored and which windows were scored twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence


class RecordingScorer:
    """Anomalous iff a message says 'error'; each scored window is appended (and flushed) before its verdict is
    written, so a window scored by a process killed before it acknowledged shows up twice."""

    threshold = 0.5
    version = "fault-bench"

    def __init__(self, settings: object = None) -> None:
        self.path = os.environ.get("LOGLLM_BENCH_SCORED_LOG", "")

    def score(self, sequences: Sequence[Sequence[str]]) -> list[float]:
        if self.path and sequences != [["service warm-up"]]:
            with open(self.path, "a", encoding="utf-8") as out:
                out.write("".join(json.dumps(list(s)) + "\n" for s in sequences))
        return [0.9 if any("error" in m.lower() for m in s) else 0.1 for s in sequences]
