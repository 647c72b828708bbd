"""A request that fails half-way (one partition's node out of memory) and is retried stores every line once.

One request is one append script per partition, not one transaction: the partitions before the failing one keep
their lines and the request answers 503. The retry (same request key, as the intake derives it from the body)
must store only what is missing; a request sent again after a success is new lines and is stored again.
The failure is real: Redis' maxmemory is set just above its use, so the first partition's script takes Redis
past it and the next partition's script is refused (OOM), on one server and on one node of a 3-node cluster.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from redis.asyncio import RedisCluster

from service.app import create_app
from service.settings import ServiceSettings
from service.windows.store import PreparedAppend, RequestInFlight, StoreConfig, StoreOutOfMemory, WindowStore
from service.windows.windowing import Windowing
from tests.service.local_cluster import LocalCluster
from tests.service.test_app import KeywordScorer

pytestmark = pytest.mark.anyio
MakeStore = Callable[..., Awaitable[WindowStore]]
SLIDING = Windowing(mode="fixed", size=100, step=1)  # each line is copied into up to 100 closed windows
BIG_LINES = 300  # 300 KiB sent, about 20 MB written: 201 windows of 100 lines of 1 KiB
ROOM = 2 * 1024 * 1024  # room for the request as sent, not for what the sliding windows write
SESSION = Windowing(mode="session", max_session_lines=10_000)


def keys_in(store: WindowStore, prefix: str, wanted: list[int]) -> list[str]:
    """One key ``<prefix><name>`` per wanted partition, in that order."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < len(wanted):
        key = f"{prefix}s{n}"
        p = store.partition(key)
        if p in wanted and p not in found:
            found[p] = key
        n += 1
    return [found[p] for p in wanted]


def request_groups(big: str, small: str) -> dict[Windowing, list[tuple[str, str]]]:
    """The sliding source's call goes first (groups in order), the session line's after it."""
    return {
        SLIDING: [(big, f"{i:05d} " + "x" * 1018) for i in range(BIG_LINES)],
        SESSION: [(small, "the other partition's line")],
    }


async def stored(store: WindowStore, big: str, small: str) -> tuple[int, int]:
    """(windows the sliding source closed, lines buffered in the session)."""
    windows = int(await store.redis.xlen(store.prefix(store.partition(big)) + "ready"))
    return windows, int(await store.redis.llen(store.prefix(store.partition(small)) + "lines:" + small))


async def leave_room(client: Any) -> None:
    """maxmemory just above what this server uses now (noeviction): the first call's writes take it past."""
    used = int((await client.info("memory"))["used_memory"])
    await client.config_set("maxmemory-policy", "noeviction")
    await client.config_set("maxmemory", used + ROOM)


async def fail_half_way(store: WindowStore, prepared: PreparedAppend, request_key: str | None) -> None:
    await leave_room(store.redis)
    try:
        with pytest.raises(StoreOutOfMemory):
            await store.append_prepared(prepared, request_key=request_key)
    finally:
        await store.redis.config_set("maxmemory", 0)


async def test_a_retry_after_an_out_of_memory_partition_stores_every_line_once(make_store: MakeStore) -> None:
    store = await make_store(partitions=4)
    big, small = keys_in(store, "fixed:", [0])[0], keys_in(store, "session:default:", [3])[0]
    prepared = store.prepare(request_groups(big, small))
    await fail_half_way(store, prepared, "req-1")
    assert await stored(store, big, small) == (BIG_LINES - 99, 0)  # the first call's lines stayed, not the second's
    result = await store.append_prepared(prepared, request_key="req-1")  # the client's retry
    assert result.accepted == BIG_LINES + 1
    assert await stored(store, big, small) == (BIG_LINES - 99, 1)
    assert await store.redis.keys("*req*") == []  # a success leaves no marker and no lock behind


async def test_without_a_request_key_the_retry_stores_the_first_call_twice(make_store: MakeStore) -> None:
    """The defect itself, kept visible: the store alone cannot tell a retry from new lines."""
    store = await make_store(partitions=4)
    big, small = keys_in(store, "fixed:", [0])[0], keys_in(store, "session:default:", [3])[0]
    prepared = store.prepare(request_groups(big, small))
    await fail_half_way(store, prepared, None)
    await store.append_prepared(prepared)
    assert await stored(store, big, small) == (2 * BIG_LINES - 99, 1)


