"""The classifier's record step, run after scoring and before the verdicts are written.

For every scored window it builds the record payload complete.lua writes with the verdict. Windows whose
lines are kept get their preprocessed messages; an anomalous window whose set of distinct messages is muted
becomes ``muted``; each window still anomalous gets an occlusion explanation (model/explain.py), computed in a
worker thread because it is a forward pass. Everything here is optional to the loop: without a keeper the
loop writes verdicts only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from model.explain import Contribution, explain, lead_with_novelty, one_pass
from service.metrics import ServiceMetrics
from service.records.record_store import RecordStore, mute_id, window_parts
from service.windows.store import ClosedWindow, Verdict

Pair = tuple[ClosedWindow, Verdict]
log = logging.getLogger(__name__)


def lead_with(top: Sequence[Contribution], verdict: Verdict, top_k: int) -> list[dict[str, Any]]:
    """The explanation as stored (model.explain.lead_with_novelty, which `logllm score --explain` shares)."""
    return lead_with_novelty(top, verdict.novel, verdict.known_anomalous, top_k)


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
        to_explain = [i for i in anomalous if out[i][1].label == "anomalous" and self.top_k > 0]
        explanations: dict[int, list[dict[str, Any]] | None] = {}
        if to_explain:
            found = await asyncio.to_thread(self._explain, scorer, [(out[i], messages[i]) for i in to_explain])
            explanations = dict(zip(to_explain, found, strict=True))
        payloads = {
            w.window_id: self.records.payload(w, v.label, messages.get(i), explanations.get(i), v)
            for i, (w, v) in enumerate(out)
        }
        return out, payloads

    def failed_payloads(self, windows: Sequence[ClosedWindow]) -> dict[str, str]:
        """Records for dead-lettered windows: their lines are kept like an anomaly's."""
        messages = self._preprocess(list(windows))
        return {w.window_id: self.records.payload(w, "failed", m) for w, m in zip(windows, messages, strict=True)}

    def _preprocess(self, windows: Sequence[ClosedWindow]) -> list[list[str]]:
        return [[self.preprocess(line) for line in w.lines] for w in windows]

    def _explain(self, scorer: Any, items: Sequence[tuple[Pair, list[str]]]) -> list[list[dict[str, Any]] | None]:
        """Runs in a worker thread: one batched forward pass per window."""
        score = one_pass(scorer)
        own_model = getattr(scorer, "scorer_for", None)  # models per source: explained by the model that scored it
        out: list[list[dict[str, Any]] | None] = []
        for (window, verdict), messages in items:
            if own_model is not None:
                score = one_pass(own_model(verdict.model_version) or scorer)
            started = time.perf_counter()
            leading = [*verdict.known_anomalous, *verdict.novel]  # the novelty rule's templates lead
            k = len(set(messages)) if leading else self.top_k
            try:
                raw = [window.raw_line(i) for i in range(len(window.lines))]
                top = explain(score, messages, k, base_score=verdict.score, lines=window.lines, raw_lines=raw)
            except Exception:  # the verdict matters more than its explanation: write it without one
                log.exception("explanation failed for window %s; its record has none", window.window_id)
                out.append(None)
                continue
            if self.metrics is not None:
                self.metrics.explanation_seconds.observe(time.perf_counter() - started)
            out.append(lead_with(top, verdict, self.top_k))
        return out

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
