"""The window store and the service on a real three-node Redis Cluster (redis-server processes on loopback).

Every partition's keys share one hash slot, so each script runs on the node that owns it; these tests check
that partitions really land on different nodes and that nothing needs a cross-slot command.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from redis.asyncio import RedisCluster

from service.app import create_app
from service.scoring.classifier import ClassifierConfig, ClassifierLoop
from service.settings import ServiceSettings
from service.windows.store import LayoutMismatch, StoreConfig, TooManySessions, Verdict, WindowStore
from tests.service.local_cluster import LocalCluster
from tests.service.test_app import KeywordScorer, scored, wait_for

PARTITIONS = 8


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


@pytest.fixture
def cluster_url(cluster: LocalCluster) -> str:
    with redis.RedisCluster.from_url(cluster.url) as client:
        client.flushall(target_nodes=redis.RedisCluster.PRIMARIES)
    return cluster.url


@pytest.fixture
async def store(cluster_url: str) -> AsyncIterator[WindowStore]:
    client = RedisCluster.from_url(cluster_url)
    window_store = WindowStore(client, StoreConfig(partitions=PARTITIONS, max_session_lines=3, idle_timeout_s=0.2))
    await window_store.setup()
    yield window_store
    await client.aclose()


@pytest.mark.anyio
async def test_partitions_spread_over_every_node(store: WindowStore) -> None:
    nodes = {store.redis.get_node_from_key(store.prefix(p) + "ready").name for p in range(PARTITIONS)}
    assert len(nodes) == 3


@pytest.mark.anyio
async def test_windows_close_queue_and_get_one_verdict_each_across_nodes(store: WindowStore) -> None:
    keys = [f"blk_{i}" for i in range(24)]
    result = await store.append([(key, f"{key} line {n}") for key in keys for n in range(3)], "session")
    assert result.accepted == 72 and sorted(result.closed) == sorted(keys)  # max_session_lines=3
    await store.append([("blk_idle", "one line")], "session")
    await asyncio.sleep(0.3)  # idle_timeout_s=0.2, by the clock of the node that owns the partition
    assert await store.sweep_idle() == ["blk_idle"]
    assert await store.queue_depth() == 25 and await store.open_windows() == 0

    batches = []
    while batch := await store.read_batch("worker", max_windows=10, max_lines=1000, block_ms=50):
        assert len(batch) <= 10
        batches.append(batch)
    windows = [w for batch in batches for w in batch]
    assert sorted(w.window_id for w in windows) == sorted([*keys, "blk_idle"])
    assert {w.partition for w in windows} == set(range(PARTITIONS))
    assert all(w.lines == [f"{w.window_id} line {n}" for n in range(3)] for w in windows if w.window_id != "blk_idle")

    verdicts = [(w, Verdict(w.window_id, "normal", 0.1, 0.5, len(w.lines), "v", w.closed_at, 1.0)) for w in windows]
    assert sorted(await store.complete(verdicts)) == sorted(w.window_id for w in windows)
    assert await store.complete(verdicts) == []  # a re-score writes no second verdict
    assert await store.queue_depth() == 0
    found = await store.verdict("blk_7")
    assert isinstance(found, Verdict) and found.n_lines == 3


@pytest.mark.anyio
async def test_an_empty_cluster_read_waits_about_block_ms_and_returns_nothing(store: WindowStore) -> None:
    for block_ms in (100, 400):
        started = time.perf_counter()
        assert await store.read_batch("worker", 16, 1000, block_ms=block_ms) == []
        waited = time.perf_counter() - started
        # at least block_ms (less would be a busy loop), and not far past it (a loose bound, not a perf target)
        assert block_ms / 1000 * 0.95 <= waited < block_ms / 1000 + 1.0, (block_ms, waited)


@pytest.mark.anyio
async def test_a_dead_workers_windows_are_reclaimed_on_every_node(store: WindowStore) -> None:
    keys = [f"blk_{i}" for i in range(12)]
    await store.append([(key, "x") for key in keys for _ in range(3)], "session")
    taken = await store.read_batch("dead", 12, 1000, 50)
    assert len(taken) == 12
    scorer = KeywordScorer()
    loop = ClassifierLoop(store, scorer, ClassifierConfig(consumer="survivor", reclaim_idle_ms=1), preprocess=str)
    await loop._reclaim()
    assert len(scorer.scored) == 12 and await store.queue_depth() == 0
    assert all(isinstance(found, Verdict) for found in [await store.verdict(key) for key in keys])


@pytest.mark.anyio
async def test_the_layout_is_stored_on_the_cluster_and_another_partition_count_is_refused(
    store: WindowStore, cluster_url: str
) -> None:
    client = RedisCluster.from_url(cluster_url)
    try:
        with pytest.raises(LayoutMismatch, match=f"partitions={PARTITIONS}.*partitions=3"):
            await WindowStore(client, StoreConfig(partitions=3)).setup()
        await WindowStore(client, StoreConfig(partitions=PARTITIONS)).setup()
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_concurrent_requests_cannot_pass_the_open_window_cap_on_the_cluster(cluster_url: str) -> None:
    clients = [RedisCluster.from_url(cluster_url) for _ in range(2)]
    stores = [WindowStore(c, StoreConfig(partitions=PARTITIONS, max_open_windows=PARTITIONS)) for c in clients]
    await stores[0].setup()

    async def one(i: int) -> int:
        try:
            return (await stores[i % 2].append([(f"session:default:s{i}", "x")], "session")).accepted
        except TooManySessions:
            return 0

    try:
        accepted = await asyncio.gather(*(one(i) for i in range(40)))
        opened = await stores[0].open_windows()
        assert sum(accepted) == opened <= PARTITIONS  # one open window per partition at most
        shares = [int(await stores[0].redis.get(stores[0].prefix(p) + "open") or 0) for p in range(PARTITIONS)]
        assert max(shares) <= 1
    finally:
        for c in clients:
            await c.aclose()


def test_the_service_runs_on_the_cluster_end_to_end(cluster_url: str, tmp_path: Path) -> None:
    settings = ServiceSettings(
        redis_url=cluster_url,
        redis_cluster=True,
        partitions=PARTITIONS,
        checkpoint=tmp_path,
        max_session_lines=4,
        sweep_interval_s=0.05,
        idle_timeout_s=0.3,
    )
    with TestClient(create_app(settings, scorer=KeywordScorer())) as client:
        wait_for(lambda: client.get("/health/ready").status_code == 200, what="ready")
        lines = [
            {"message": f"blk_{i} {'ERROR disk' if i % 5 == 0 else 'ok'} {n}"} for i in range(20) for n in range(4)
        ]
        response = client.post("/logs", json={"lines": lines})
        assert response.status_code == 200, response.text
        assert sorted(response.json()["closed"]) == sorted(f"session:default:blk_{i}" for i in range(20))
        client.post("/logs", json={"lines": [{"message": "blk_99 left open"}]})
        for i in range(20):
            expected = "anomalous" if i % 5 == 0 else "normal"
            assert scored(client, f"session:default:blk_{i}")["status"] == expected
        assert scored(client, "session:default:blk_99")["n_lines"] == 1  # closed by the idle sweep
        assert client.get("/health/ready").status_code == 200


def test_cluster_mode_needs_a_url() -> None:
    with pytest.raises(ValueError, match="redis_cluster needs redis_url"):
        ServiceSettings(redis_cluster=True)


def test_loki_resends_are_stored_once_on_the_cluster(cluster_url: str, tmp_path: Path) -> None:
    """service/intake/dedup.py's sets spread over the partitions' slots, each script call on its node."""
    settings = ServiceSettings(redis_url=cluster_url, redis_cluster=True, partitions=PARTITIONS, checkpoint=tmp_path)
    values = [[str(1_733_400_000_000_000_000 + i), f"blk_{i} served"] for i in range(50)]
    body = {"streams": [{"stream": {"job": "api"}, "values": values}]}
    with TestClient(create_app(settings, scorer=KeywordScorer())) as client:
        wait_for(lambda: client.get("/health/ready").status_code == 200, what="ready")
        for _ in range(2):
            assert client.post("/loki/api/v1/push", json=body).status_code == 204
        metrics = client.get("/metrics").text
        assert 'logllm_lines_ingested_total{format="loki_json"} 50.0' in metrics
        assert 'logllm_lines_deduplicated_total{format="loki_json"} 50.0' in metrics
    with redis.RedisCluster.from_url(cluster_url) as cluster_client:
        sets = list(cluster_client.scan_iter("*:dedup:*", target_nodes=redis.RedisCluster.PRIMARIES))
        assert len(sets) > 1