async def test_the_same_body_sent_again_after_a_success_is_stored_again(make_store: MakeStore) -> None:
    store = await make_store(partitions=4)
    a, b = keys_in(store, "session:default:", [1, 2])
    for _ in range(2):
        await store.append_prepared(store.prepare({SESSION: [(a, "heartbeat"), (b, "heartbeat")]}), "same-body")
    assert await lines_of(store, [a, b]) == [2, 2]


async def lines_of(store: WindowStore, keys: list[str]) -> list[int]:
    return [int(await store.redis.llen(store.prefix(store.partition(k)) + "lines:" + k)) for k in keys]


async def test_a_kept_key_makes_any_later_attempt_store_nothing(make_store: MakeStore) -> None:
    """A client's Idempotency-Key: the markers stay after a success, so a retry of a lost answer is a no-op that
    answers the windows the first attempt closed."""
    store = await make_store(partitions=4, idempotency_ttl_s=60)
    a, b = keys_in(store, "session:default:", [1, 2])
    two = Windowing(mode="session", max_session_lines=2)
    prepared = store.prepare({two: [(a, "1"), (b, "1"), (a, "2")]})
    first = await store.append_prepared(prepared, request_key="client-key", keep=True)
    again = await store.append_prepared(prepared, request_key="client-key", keep=True)
    assert first.closed == again.closed == [a]
    assert await store.open_windows() == 1 and await store.queue_depth() == 1
    assert await lines_of(store, [a, b]) == [0, 1]
    ttls = [await store.redis.ttl(k) for k in await store.redis.keys("*:req:*")]
    assert len(ttls) == 2 and all(0 < t <= 60 for t in ttls)


class GatedStore(WindowStore):
    """A store whose append scripts wait for a gate: an attempt held in flight, deterministically."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.entered, self.gate = asyncio.Event(), asyncio.Event()

    async def _run_each(self, name: str, calls: Any) -> list[Any]:
        if name == "append":
            self.entered.set()
            await self.gate.wait()
        return await super()._run_each(name, calls)


async def test_an_identical_request_in_flight_is_told_to_retry(make_store: MakeStore) -> None:
    """Two attempts at once must not skip each other's partitions: the second is refused (429), not dropped."""
    store = await make_store(partitions=4, retry_after_s=2.0)
    held = GatedStore(store.redis, store.config)
    a, b = keys_in(store, "session:default:", [0, 1])
    prepared = store.prepare({SESSION: [(a, "x"), (b, "y")]})
    first = asyncio.create_task(held.append_prepared(prepared, request_key="twice"))
    await held.entered.wait()
    with pytest.raises(RequestInFlight) as refused:
        await store.append_prepared(prepared, request_key="twice")
    assert refused.value.retry_after_s == 2.0
    held.gate.set()
    assert (await first).accepted == 2
    await store.append_prepared(prepared, request_key="twice")  # the refused one's retry: new lines, stored
    assert await lines_of(store, [a, b]) == [2, 2]


# --- the HTTP answer ----------------------------------------------------------------------------------------


def test_post_logs_answers_503_and_its_retry_stores_each_line_once(redis_url: str, tmp_path: Path) -> None:
    """The whole path: JSON lines of a sliding fixed-window source and of a session, one request, 503 half-way;
    the client's retry (the same body) answers 200 and stores each line once; the body sent once more is new."""
    settings = ServiceSettings(
        redis_url=redis_url, checkpoint=tmp_path, partitions=4, idle_timeout_s=3600,
        sources=json.dumps({"big": {"window_mode": "fixed", "window_size": 100, "window_step": 1}}),
    )  # fmt: skip
    with TestClient(create_app(settings, scorer=KeywordScorer())) as client:
        store: WindowStore = client.app.state.service.store  # type: ignore[attr-defined]
        small = keys_in(store, "session:default:", [(store.partition("fixed:big") + 1) % 4])[0]
        lines = [{"message": f"{i:05d} " + "x" * 1018, "source": "big"} for i in range(BIG_LINES)]
        lines.append({"message": "the other partition's line", "session_id": small.rsplit(":", 1)[1]})
        body = {"lines": lines}
        server = redis.Redis.from_url(redis_url)
        used = int(server.info("memory")["used_memory"])
        server.config_set("maxmemory", used + ROOM)
        try:
            failed = client.post("/logs", json=body)
        finally:
            server.config_set("maxmemory", 0)
        assert failed.status_code == 503 and failed.json()["reason"] == "redis_oom", failed.text
        retried = client.post("/logs", json=body)
        assert retried.status_code == 200 and retried.json()["accepted"] == BIG_LINES + 1
        # the first attempt's windows, answered again; a second copy of its lines would have closed 300 more
        assert retried.json()["closed"] == [f"fixed:big:{i}" for i in range(BIG_LINES - 99)]
        again = client.post("/logs", json=body)  # sent once more after a success: new lines, stored again
        assert again.json()["closed"] == [f"fixed:big:{i}" for i in range(BIG_LINES - 99, 2 * BIG_LINES - 99)]
        assert server.llen(store.prefix(store.partition(small)) + "lines:" + small) == 2
        server.close()


