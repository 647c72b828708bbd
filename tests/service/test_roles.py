"""Roles and consumers for scale-out, on a real Redis: an api replica serves intake without the model, a worker
scores with only health and metrics routes, consumer names are unique per process, a dead consumer's windows
are taken over and its name removed, and the idle sweep is safe when many replicas run it at once.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from bench.common import REPO, ServiceProcess
from service.app import create_app
from service.scoring.classifier import ClassifierConfig, ClassifierLoop
from service.settings import ServiceSettings
from service.windows.store import GROUP, Verdict, WindowStore
from tests.service.test_app import KeywordScorer, wait_for

MakeStore = Callable[..., Awaitable[WindowStore]]


def started(app_settings: ServiceSettings, scorer: KeywordScorer | None = None) -> Iterator[TestClient]:
    with TestClient(create_app(app_settings, scorer=scorer)) as client:
        yield client


@pytest.fixture
def api(redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    """An api replica; its checkpoint directory has no manifest, which only a model-loading role would mind."""
    settings = ServiceSettings(role="api", redis_url=redis_url, checkpoint=tmp_path, sweep_interval_s=0.05)
    yield from started(settings)


@pytest.fixture
def worker(redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = ServiceSettings(role="worker", redis_url=redis_url, checkpoint=tmp_path, max_batch_wait_ms=5)
    yield from started(settings, KeywordScorer())


def task_names(client: TestClient) -> list[str]:
    return [task.get_name() for task in client.app.state.runtime.tasks]  # type: ignore[attr-defined]


def test_api_role_takes_lines_and_is_ready_without_a_model(api: TestClient, redis_url: str) -> None:
    ready = api.get("/health/ready")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}
    assert task_names(api) == ["logllm-sweeper"]
    response = api.post("/logs", json={"lines": [{"message": f"step {i} blk_1"} for i in range(3)]})
    assert response.status_code == 200, response.text
    assert api.post("/sequences/blk_1/close").status_code == 200
    time.sleep(0.3)  # no classifier in this process: the window stays queued for a worker
    assert api.get("/sequences/session:default:blk_1/verdict").json()["status"] == "pending"
    with redis.Redis.from_url(redis_url) as client:  # the api never reads the queue
        assert all(client.xinfo_consumers(f"logllm:{{p{p}}}:ready", GROUP) == [] for p in range(4))


def test_worker_role_scores_queued_windows_and_serves_only_health_and_metrics(
    api: TestClient, worker: TestClient
) -> None:
    assert task_names(worker) == ["logllm-classifier"]
    assert worker.post("/logs", json={"lines": [{"message": "blk_2"}]}).status_code == 404
    assert worker.get("/sequences/session:default:blk_2/verdict").status_code == 404
    wait_for(lambda: worker.get("/health/ready").status_code == 200, what="worker ready")
    api.post("/logs", json={"lines": [{"message": "disk error blk_2"}]})
    api.post("/sequences/blk_2/close")
    url = "/sequences/session:default:blk_2/verdict"
    found = wait_for(lambda: (v := api.get(url).json())["status"] != "pending" and v)
    assert found["status"] == "anomalous"
    assert 'logllm_verdicts_total{label="anomalous"} 1.0' in worker.get("/metrics").text


def test_api_process_never_loads_torch(redis_url: str, tmp_path: Path) -> None:
    """The point of the api role: a small process that starts in seconds (README gives the measured figures)."""
    api = ServiceProcess(tmp_path / "no-checkpoint", {"role": "api", "redis_url": redis_url})
    api.start(ready_timeout_s=60)
    try:
        maps = Path(f"/proc/{api.pid}/maps").read_text()
        assert "libtorch" not in maps, "the api role mapped torch's libraries"
    finally:
        api.stop()


def test_worker_process_serves_health_on_the_worker_port(redis_url: str, tmp_path: Path) -> None:
    worker = ServiceProcess(
        tmp_path / "no-checkpoint",
        {"role": "worker", "redis_url": redis_url, "scorer": "bench.scorers:fixed_cost"},
    )
    worker.env["LOGLLM_WORKER_PORT"] = str(worker.port)
    worker.env["LOGLLM_PORT"] = "1"  # were the worker to listen on port, it could not bind it
    worker.start(ready_timeout_s=60)
    worker.stop()


def test_default_consumer_names_differ_per_process() -> None:
    code = "from service.settings import ServiceSettings; print(ServiceSettings().consumer)"
    names = [
        subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    ]
    assert names[0] != names[1] and all(n.strip() for n in names)


async def read_and_die(store: WindowStore, consumer: str, n: int) -> list[str]:
    """What a worker does before a SIGKILL: it read windows and never completed them."""
    windows = await store.read_batch(consumer, max_windows=n, max_lines=10_000, block_ms=100)
    return [w.window_id for w in windows]


@pytest.mark.anyio
async def test_a_dead_consumer_is_removed_only_once_it_has_nothing_pending(make_store: MakeStore) -> None:
    store = await make_store(partitions=2, max_session_lines=1)
    await store.append([(f"blk_{i}", "line") for i in range(4)], "session")
    assert len(await read_and_die(store, "dead", 4)) == 4
    await asyncio.sleep(0.2)
    assert await store.drop_idle_consumers(100, keep="live") == []  # idle, but windows pending: kept
    reclaimed = await store.reclaim("live", min_idle_ms=100, count=10)
    assert len(reclaimed) == 4
    assert await store.drop_idle_consumers(60_000, keep="live") == []  # not idle long enough yet
    assert await store.drop_idle_consumers(100, keep="live") == ["dead"]
    for p in range(2):
        names = {c["name"] for c in await store.redis.xinfo_consumers(store.prefix(p) + "ready", GROUP)}
        assert b"dead" not in names and "dead" not in names


@pytest.mark.anyio
async def test_a_live_worker_scores_a_dead_ones_windows_and_then_forgets_it(make_store: MakeStore) -> None:
    store = await make_store(partitions=2, max_session_lines=1)
    await store.append([(f"blk_{i}", f"error {i}" if i % 2 else "fine") for i in range(6)], "session")
    taken = await read_and_die(store, "dead", 6)
    config = ClassifierConfig(reclaim_idle_ms=300, consumer="live", consumer_idle_s=0.5, max_batch_wait_ms=5)
    loop = ClassifierLoop(store, KeywordScorer(), config, preprocess=str)
    running = asyncio.create_task(loop.run())

    async def consumers() -> set[str]:
        info = [await store.redis.xinfo_consumers(store.prefix(p) + "ready", GROUP) for p in range(2)]
        return {c["name"].decode() if isinstance(c["name"], bytes) else c["name"] for i in info for c in i}

    try:
        deadline = time.monotonic() + 10
        while "dead" in await consumers():
            assert time.monotonic() < deadline, "the dead consumer was never removed"
            await asyncio.sleep(0.05)
    finally:
        loop.stop()
        await running
    verdicts = [await store.verdict(window_id) for window_id in taken]
    assert all(isinstance(v, Verdict) for v in verdicts)
    assert await store.queue_depth() == 0


@pytest.mark.anyio
async def test_idle_sweep_by_many_replicas_at_once_closes_each_window_once(make_store: MakeStore) -> None:
    """Safe by idempotence, no lock: sweep.lua selects and closes idle windows in one script, by Redis's clock."""
    replicas = [await make_store(partitions=4, idle_timeout_s=0.1) for _ in range(4)]
    keys = [f"blk_{i}" for i in range(400)]
    await replicas[0].append([(key, "only line") for key in keys], "session")
    await asyncio.sleep(0.3)  # past idle_timeout_s by the Redis clock
    closed = await asyncio.gather(*(r.sweep_idle() for r in replicas))
    all_closed = [window_id for result in closed for window_id in result]
    assert sorted(all_closed) == sorted(keys)  # each once, whichever replica got there first
    assert sum(1 for result in closed if result) >= 1
    assert await replicas[0].queue_depth() == len(keys) and await replicas[0].open_windows() == 0
