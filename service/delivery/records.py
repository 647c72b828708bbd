"""Where delivery reads a window's record: the seam to the anomaly records (service/records, issue #12).

``RecordSource.get(window_id)`` returns the record dict ``GET /sequences/{id}`` shows (id, source, status,
score, threshold, n_lines, closed_at, scored_at, model_version, explanation = top lines...) or None while it
is not written yet. ``service.records.record_store.RecordStore`` has exactly this method; until it is wired in,
``VerdictRecords`` builds the same shape from the verdict alone (no top lines).
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from service.windows.ids import DEFAULT_SOURCE, parse_window_id
from service.windows.store import WindowStore


class RecordSource(Protocol):
    async def get(self, window_id: str, with_lines: bool = True) -> dict[str, Any] | None: ...


class VerdictRecords:
    """Records made from verdicts only: enough for pushes, without lines or explanation."""

    def __init__(self, store: WindowStore) -> None:
        self.store = store

    async def get(self, window_id: str, with_lines: bool = True) -> dict[str, Any] | None:
        found = await self.store.verdict(window_id)
        if found is None or found == "pending":
            return None
        ref = parse_window_id(window_id)
        legacy_fixed = re.fullmatch(r"([^\s#:]+):\d+", window_id)  # <source>:<start>, before ids.py
        source = ref.source if ref is not None else legacy_fixed.group(1) if legacy_fixed else DEFAULT_SOURCE
        return {
            "id": window_id,
            "source": source,
            "status": found.label,
            "score": found.score,
            "threshold": found.threshold,
            "n_lines": found.n_lines,
            "closed_at": found.closed_at,
            "scored_at": found.scored_at,
            "model_version": found.model_version,
            "explanation": None,
        }