def test_an_idempotency_key_makes_a_repeat_a_no_op_and_a_bad_one_is_400(redis_url: str, tmp_path: Path) -> None:
    settings = ServiceSettings(redis_url=redis_url, checkpoint=tmp_path, partitions=4, max_session_lines=2)
    with TestClient(create_app(settings, scorer=KeywordScorer())) as client:
        body = {"lines": [{"message": "one", "session_id": "k1"}, {"message": "two", "session_id": "k1"}]}
        first = client.post("/logs", json=body, headers={"Idempotency-Key": "batch-17"})
        repeat = client.post("/logs", json=body, headers={"Idempotency-Key": "batch-17"})  # a lost answer's retry
        other = client.post("/logs", json=body, headers={"Idempotency-Key": "batch-18"})  # another request
        assert first.json()["closed"] == repeat.json()["closed"] == ["session:default:k1"]
        assert other.json()["closed"] == ["session:default:k1#1"]  # stored: the numbering moved on once
        bad = client.post("/logs", json=body, headers={"Idempotency-Key": "x" * 256})
        assert bad.status_code == 400 and bad.json()["field"] == "Idempotency-Key", bad.text


# --- on the 3-node cluster ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("retry-cluster")) as running:
        yield running


@pytest.fixture
async def cluster_store(cluster: LocalCluster) -> AsyncIterator[WindowStore]:
    with redis.RedisCluster.from_url(cluster.url) as sync_client:
        sync_client.flushall(target_nodes=redis.RedisCluster.PRIMARIES)
    client = RedisCluster.from_url(cluster.url)
    store = WindowStore(client, StoreConfig(partitions=8, max_session_lines=10_000))
    await store.setup()
    yield store
    await client.aclose()


async def test_on_the_cluster_a_node_out_of_memory_fails_half_and_the_retry_completes(
    cluster_store: WindowStore,
) -> None:
    store = cluster_store
    node_of = {p: store.redis.get_node_from_key(store.prefix(p) + "ready") for p in range(8)}
    big_p = 0
    small_p = next(p for p in range(8) if node_of[p].name != node_of[big_p].name)
    big = keys_in(store, "fixed:", [big_p])[0]
    small = keys_in(store, "session:default:", [small_p])[0]
    prepared = store.prepare(request_groups(big, small))
    request_key = next(k for k in (f"cluster-req-{i}" for i in range(100)) if store.partition(k) == big_p)
    # the session's node has no room at all: its script fails while the other node takes the sliding windows
    node = redis.asyncio.Redis(host=node_of[small_p].host, port=node_of[small_p].port)
    await node.config_set("maxmemory", 1)
    try:
        with pytest.raises(StoreOutOfMemory):
            await store.append_prepared(prepared, request_key=request_key)
        assert await stored(store, big, small) == (BIG_LINES - 99, 0)
    finally:
        await node.config_set("maxmemory", 0)
        await node.aclose()
    result = await store.append_prepared(prepared, request_key=request_key)
    assert result.accepted == BIG_LINES + 1
    assert await stored(store, big, small) == (BIG_LINES - 99, 1)
    assert await store.redis.keys("*req*", target_nodes=RedisCluster.PRIMARIES) == []  # markers gone, each node
    await store.append_prepared(prepared, request_key=request_key)  # after a success: new lines
    assert await stored(store, big, small) == (2 * BIG_LINES - 99, 2)
