"""The classifier loop: closed windows from the store, in batches, through the model, verdicts back.

Small batches keep latency low when traffic is light; under load a batch fills up to max_batch_windows /
max_batch_lines before max_batch_wait_ms runs out. The model runs in a worker thread so the event loop keeps
serving HTTP. A window is acked only together with its verdict (``WindowStore.complete``), so a crash
anywhere before that means a re-score by this worker's next life (``resume``) or by another (``reclaim``),
never a loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol, TypeVar

from prometheus_client import Counter, Histogram
from redis.exceptions import ResponseError

from model.chunked_scoring import score_whole
from model.preprocess import preprocess as model_preprocess
from service.windows.store import ClosedWindow, StoreUnavailable, Verdict, WindowStore

log = logging.getLogger(__name__)
IDLE_BLOCK_MS = 200  # how long an idle loop waits on Redis before it looks at stop() again
EXPLAIN_GRACE_MS = 20  # with explanations waiting: how long the stream must stay empty before one step runs
RETRY_DELAYS_S = (0.1, 0.5, 1.0, 2.0, 5.0)
T = TypeVar("T")


class Scorer(Protocol):
    """The model as the service sees it: P(anomalous) per sequence of preprocessed messages.

    A scorer with a ``max_messages`` attribute (LogLLM) gets longer windows in chunks (model/chunked_scoring.py).
    """

    threshold: float
    version: str

    def score(self, sequences: Sequence[Sequence[str]]) -> list[float]: ...


class LoopMetrics(Protocol):
    """The part of service.metrics.ServiceMetrics the loop updates."""

    verdicts: Counter
    batch_windows: Histogram
    batch_lines: Histogram
    queue_wait_seconds: Histogram
    inference_seconds: Histogram
    end_to_end_seconds: Histogram
    windows_failed: Counter
    windows_dropped: Counter


class RecordStep(Protocol):
    """What is kept about each window besides its verdict (service/records/keeper.py's RecordKeeper)."""

    async def prepare(
        self, scorer: Any, pairs: Sequence[tuple[ClosedWindow, Verdict]]
    ) -> tuple[list[tuple[ClosedWindow, Verdict]], dict[str, str]]: ...

    async def failed_payloads(self, windows: Sequence[ClosedWindow]) -> dict[str, str]: ...

    def observe(self, pairs: Sequence[tuple[ClosedWindow, Verdict]], written: set[str], scorer: Any) -> None: ...


class PatternStep(Protocol):
    """The novelty rule and the per-source template counts (service/patterns/keeper.py's PatternKeeper)."""

    async def decide(
        self, pairs: Sequence[tuple[ClosedWindow, Verdict]], sequences: Sequence[Sequence[str]]
    ) -> list[tuple[ClosedWindow, Verdict]]: ...

    async def record(
        self, pairs: Sequence[tuple[ClosedWindow, Verdict]], sequences: Sequence[Sequence[str]]
    ) -> None: ...


class SampleStep(Protocol):
    """Normal windows kept per source for training (service/records/normal_sample.py's NormalSample)."""

    async def keep(self, pairs: Sequence[tuple[ClosedWindow, Verdict]], written: set[str]) -> int: ...


class ExplainStep(Protocol):
    """Explanations after their verdicts, at lower priority (service/records/explainer.py's Explainer)."""

    def has_work(self) -> bool: ...

    def notify(self) -> None: ...

    async def step(self, scorer: Any) -> bool: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class ClassifierConfig:
    """The settings the loop needs; ``from_settings`` takes them by name from ``ServiceSettings``."""

    max_batch_windows: int = 16
    max_batch_lines: int = 4096
    max_batch_wait_ms: int = 20
    reclaim_idle_ms: int = 60_000
    max_deliveries: int = 5
    consumer: str = "logllm"
    consumer_idle_s: float = 3600.0
    explain_share: float = 0.1

    @classmethod
    def from_settings(cls, settings: object) -> ClassifierConfig:
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls) if hasattr(settings, f.name)})


