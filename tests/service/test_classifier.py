"""ClassifierLoop against a real Redis, with a deterministic keyword scorer standing in for the model."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Sequence

import pytest

from service.metrics import ServiceMetrics
from service.scoring.classifier import ClassifierConfig, ClassifierLoop
from service.windows.store import Verdict, WindowStore

pytestmark = pytest.mark.anyio
MakeStore = Callable[..., Awaitable[WindowStore]]


class ErrorFraction:
    """P(anomalous) = the share of lines that say 'error'; records every batch; can be held at a gate."""

    threshold = 0.5
    version = "error-fraction"

    def __init__(self) -> None:
        self.batches: list[list[list[str]]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def score(self, sequences: Sequence[Sequence[str]]) -> list[float]:
        self.entered.set()
        assert self.gate.wait(timeout=30), "gate never opened"
        self.batches.append([list(s) for s in sequences])
        return [sum("error" in line for line in s) / len(s) for s in sequences]


def mark(line: str) -> str:
    return "pre: " + line


def config(**overrides: object) -> ClassifierConfig:
    values: dict[str, object] = {"max_batch_wait_ms": 20, "reclaim_idle_ms": 60_000, "consumer": "test"}
    return ClassifierConfig(**{**values, **overrides})  # type: ignore[arg-type]


async def close_sessions(store: WindowStore, sizes: dict[str, int], errors: int = 0) -> None:
    for key, n in sizes.items():
        lines = [f"{key} {'error' if i < errors else 'ok'} {i}" for i in range(n)]
        await store.append([(key, line) for line in lines], "session")
        await store.close(key)


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def verdicts(store: WindowStore, ids: list[str]) -> dict[str, Verdict | str | None]:
    return {i: await store.verdict(i) for i in ids}


async def all_scored(store: WindowStore, ids: list[str]) -> bool:
    return all(isinstance(v, Verdict) for v in (await verdicts(store, ids)).values())


async def test_batches_stay_within_the_limits_and_every_window_gets_its_verdict(
    make_store: MakeStore,
) -> None:
    store = await make_store(partitions=4)
    sizes = {f"s{i}": 1 + i % 6 for i in range(30)}
    await close_sessions(store, sizes, errors=1)
    scorer = ErrorFraction()
    metrics = ServiceMetrics()
    loop = ClassifierLoop(store, scorer, config(max_batch_windows=4, max_batch_lines=10), metrics, mark)
    task = asyncio.create_task(loop.run())
    await wait_until(lambda: all_scored(store, list(sizes)))
    loop.stop()
    await asyncio.wait_for(task, 10)

    assert sum(len(b) for b in scorer.batches) == len(sizes)  # each window scored exactly once
    for batch in scorer.batches:
        assert len(batch) <= 4
        assert sum(len(s) for s in batch) <= 10
    assert scorer.batches[0][0][0].startswith("pre: ")  # lines went through preprocess
    for key, n in sizes.items():
        found = await store.verdict(key)
        assert isinstance(found, Verdict)
        assert found.n_lines == n
        assert found.score == pytest.approx(1 / n)
        assert found.label == ("anomalous" if 1 / n >= 0.5 else "normal")
        assert found.model_version == "error-fraction"
        assert found.closed_at <= found.scored_at
    assert await store.queue_depth() == 0
    sample = metrics.registry.get_sample_value
    assert sample("logllm_verdicts_total", {"label": "anomalous"}) == sum(n <= 2 for n in sizes.values())
    assert sample("logllm_batch_windows_sum") == len(sizes)
    assert sample("logllm_end_to_end_seconds_count") == len(sizes)


async def test_a_window_longer_than_max_batch_lines_is_scored_alone(make_store: MakeStore) -> None:
    store = await make_store()
    await close_sessions(store, {"short": 2, "long": 25, "tail": 3})
    scorer = ErrorFraction()
    loop = ClassifierLoop(store, scorer, config(max_batch_lines=10), preprocess=str)
    task = asyncio.create_task(loop.run())
    await wait_until(lambda: all_scored(store, ["short", "long", "tail"]))
    loop.stop()
    await asyncio.wait_for(task, 10)
    assert [len(b) for b in scorer.batches if any(len(s) == 25 for s in b)] == [1]  # scored once, alone
    assert all(sum(len(s) for s in b) <= 10 for b in scorer.batches if len(b) > 1)
    assert sorted(len(s) for b in scorer.batches for s in b) == [2, 3, 25]


async def test_graceful_stop_finishes_and_acks_the_batch_in_flight(make_store: MakeStore) -> None:
    store = await make_store(partitions=1)
    await close_sessions(store, {f"s{i}": 1 for i in range(6)})
    scorer = ErrorFraction()
    scorer.gate.clear()
    loop = ClassifierLoop(store, scorer, config(max_batch_windows=2, max_batch_wait_ms=0), preprocess=str)
    task = asyncio.create_task(loop.run())
    assert await asyncio.to_thread(scorer.entered.wait, 10)
    loop.stop()  # the model is mid-batch
    scorer.gate.set()
    await asyncio.wait_for(task, 10)

    assert len(scorer.batches) == 1
    assert len(scorer.batches[0]) == 2
    scored = [k for k, v in (await verdicts(store, [f"s{i}" for i in range(6)])).items() if isinstance(v, Verdict)]
    assert len(scored) == 2
    assert await store.queue_depth() == 4  # the rest waits in Redis for the next start
    pending = await store.redis.xpending(store.prefix(0) + "ready", "classifiers")
    assert pending["pending"] == 0  # nothing was read after stop()


async def test_a_crashed_consumers_windows_get_exactly_one_verdict_each(make_store: MakeStore) -> None:
    store = await make_store(partitions=4)
    sizes = {f"s{i}": 2 for i in range(12)}
    await close_sessions(store, sizes)
    crashed = await store.read_batch("crashed", 5, 1000, 0)  # read, then the worker dies without acking
    assert len(crashed) == 5

    fresh = await make_store(partitions=4)  # a new process, another worker name
    scorer = ErrorFraction()
    loop = ClassifierLoop(fresh, scorer, config(consumer="survivor", reclaim_idle_ms=100), preprocess=str)
    task = asyncio.create_task(loop.run())
    await wait_until(lambda: all_scored(fresh, list(sizes)))
    loop.stop()
    await asyncio.wait_for(task, 10)

    scored_ids = [s[0].split()[0] for b in scorer.batches for s in b]
    assert sorted(scored_ids) == sorted(sizes)  # every window once, none twice
    assert await fresh.queue_depth() == 0
    late = [(w, Verdict(w.window_id, "anomalous", 1.0, 0.5, 2, "late", 0.0, 0.0)) for w in crashed]
    assert await store.complete(late) == []  # the dead worker's late completes change nothing
    verdict_keys = [k async for k in fresh.redis.scan_iter("logllm:*:verdict:*")]
    assert len(verdict_keys) == len(sizes)


async def test_a_restarted_worker_resumes_its_own_windows_at_once(make_store: MakeStore) -> None:
    store = await make_store()
    await close_sessions(store, {"a": 1, "b": 1})
    assert len(await store.read_batch("worker", 10, 100, 0)) == 2  # then killed
    scorer = ErrorFraction()
    fresh = await make_store()
    loop = ClassifierLoop(fresh, scorer, config(consumer="worker", reclaim_idle_ms=600_000), preprocess=str)
    task = asyncio.create_task(loop.run())
    await wait_until(lambda: all_scored(fresh, ["a", "b"]), timeout=5)
    loop.stop()
    await asyncio.wait_for(task, 10)


async def test_a_failing_model_leaves_the_windows_queued(make_store: MakeStore) -> None:
    class Broken(ErrorFraction):
        def score(self, sequences: Sequence[Sequence[str]]) -> list[float]:
            self.entered.set()
            raise RuntimeError("CUDA out of memory")

    store = await make_store()
    await close_sessions(store, {"a": 1})
    scorer = Broken()
    loop = ClassifierLoop(store, scorer, config(), preprocess=str)
    task = asyncio.create_task(loop.run())
    assert await asyncio.to_thread(scorer.entered.wait, 10)
    loop.stop()
    await asyncio.wait_for(task, 10)
    assert await store.verdict("a") == "pending"
    assert await store.queue_depth() == 1


class PoisonedBy(ErrorFraction):
    """Fails on any batch that holds a line saying 'poison', like a model that breaks on one input."""

    def score(self, sequences: Sequence[Sequence[str]]) -> list[float]:
        if any("poison" in line for s in sequences for line in s):
            raise RuntimeError("NaN in the logits")
        return super().score(sequences)


async def test_one_bad_window_does_not_hold_back_its_batch_and_is_given_up_after_max_deliveries(
    make_store: MakeStore,
) -> None:
    store = await make_store(partitions=2)
    await close_sessions(store, {f"s{i}": 1 for i in range(6)})
    await store.append([("bad", "poison pill"), ("bad", "second line")], "session")
    await store.close("bad")
    scorer, metrics = PoisonedBy(), ServiceMetrics()
    loop = ClassifierLoop(
        store, scorer, config(max_batch_windows=8, reclaim_idle_ms=1, max_deliveries=3), metrics, preprocess=str
    )
    await loop._process(await store.read_batch("test", 8, 1000, 0))
    assert await all_scored(store, [f"s{i}" for i in range(6)])  # the halves without the bad window
    assert await store.verdict("bad") == "pending" and await store.queue_depth() == 1

    for _ in range(3):  # handed out again (XAUTOCLAIM) until the delivery count passes max_deliveries
        await asyncio.sleep(0.01)
        await loop._reclaim()
    failed = await store.verdict("bad")
    assert isinstance(failed, Verdict) and failed.label == "failed" and failed.score is None
    assert "failed on this window 3 times; last error: RuntimeError: NaN in the logits" in failed.error
    assert failed.n_lines == 2
    assert await store.queue_depth() == 0
    kept = await store.redis.lrange(store.prefix(store.partition("bad")) + "failed:bad", 0, -1)
    assert kept == [b"poison pill", b"second line"]  # the lines stay for inspection
    assert metrics.windows_failed._value.get() == 1
    assert metrics.verdicts.labels(label="normal")._value.get() == 6


async def test_the_real_preprocessing_is_used_by_default(make_store: MakeStore) -> None:
    preprocess = pytest.importorskip("model.preprocess").preprocess
    store = await make_store()
    await close_sessions(store, {"blk_1": 1})
    scorer = ErrorFraction()
    loop = ClassifierLoop(store, scorer, config())
    task = asyncio.create_task(loop.run())
    await wait_until(lambda: all_scored(store, ["blk_1"]))
    loop.stop()
    await asyncio.wait_for(task, 10)
    assert scorer.batches == [[[preprocess("blk_1 ok 0")]]]


def test_config_is_taken_by_name_from_a_settings_object() -> None:
    class Settings:
        max_batch_windows = 7
        consumer = "w1"
        unrelated = "ignored"

    assert ClassifierConfig.from_settings(Settings()) == ClassifierConfig(max_batch_windows=7, consumer="w1")


async def test_re_reads_and_reclaims_without_a_model_failure_never_fail_a_window(make_store: MakeStore) -> None:
    store = await make_store()
    await close_sessions(store, {"s": 2})
    for _ in range(4):  # this worker restarts and re-reads, and reclaims its own entry, again and again
        await store.resume("w")
        await store.read_batch("w", 10, 100, 0)
        await store.reclaim("w", 0, 10)
    scorer = ErrorFraction()
    loop = ClassifierLoop(store, scorer, config(consumer="w", max_deliveries=2), preprocess=str)
    task = asyncio.create_task(loop.run())
    await wait_until(lambda: all_scored(store, ["s"]))
    loop.stop()
    await asyncio.wait_for(task, 10)
    found = await store.verdict("s")
    assert isinstance(found, Verdict) and found.label == "normal"


async def test_an_entry_whose_lines_are_gone_is_acked_and_counted_as_dropped(make_store: MakeStore) -> None:
    store = await make_store(partitions=1)
    await close_sessions(store, {"lost": 1, "kept": 1})
    await store.redis.delete(store.prefix(0) + "closed:lost")
    metrics = ServiceMetrics()
    loop = ClassifierLoop(store, ErrorFraction(), config(), metrics, preprocess=str)
    task = asyncio.create_task(loop.run())
    await wait_until(lambda: all_scored(store, ["kept"]))
    await wait_until(lambda: _zero(store))
    loop.stop()
    await asyncio.wait_for(task, 10)
    assert metrics.registry.get_sample_value("logllm_windows_dropped_total", {"reason": "lines_missing"}) == 1
    pending = await store.redis.xpending(store.prefix(0) + "ready", "classifiers")
    assert pending["pending"] == 0


async def _zero(store: WindowStore) -> bool:
    return await store.queue_depth() == 0


async def test_a_window_longer_than_the_model_limit_is_scored_whole_in_chunks(make_store: MakeStore) -> None:
    class Limited(ErrorFraction):
        max_messages = 4

    store = await make_store()
    lines = [f"ok {i}" for i in range(9)] + ["error at the end"]
    await store.append([("long", line) for line in lines], "session")
    await store.close("long")
    scorer = Limited()
    loop = ClassifierLoop(store, scorer, config(), preprocess=str)
    task = asyncio.create_task(loop.run())
    await wait_until(lambda: all_scored(store, ["long"]))
    loop.stop()
    await asyncio.wait_for(task, 10)
    assert [[len(s) for s in b] for b in scorer.batches] == [[4, 4, 2]]  # every line, in one model call
    found = await store.verdict("long")
    assert isinstance(found, Verdict)
    assert (found.n_lines, found.n_scored, found.score, found.label) == (10, 10, 0.5, "anomalous")


async def test_the_store_hands_out_each_window_with_its_key_and_closing_reason(make_store: MakeStore) -> None:
    store = await make_store()
    await store.append([("session:web:a", "x"), ("session:web:a", "y")], "session")
    await store.close("session:web:a")
    [window] = await store.read_batch("c", 10, 100, 0)
    assert (window.window_id, window.window_key, window.reason, window.lines, window.attempts) == (
        "session:web:a",
        "session:web:a",
        "explicit",
        ["x", "y"],
        0,
    )
