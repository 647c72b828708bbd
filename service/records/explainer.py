"""Explanations on the worker's lower-priority path: the verdicts are written first, the explanations follow.

An occlusion explanation (model/explain.py) scores one variant of the window per distinct message, so one
anomalous window costs about as much model time as several windows' verdicts; done inline, an alert storm
slowed the verdicts down 3-7x exactly when they matter. So complete.lua queues each anomalous window with its
record (explain_queue.py) and the classifier loop calls ``step`` only when no closed window waits, or for a
bounded share of its time while they do (``explain_share``). One step is at most one forward pass, so a closed
window never waits behind more than that; a pass holds as many variants as fit in ``PASS_TARGET_S`` of model time
at the last passes' speed (on a CPU often one, on a GPU up to ``CHUNK``), because a fixed count of long windows'
variants held a verdict back by several windows' scoring. A window's passes stop at ``explain_budget_s`` of model
time (status ``partial``: the messages measured so far).

Cheaper than occlusion where it can be: a window flagged by the novelty rule is explained by the templates the
rule found (no forward pass: they are why it is anomalous), and windows with the same set of distinct messages
share one occlusion ranking (a Redis cache keyed like the mute id, per model version), as storms repeat a few
message sets.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from model.explain import explain, one_pass
from service.metrics import ServiceMetrics
from service.records.explain_queue import ExplainJob, ExplainQueue
from service.records.record_store import mute_id
from service.windows.store import _text, _translated

log = logging.getLogger(__name__)
CHUNK = 16  # most variants in one forward pass (a scoring batch's worth)
FIRST_CHUNK = 4  # variants of the first pass, before the model's speed is measured
PASS_TARGET_S = 0.2  # model time one pass aims at: about what a window closed meanwhile waits behind it
CLAIM_PER_PARTITION = 8
LEASE_S = 300.0  # a claimed job another worker may take over after this (it held it, or it died)
CACHE_TTL_S = 86_400
IDLE_CLAIM_S = 1.0  # an idle worker looks for other workers' (or a previous life's) queued work this often


@dataclass
class Occlusion:
    """An occlusion explanation in progress: one variant per distinct message, scored a chunk per step."""

    job: ExplainJob
    distinct: list[str]
    scores: list[float] = field(default_factory=list)
    spent_s: float = 0.0

    def next_chunk(self, size: int) -> list[list[str]]:
        done = len(self.scores)
        return [[m for m in self.job.messages if m != d] for d in self.distinct[done : done + size]]

    @property
    def finished(self) -> bool:
        return len(self.scores) >= len(self.distinct)


def novelty_explanation(job: ExplainJob) -> list[dict[str, Any]]:
    """The templates the novelty rule found, known-anomalous ones first: no contribution was measured, so
    ``contribution`` is null; count and first line as an occlusion entry has them."""
    counts = Counter(job.messages)
    first = {m: i for i, m in reversed(list(enumerate(job.messages)))}
    kinds = {m: "known_anomalous" for m in job.known_anomalous} | {m: "novel" for m in job.novel}
    ordered = sorted((m for m in kinds if m in counts), key=lambda m: kinds[m] != "known_anomalous")
    out = []
    for m in ordered:
        entry: dict[str, Any] = {"message": m, "contribution": None, "count": counts[m], "line": job.lines[first[m]]}
        if job.raw_lines is not None:
            entry["raw"] = job.raw_lines[first[m]]
        out.append(entry | {"novelty": kinds[m]})
    return out


def ranked(job: ExplainJob, contributions: dict[str, float], top_k: int) -> list[dict[str, Any]]:
    """The top_k messages by contribution, with this window's counts and first lines (model.explain.explain
    over the measured contributions: a message not measured counts 0)."""
    distinct = list(dict.fromkeys(job.messages))
    variant_scores = [job.score - contributions.get(d, 0.0) for d in distinct] if len(distinct) > 1 else []
    top = explain(lambda _: variant_scores, job.messages, top_k, job.score, job.lines, job.raw_lines)
    return [c.to_json() for c in top]


class Explainer:
    """One per classifier loop; ``step`` does one slice of work, ``close`` hands back what it claimed."""

    def __init__(
        self,
        queue: ExplainQueue,
        top_k: int,
        budget_s: float,
        metrics: ServiceMetrics | None = None,
        chunk: int = CHUNK,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.queue = queue
        self.redis: Any = queue.redis
        self.cache_prefix = f"{queue.store.config.key_prefix}:{{explain}}:"
        self.top_k = top_k
        self.budget_s = budget_s
        self.metrics = metrics
        self.chunk = chunk
        self.clock = clock  # measures model time (tests drive it)
        self._line_s: float | None = None  # model seconds per message of a variant, smoothed over the passes
        self._jobs: list[ExplainJob] = []
        self._current: Occlusion | None = None
        self._more = True  # the queue may hold work: claim before deciding there is none
        self._next_claim = 0.0  # monotonic time of the next claim when nothing was announced

    def has_work(self) -> bool:
        """Work known to wait (claimed, in progress, or announced by ``notify``)."""
        return bool(self._jobs) or self._current is not None or self._more

    def notify(self) -> None:
        """Anomalous windows were just written: their explanations are queued."""
        self._more = True

    async def step(self, scorer: Any) -> bool:
        """Explain what needs no forward pass, then run at most one chunk of variants; False when idle."""
        if self._current is None:
            self._current = await self._next(scorer)
            if self._current is None:
                return False
        work = self._current
        model = _model_of(scorer, work.job)
        variants = work.next_chunk(self.pass_size(len(work.job.messages)))
        started = self.clock()
        try:
            work.scores.extend(await asyncio.to_thread(one_pass(model), variants))
        except Exception:  # the verdict is written; an explanation that fails leaves its record without one
            log.exception("explanation failed for window %s", work.job.window_id)
            self._current = None
            await self.queue.finish(work.job.partition, [(work.job.window_id, "", "failed")])
            self._count("failed")
            return True
        took = self.clock() - started
        work.spent_s += took
        line_s = took / max(1, sum(len(v) for v in variants))
        self._line_s = line_s if self._line_s is None else (self._line_s + line_s) / 2
        if work.finished or work.spent_s >= self.budget_s:
            self._current = None
            await self._write_occlusion(work, _version_of(scorer, work.job))
        return True

    def pass_size(self, messages: int) -> int:
        """Variants of a window of this many messages that fit in one pass of ``PASS_TARGET_S`` (at least one)."""
        if self._line_s is None:
            return min(FIRST_CHUNK, self.chunk)
        return max(1, min(self.chunk, int(PASS_TARGET_S / max(self._line_s * messages, 1e-9))))

    async def close(self) -> None:
        """Release the claimed jobs (a stopping worker), so another picks them up at once."""
        jobs = self._jobs + ([self._current.job] if self._current is not None else [])
        self._jobs, self._current = [], None
        if jobs:
            await self.queue.release(jobs)

    async def _next(self, scorer: Any) -> Occlusion | None:
        """The next job that needs the model; jobs explained without it are written on the way."""
        while True:
            if not self._jobs:
                if not self._more and time.monotonic() < self._next_claim:
                    return None
                self._next_claim = time.monotonic() + IDLE_CLAIM_S
                jobs, unusable = await self.queue.claim(CLAIM_PER_PARTITION, LEASE_S)
                for partition, window_id in unusable:
                    await self.queue.finish(partition, [(window_id, "", "failed")])
                self._jobs = jobs
                self._more = bool(jobs)
                if not jobs:
                    return None
            job = self._jobs.pop(0)
            distinct = list(dict.fromkeys(job.messages))
            if job.novel or job.known_anomalous:
                await self._write(job, novelty_explanation(job), "done", "novelty")
            elif len(distinct) == 1:  # nothing to compare with: the message gets the whole score
                await self._write(job, ranked(job, {distinct[0]: job.score}, self.top_k), "done", "occlusion")
            elif (cached := await self._cached(_version_of(scorer, job), distinct)) is not None:
                await self._write(job, ranked(job, cached, self.top_k), "done", "cached")
            else:
                return Occlusion(job, distinct)

    async def _write_occlusion(self, work: Occlusion, version: str) -> None:
        contributions = {d: work.job.score - s for d, s in zip(work.distinct, work.scores, strict=False)}
        status = "done" if work.finished else "partial"
        if work.finished:
            with _translated():
                await self.redis.set(self._cache_key(version, work.distinct), json.dumps(contributions), ex=CACHE_TTL_S)
        if self.metrics is not None:
            self.metrics.explanation_seconds.observe(work.spent_s)
        await self._write(work.job, ranked(work.job, contributions, self.top_k), status, "occlusion")

    async def _write(self, job: ExplainJob, explanation: list[dict[str, Any]], status: str, how: str) -> None:
        text = json.dumps(explanation, separators=(",", ":"))
        await self.queue.finish(job.partition, [(job.window_id, text, status)])
        self._count(how)

    def _cache_key(self, version: str, distinct: Sequence[str]) -> str:
        return self.cache_prefix + hashlib.sha256(version.encode()).hexdigest()[:12] + ":" + mute_id(distinct)

    async def _cached(self, version: str, distinct: Sequence[str]) -> dict[str, float] | None:
        with _translated():
            found = await self.redis.get(self._cache_key(version, distinct))
        if found is None:
            return None
        contributions: dict[str, float] = json.loads(_text(found))
        return contributions if all(d in contributions for d in distinct) else None

    def _count(self, how: str) -> None:
        if self.metrics is not None:
            self.metrics.explanations.labels(how=how).inc()


def _model_of(scorer: Any, job: ExplainJob) -> Any:
    """The model that scored the job's window (models per source: ``scorer_for``), else the scorer itself."""
    scorer_for = getattr(scorer, "scorer_for", None)
    own = scorer_for(job.model_version) if scorer_for is not None and job.model_version else None
    return own if own is not None else scorer


def _version_of(scorer: Any, job: ExplainJob) -> str:
    return str(getattr(_model_of(scorer, job), "version", ""))