class ClassifierLoop:
    """``await run()`` until ``stop()``; one per worker, any number of workers per consumer group."""

    def __init__(
        self,
        store: WindowStore,
        scorer: Scorer,
        settings: object | None = None,
        metrics: LoopMetrics | None = None,
        preprocess: Callable[[str], str] | None = None,
        records: RecordStep | None = None,
        publish: Callable[[Sequence[tuple[ClosedWindow, Verdict]]], Awaitable[None]] | None = None,
        patterns: PatternStep | None = None,
        explain: ExplainStep | None = None,
        sample: SampleStep | None = None,
    ) -> None:
        self.store = store
        self.sample = sample  # --keep-normal-sample: after complete, only the windows it wrote
        self.explain = explain  # after the verdicts: when no window waits, or explain_share of a busy loop
        self.records = records
        self.patterns = patterns
        self.publish = publish  # the verdict stream (service/delivery): called before complete = at-least-once
        self.scorer = scorer
        self.config = settings if isinstance(settings, ClassifierConfig) else ClassifierConfig.from_settings(settings)
        self.metrics = metrics
        self.preprocess = preprocess or model_preprocess
        self._stopping = asyncio.Event()
        self._held: list[ClosedWindow] = []  # read but left out of the last batch by its limits
        self._next_reclaim = 0.0
        self._explain_credit = 0.0  # seconds of explanation a busy loop has earned (explain_share of its batches)
        self._explain_step_s = 0.5  # the last step's duration: a busy loop runs one only once it has earned it

    def stop(self) -> None:
        """Ask run() to return: no new reads, the batch in flight is scored and acked first."""
        self._stopping.set()

    async def run(self) -> None:
        cfg = self.config
        resumed = await self._retrying(self.store.resume, cfg.consumer)
        if resumed:
            log.info("resuming %d windows this worker (%s) read before a restart", resumed, cfg.consumer)
        while not self._stopping.is_set():
            try:
                if time.monotonic() >= self._next_reclaim:
                    await self._reclaim()
                batch = await self._collect()
                self._count_dropped()
                if batch:
                    started = time.perf_counter()
                    await self._process(batch)
                    await self._explain_busy(time.perf_counter() - started)
                elif self.explain is not None:
                    await self.explain.step(self.scorer)
            except StoreUnavailable as exc:
                log.warning("classifier: %s; retrying", exc)
                await self._sleep(RETRY_DELAYS_S[-1])
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                log.warning("consumer groups are gone (Redis flushed or restarted empty?); creating them")
                await self.store.setup()
        if self.explain is not None:
            with contextlib.suppress(StoreUnavailable):
                await self.explain.close()
        log.info("classifier %s stopped", cfg.consumer)

    async def _reclaim(self) -> None:
        """Score what dead workers left behind, in batches within the limits; then drop dead consumers."""
        cfg = self.config
        self._next_reclaim = time.monotonic() + max(cfg.reclaim_idle_ms / 2000, 0.1)
        while not self._stopping.is_set():
            windows = await self.store.reclaim(cfg.consumer, cfg.reclaim_idle_ms, cfg.max_batch_windows)
            self._count_dropped()
            if not windows:
                break
            log.info("reclaimed %d windows idle over %d ms", len(windows), cfg.reclaim_idle_ms)
            self._held.extend(windows)
            while self._held:
                await self._process(self._take(self._held))
        dropped = await self.store.drop_idle_consumers(int(cfg.consumer_idle_s * 1000), keep=cfg.consumer)
        if dropped:
            log.info("removed consumers idle over %.0f s with nothing pending: %s", cfg.consumer_idle_s, dropped)

    async def _collect(self) -> list[ClosedWindow]:
        """The next batch: waits up to IDLE_BLOCK_MS for a first window, then max_batch_wait_ms for more."""
        cfg = self.config
        if not self._held:
            explaining = self.explain is not None and self.explain.has_work()  # then only glance, do not wait
            block_ms = EXPLAIN_GRACE_MS if explaining else IDLE_BLOCK_MS
            self._held = await self.store.read_batch(cfg.consumer, cfg.max_batch_windows, cfg.max_batch_lines, block_ms)
        if not self._held:
            return []
        deadline = time.monotonic() + cfg.max_batch_wait_ms / 1000
        while not self._stopping.is_set() and self._room(self._held):
            wait_ms = int((deadline - time.monotonic()) * 1000)
            if wait_ms <= 0:
                break
            more = await self.store.read_batch(
                cfg.consumer, cfg.max_batch_windows - len(self._held), cfg.max_batch_lines, wait_ms
            )
            if not more:
                break
            self._held.extend(more)
        return self._take(self._held)

    def _room(self, windows: list[ClosedWindow]) -> bool:
        cfg = self.config
        return len(windows) < cfg.max_batch_windows and sum(len(w.lines) for w in windows) < cfg.max_batch_lines

    def _take(self, held: list[ClosedWindow]) -> list[ClosedWindow]:
        """Cut a batch off the front of held within both limits; a window over max_batch_lines goes alone."""
        cfg = self.config
        batch: list[ClosedWindow] = []
        lines = 0
        while held and len(batch) < cfg.max_batch_windows:
            if batch and lines + len(held[0].lines) > cfg.max_batch_lines:
                break
            window = held.pop(0)
            batch.append(window)
            lines += len(window.lines)
        return batch

    async def _process(self, batch: list[ClosedWindow]) -> None:
        """Score one batch and complete it. When the model fails, the halves are tried alone, so one bad window
        cannot hold its batch back; a failure on a window alone is counted (``record_failure``) and the window
        stays unacked, retried after reclaim_idle_ms, until the model has failed on it max_deliveries times:
        then it gets a "failed" verdict (the dead-letter path). Re-reads and reclaims do not count."""
        limit = self.config.max_deliveries
        given_up = [w for w in batch if w.attempts >= limit]
        if given_up:  # counted up to the limit by a worker that died before failing it
            await self._give_up(given_up, f"the model failed on this window {limit} times; see the service log")
            batch = [w for w in batch if w.attempts < limit]
            if not batch:
                return
        picked = time.time()
        try:
            sequences, decided, inference_s = await asyncio.to_thread(self._infer, batch)
        except Exception as exc:
            if len(batch) > 1:
                log.warning("model failed on a batch of %d windows; trying its halves alone", len(batch))
                half = len(batch) // 2
                await self._process(batch[:half])
                await self._process(batch[half:])
                return
            window = batch[0]
            attempts = await self._retrying(self.store.record_failure, window)
            log.exception(
                "model failed on window %s (attempt %d of %d)", window.window_id, attempts, self.config.max_deliveries
            )
            if attempts >= limit:
                error = f"the model failed on this window {attempts} times; last error: {type(exc).__name__}: {exc}"
                await self._give_up([window], error[:500])
            return
        scored_at = time.time()
        verdicts = [
            (
                window,
                Verdict(
                    window_id=window.window_id,
                    label="anomalous" if score >= threshold else "normal",
                    score=float(score),
                    threshold=threshold,
                    n_lines=len(window.lines),
                    model_version=version,
                    closed_at=window.closed_at,
                    scored_at=scored_at,
                    n_scored=len(window.lines),  # score_whole: every line, in chunks of max_messages
                ),
            )
            for window, (score, threshold, version) in zip(batch, decided, strict=True)
        ]
        if self.patterns is not None:  # the novelty rule: before mutes and explanations, which see its label
            verdicts = await self._retrying(self.patterns.decide, verdicts, sequences)
        records: dict[str, str] = {}
        if self.records is not None:  # records, mutes and explanations: a separate step after scoring
            verdicts, records = await self.records.prepare(self.scorer, verdicts)
        if self.patterns is not None:  # counted before complete: a crash between counts a batch twice, loses none
            await self._retrying(self.patterns.record, verdicts, sequences)
        if self.publish is not None:  # delivery: publish before complete, so a crash between re-publishes
            await self._retrying(self.publish, verdicts)
        written = set(await self._retrying(self.store.complete, verdicts, records))
        self._observe(verdicts, written, picked, inference_s)
        if self.sample is not None:
            await self._retrying(self.sample.keep, verdicts, written)
        if self.records is not None:
            self.records.observe(verdicts, written, self.scorer)
        if self.explain is not None and any(v.label == "anomalous" for _, v in verdicts):
            self.explain.notify()

    async def _explain_busy(self, batch_s: float) -> None:
        """While windows keep coming, explanations still get ``explain_share`` of the loop's time (one step
        when that share has added up), so a storm that does not end cannot starve them."""
        if self.explain is None or not self.explain.has_work():
            self._explain_credit = 0.0
            return
        self._explain_credit = min(self._explain_credit + batch_s * self.config.explain_share, 60.0)
        if self._explain_credit >= self._explain_step_s and self.config.explain_share > 0:
            started = time.perf_counter()
            await self.explain.step(self.scorer)
            self._explain_step_s = time.perf_counter() - started
            self._explain_credit -= self._explain_step_s

    async def _give_up(self, windows: list[ClosedWindow], error: str) -> None:
        records = await self.records.failed_payloads(windows) if self.records is not None else None
        failed = await self._retrying(self.store.fail, windows, error, records)
        names = ", ".join(w.window_id for w in windows[:10])
        log.error("gave up on %d windows: %s: %s", len(windows), error, names)
        if self.metrics is not None and failed:
            self.metrics.windows_failed.inc(len(failed))

    def _count_dropped(self) -> None:
        for reason, count in self.store.take_dropped().items():
            if self.metrics is not None:
                self.metrics.windows_dropped.labels(reason=reason).inc(count)

    def _infer(self, batch: list[ClosedWindow]) -> tuple[list[list[str]], list[tuple[float, float, str]], float]:
        """Runs in a worker thread: preprocessing is CPU work too. The preprocessed windows and, per window, its
        score with the threshold and version of the model that decided it (models per source: ``route``)."""
        sequences = [[self.preprocess(line) for line in window.lines] for window in batch]
        started = time.perf_counter()
        route = getattr(self.scorer, "route", None)  # service/scoring/model_router.py
        if route is not None:
            decided = list(route(batch, sequences))
        else:
            scores = score_whole(self.scorer.score, sequences, getattr(self.scorer, "max_messages", None))
            threshold, version = float(self.scorer.threshold), str(self.scorer.version)
            decided = [(float(score), threshold, version) for score in scores]
        elapsed = time.perf_counter() - started
        if len(decided) != len(batch):
            raise ValueError(f"scorer returned {len(decided)} scores for {len(batch)} sequences")
        return sequences, decided, elapsed

    def _observe(
        self,
        verdicts: list[tuple[ClosedWindow, Verdict]],
        written: set[str],
        picked: float,
        inference_s: float,
    ) -> None:
        m = self.metrics
        if m is None:
            return
        m.batch_windows.observe(len(verdicts))
        m.batch_lines.observe(sum(v.n_lines for _, v in verdicts))
        m.inference_seconds.observe(inference_s)
        done = time.time()
        for window, verdict in verdicts:
            m.queue_wait_seconds.observe(max(0.0, picked - window.closed_at))
            m.end_to_end_seconds.observe(max(0.0, done - window.closed_at))
            if window.window_id in written:
                m.verdicts.labels(label=verdict.label).inc()

    async def _retrying(self, call: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Ride out a short Redis outage, so a scored batch still gets its verdicts (even while stopping)."""
        for delay in RETRY_DELAYS_S:
            try:
                return await call(*args)
            except StoreUnavailable as exc:
                log.warning("%s failed (%s); retrying in %.1f s", getattr(call, "__name__", call), exc, delay)
                await asyncio.sleep(delay)
        return await call(*args)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once on stop()."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
