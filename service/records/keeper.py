"""The classifier's record step, run after scoring and before the verdicts are written.

For every scored window it builds the record payload complete.lua writes with the verdict. Windows whose
lines are kept get their preprocessed messages; an anomalous window whose set of distinct messages is muted
becomes ``muted``; each window still anomalous is queued for its explanation with its record (records_lib.lua,
``rec:explain``): the verdict never waits for it, the worker's Explainer (explainer.py) writes it later.
Everything here is optional to the loop: without a keeper the loop writes verdicts only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from service.metrics import ServiceMetrics
from service.records.record_store import RecordStore, mute_id, window_parts
from service.windows.store import ClosedWindow, Verdict

Pair = tuple[ClosedWindow, Verdict]
log = logging.getLogger(__name__)


class RecordKeeper:
    """One per classifier loop; ``prepare`` before ``complete``, ``observe`` after it."""

    def __init__(
        self,
        records: RecordStore,
        preprocess: Callable[[str], str],
        metrics: ServiceMetrics | None = None,
        explain_top_k: int | None = None,
    ) -> None:
        self.records = records
        self.preprocess = preprocess
        self.metrics = metrics
        self.top_k = records.config.explain_top_k if explain_top_k is None else explain_top_k

    async def prepare(self, scorer: Any, pairs: Sequence[Pair]) -> tuple[list[Pair], dict[str, str]]:
        """The verdicts (anomalous ones relabeled ``muted`` where a mute matches) and their record payloads."""
        keep_normal = self.records.config.normal_lines_retention_s > 0
        wanted = [i for i, (_, v) in enumerate(pairs) if v.label != "normal" or keep_normal]
        messages: dict[int, list[str]] = dict(
            zip(wanted, await asyncio.to_thread(self._preprocess, [pairs[i][0] for i in wanted]), strict=True)
        )
        anomalous = [i for i in wanted if pairs[i][1].label == "anomalous"]
        mutes = {i: mute_id(messages[i]) for i in anomalous}
        muted = await self.records.muted(list(dict.fromkeys(mutes.values())))
        out = list(pairs)
        for i in anomalous:
            if mutes[i] in muted:
                out[i] = (pairs[i][0], replace(pairs[i][1], label="muted"))
        explain = {i for i in anomalous if out[i][1].label == "anomalous" and self.top_k > 0}
        payloads = {
            w.window_id: self.records.payload(w, v.label, messages.get(i), None, v, explain=i in explain)
            for i, (w, v) in enumerate(out)
        }
        return out, payloads

    async def failed_payloads(self, windows: Sequence[ClosedWindow]) -> dict[str, str]:
        """Records for dead-lettered windows: their lines are kept like an anomaly's (preprocessed off the loop)."""
        messages = await asyncio.to_thread(self._preprocess, list(windows))
        return {w.window_id: self.records.payload(w, "failed", m) for w, m in zip(windows, messages, strict=True)}

    def _preprocess(self, windows: Sequence[ClosedWindow]) -> list[list[str]]:
        return [[self.preprocess(line) for line in w.lines] for w in windows]

    def observe(self, pairs: Sequence[Pair], written: set[str], scorer: Any) -> None:
        """Verdicts by source (bounded label set) and the embedding cache's hit ratio."""
        m = self.metrics
        if m is None:
            return
        for window, verdict in pairs:
            if window.window_id in written:
                source = window_parts(window.window_id, window.window_key).source
                m.verdicts_by_source.labels(label=verdict.label, source=m.source_label(source)).inc()
        cache = getattr(scorer, "cache", None)
        hits, misses = getattr(cache, "hits", 0), getattr(cache, "misses", 0)
        if hits + misses:
            m.embedding_cache_hit_ratio.set(hits / (hits + misses))
