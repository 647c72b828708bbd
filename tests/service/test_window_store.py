"""WindowStore against a real Redis: closes, window ids, caps, verdicts, reclaim and idempotent completes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio

from service.windows.store import (
    LayoutMismatch,
    QueueFull,
    StoreOutOfMemory,
    StoreUnavailable,
    StoreUnreachable,
    TooManySessions,
    Verdict,
    WindowStore,
)

pytestmark = pytest.mark.anyio
MakeStore = Callable[..., Awaitable[WindowStore]]


def verdict_for(window_id: str, score: float = 0.2) -> Verdict:
    now = time.time()
    return Verdict(window_id, "normal", score, 0.5, 1, "test", now, now)


async def drain(store: WindowStore, consumer: str = "a") -> dict[str, list[str]]:
    windows = await store.read_batch(consumer, 100, 10_000, 0)
    return {w.window_id: w.lines for w in windows}


async def test_a_session_closes_at_max_lines_and_the_next_window_is_numbered(make_store: MakeStore) -> None:
    store = await make_store(max_session_lines=3)
    result = await store.append([("blk_1", f"line {i}") for i in range(4)], "session")
    assert (result.accepted, result.closed) == (4, ["blk_1"])
    assert await store.close("blk_1") == "blk_1#1"
    assert await store.close("blk_1") is None
    assert await drain(store) == {"blk_1": ["line 0", "line 1", "line 2"], "blk_1#1": ["line 3"]}
    assert await store.open_windows() == 0


async def test_explicit_close_and_window_reasons(make_store: MakeStore) -> None:
    store = await make_store()
    await store.append([("a", "x"), ("b", "y"), ("a", "z")], "session")
    assert await store.open_windows() == 2
    assert await store.close("a") == "a"
    windows = await store.read_batch("c", 10, 100, 0)
    assert [(w.window_id, w.lines, w.reason) for w in windows] == [("a", ["x", "z"], "explicit")]
    assert await store.close("never-seen") is None


async def age(store: WindowStore, seconds: float) -> None:
    """Move every open window's last line ``seconds`` into the past by the Redis clock (its last-seen score):
    the idle sweep then sees them as Redis would that much later, without a sleep and with no margin to lose."""
    seconds_now, micros = await store.redis.time()
    now = seconds_now + micros / 1_000_000
    for p in range(store.config.partitions):
        key = store.prefix(p) + "lastseen"
        seen = await store.redis.zrange(key, 0, -1, withscores=True)
        if seen:
            await store.redis.zadd(key, {member: min(score, now) - seconds for member, score in seen}, xx=True)


async def test_idle_sweep_closes_only_windows_idle_long_enough(make_store: MakeStore) -> None:
    store = await make_store(idle_timeout_s=30)
    await store.append([("session:default:old", "x")], "session")
    assert await store.sweep_idle() == []  # just seen
    await age(store, 29)
    assert await store.sweep_idle() == []  # 29 s of 30 have passed
    await age(store, 2)
    await store.append([("session:default:fresh", "y")], "session")
    assert await store.sweep_idle() == ["session:default:old"]
    assert (await store.read_batch("c", 10, 100, 0))[0].reason == "idle"
    assert await store.open_windows() == 1


async def test_close_and_idle_decisions_take_the_redis_clock_not_the_process_clock(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica whose clock is an hour behind writes a line; a replica with the right clock sweeps: the window
    is not idle, and the closed_at written is Redis's time, whichever process closes it."""
    store = await make_store(idle_timeout_s=30)
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() - 3600)
    await store.append([("session:default:s", "from the slow replica")], "session")
    monkeypatch.setattr(time, "time", real_time)
    assert await store.sweep_idle() == []
    assert await store.verdict("session:default:s") == "pending"
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600)  # a fast replica sweeps: still not idle
    assert await store.sweep_idle() == []
    assert await store.close("session:default:s") == "session:default:s"
    monkeypatch.setattr(time, "time", real_time)
    [window] = await store.read_batch("c", 10, 100, 0)
    seconds, micros = await store.redis.time()
    assert abs(window.closed_at - (seconds + micros / 1e6)) < 5


async def test_fixed_tumbling_windows(make_store: MakeStore) -> None:
    store = await make_store(window_size=3, window_step=3)
    result = await store.append([("web", f"l{i}") for i in range(7)], "fixed")
    assert result.closed == ["web:0", "web:3"]
    assert await store.close("web") == "web:6"
    await store.append([("web", "l7")], "fixed")
    assert await store.close("web") == "web:7"
    assert await drain(store) == {
        "web:0": ["l0", "l1", "l2"],
        "web:3": ["l3", "l4", "l5"],
        "web:6": ["l6"],
        "web:7": ["l7"],
    }


async def test_fixed_sliding_windows(make_store: MakeStore) -> None:
    store = await make_store(window_size=4, window_step=2)
    result = await store.append([("web", f"l{i}") for i in range(9)], "fixed")
    assert result.closed == ["web:0", "web:2", "web:4"]
    assert await store.close("web") == "web:6"  # l6..l8: l8 was in no window yet
    windows = await drain(store)
    assert windows["web:2"] == ["l2", "l3", "l4", "l5"]
    assert windows["web:4"] == ["l4", "l5", "l6", "l7"]
    assert windows["web:6"] == ["l6", "l7", "l8"]


async def test_a_sliding_tail_already_scored_is_not_a_window(make_store: MakeStore) -> None:
    store = await make_store(window_size=4, window_step=2)
    assert (await store.append([("web", f"l{i}") for i in range(6)], "fixed")).closed == ["web:0", "web:2"]
    assert await store.close("web") is None
    assert (await store.append([("web", f"l{i}") for i in range(6, 10)], "fixed")).closed == ["web:6"]


async def test_verdict_is_pending_while_open_and_queued_then_final_with_a_ttl(make_store: MakeStore) -> None:
    store = await make_store(verdict_ttl_s=1000, partitions=4)
    assert await store.verdict("blk_7") is None
    await store.append([("blk_7", "x"), ("blk_7", "y")], "session")
    assert await store.verdict("blk_7") == "pending"
    assert await store.verdict("blk_7#1") is None
    await store.close("blk_7")
    assert await store.verdict("blk_7") == "pending"
    [window] = await store.read_batch("c", 10, 100, 0)
    assert await store.complete([(window, verdict_for("blk_7", 0.25))]) == ["blk_7"]
    found = await store.verdict("blk_7")
    assert isinstance(found, Verdict)
    assert (found.score, found.label, found.model_version) == (0.25, "normal", "test")
    key = store.prefix(store.partition("blk_7")) + "verdict:blk_7"
    assert 990 < await store.redis.ttl(key) <= 1000
    assert await store.queue_depth() == 0
    assert await store.redis.exists(store.prefix(window.partition) + "closed:blk_7") == 0


async def test_fixed_window_verdicts_are_found_by_id(make_store: MakeStore) -> None:
    store = await make_store(window_size=2, window_step=2)
    await store.append([("a:b", "x"), ("a:b", "y"), ("a:b", "z")], "fixed")
    assert await store.verdict("a:b:2") == "pending"  # the open partial window
    assert await store.verdict("a:b:0") == "pending"  # closed, queued
    assert await store.verdict("a:b:4") is None


async def test_every_key_carries_its_partition_hash_tag(make_store: MakeStore) -> None:
    store = await make_store(partitions=4)
    await store.append([(f"s{i}", "x") for i in range(20)], "session")
    await store.close("s3")
    keys = [k.decode() for k in await store.redis.keys("*") if k != b"logllm:layout"]
    assert keys and all(k.startswith("logllm:{p") for k in keys)
    assert len({k.split("}")[0] for k in keys}) == 4


async def test_the_open_window_cap_refuses_the_whole_request(make_store: MakeStore) -> None:
    store = await make_store(max_open_windows=2, partitions=1)
    await store.append([("a", "1"), ("b", "1")], "session")
    await store.append([("a", "2")], "session")  # no new window: fine at the cap
    with pytest.raises(TooManySessions, match="max_open_windows=2"):
        await store.append([("a", "3"), ("c", "1")], "session")
    assert await store.open_windows() == 2
    await store.close("a")
    assert (await drain(store))["a"] == ["1", "2"]


async def test_the_queue_cap_refuses_the_whole_request_and_keeps_what_was_accepted(
    make_store: MakeStore,
) -> None:
    store = await make_store(max_ready_queue=2, max_session_lines=2, retry_after_s=3.0, partitions=1)
    await store.append([("open", "kept")], "session")
    await store.append([("s1", "a"), ("s1", "b"), ("s2", "a"), ("s2", "b")], "session")
    assert await store.queue_depth() == 2
    with pytest.raises(QueueFull) as refused:
        await store.append([("open", "refused"), ("s3", "a")], "session")
    assert refused.value.retry_after_s == 3.0
    assert await store.queue_depth() == 2
    assert await store.open_windows() == 1
    assert await store.close("open") == "open"
    windows = await store.read_batch("c", 10, 100, 0)
    assert {w.window_id: w.lines for w in windows} == {"s1": ["a", "b"], "s2": ["a", "b"], "open": ["kept"]}


async def test_read_batch_keeps_to_its_limits_and_a_long_window_comes_alone(make_store: MakeStore) -> None:
    store = await make_store(partitions=1)
    await store.append([(f"s{i}", f"{j}") for i in range(5) for j in range(2)], "session")
    await store.append([("long", f"{j}") for j in range(9)], "session")
    for key in [*(f"s{i}" for i in range(5)), "long"]:
        await store.close(key)
    first = await store.read_batch("c", 2, 100, 0)
    assert [w.window_id for w in first] == ["s0", "s1"]
    second = await store.read_batch("c", 10, 3, 0)
    assert [w.window_id for w in second] == ["s2"]
    third = await store.read_batch("c", 10, 4, 0)
    assert [w.window_id for w in third] == ["s3", "s4"]
    assert [w.window_id for w in await store.read_batch("c", 10, 4, 0)] == ["long"]
    assert await store.read_batch("c", 10, 4, 10) == []


async def test_a_dead_consumers_windows_are_reclaimed(make_store: MakeStore) -> None:
    store = await make_store()
    await store.append([("s1", "x"), ("s2", "y")], "session")
    await store.close("s1")
    await store.close("s2")
    assert len(await store.read_batch("dead", 10, 100, 0)) == 2  # read, never acked
    assert await store.reclaim("alive", 60_000, 10) == []  # not idle long enough
    reclaimed = await store.reclaim("alive", 0, 10)
    assert sorted(w.window_id for w in reclaimed) == ["s1", "s2"]
    assert {tuple(w.lines) for w in reclaimed} == {("x",), ("y",)}
    await store.complete([(w, verdict_for(w.window_id)) for w in reclaimed])
    assert await store.queue_depth() == 0
    assert await store.reclaim("alive", 0, 10) == []


async def test_complete_is_idempotent_the_first_verdict_stays(make_store: MakeStore) -> None:
    store = await make_store()
    await store.append([("s", "x")], "session")
    await store.close("s")
    [slow] = await store.read_batch("slow", 10, 100, 0)
    [taken] = await store.reclaim("fast", 0, 10)
    assert await store.complete([(taken, verdict_for("s", 0.1))]) == ["s"]
    assert await store.complete([(slow, verdict_for("s", 0.9))]) == []  # the slow worker's late re-score
    found = await store.verdict("s")
    assert isinstance(found, Verdict) and found.score == 0.1
    assert await store.queue_depth() == 0
    pending = await store.redis.xpending(store.prefix(slow.partition) + "ready", "classifiers")
    assert pending["pending"] == 0


async def test_a_restarted_consumer_resumes_its_own_unacked_windows(make_store: MakeStore) -> None:
    before = await make_store()
    await before.append([("s", "x")], "session")
    await before.close("s")
    assert len(await before.read_batch("worker", 10, 100, 0)) == 1  # then the process dies
    after = await make_store()
    assert await after.read_batch("worker", 10, 100, 0) == []  # '>' gives only new entries
    assert await after.resume("worker") == 1
    assert [w.window_id for w in await after.read_batch("worker", 10, 100, 0)] == ["s"]


async def test_a_closed_session_meta_expires_with_its_verdict(make_store: MakeStore) -> None:
    store = await make_store(verdict_ttl_s=500)
    await store.append([("s", "x")], "session")
    await store.close("s")
    [window] = await store.read_batch("c", 10, 100, 0)
    await store.complete([(window, verdict_for("s"))])
    meta = store.prefix(window.partition) + "meta:s"
    assert 0 < await store.redis.ttl(meta) <= 500
    await store.append([("s", "again")], "session")
    assert await store.redis.ttl(meta) == -1  # open windows never expire
    assert await store.close("s") == "s#1"


async def test_redis_out_of_memory_is_store_unavailable_and_writes_nothing(make_store: MakeStore) -> None:
    store = await make_store()
    await store.redis.config_set("maxmemory", 1)
    try:
        with pytest.raises(StoreOutOfMemory) as raised:
            await store.append([("s", "x")], "session")
        assert isinstance(raised.value, StoreUnavailable)
    finally:
        await store.redis.config_set("maxmemory", 0)
    assert await store.open_windows() == 0
    assert await store.verdict("s") is None


async def test_an_unreachable_redis_is_store_unavailable() -> None:
    client = redis.asyncio.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    store = WindowStore(client)
    with pytest.raises(StoreUnreachable):
        await store.append([("s", "x")], "session")
    await client.aclose()


# --- item 11 of the issue: nothing lost, nothing confused -------------------------------------------------


async def test_a_session_and_a_fixed_window_of_the_same_name_are_different_windows(make_store: MakeStore) -> None:
    store = await make_store(window_size=2, window_step=2)
    await store.append([("fixed:coll", "f0"), ("fixed:coll", "f1"), ("fixed:coll", "f2")], "fixed")
    await store.append([("session:default:coll:2", "s0")], "session")
    assert await store.verdict("fixed:coll:2") == "pending"
    assert await store.close("session:default:coll:2") == "session:default:coll:2"
    assert await store.close("fixed:coll") == "fixed:coll:2"
    assert await drain(store) == {
        "fixed:coll:0": ["f0", "f1"],
        "fixed:coll:2": ["f2"],
        "session:default:coll:2": ["s0"],
    }


async def test_the_key_layout_is_stored_and_a_start_with_another_partition_count_is_refused(
    make_store: MakeStore,
) -> None:
    first = await make_store(partitions=4)
    assert await first.redis.hgetall("logllm:layout") == {b"partitions": b"4", b"id_scheme": b"2"}
    await make_store(partitions=4)  # the same layout starts again
    with pytest.raises(LayoutMismatch, match="partitions=4.*partitions=8"):
        await make_store(partitions=8)
    await make_store(partitions=8, key_prefix="other")  # another namespace is another layout


async def test_data_written_before_the_layout_record_is_checked_too(make_store: MakeStore) -> None:
    old = await make_store(partitions=4)
    await old.redis.delete("logllm:layout")  # as an older version left it: streams, no record
    with pytest.raises(LayoutMismatch, match="partitions=2"):
        await make_store(partitions=2)
    with pytest.raises(LayoutMismatch, match="partitions=8"):
        await make_store(partitions=8)
    await make_store(partitions=4)
    assert await old.redis.hget("logllm:layout", "partitions") == b"4"


async def test_an_entry_whose_lines_are_gone_is_acked_deleted_and_counted(make_store: MakeStore) -> None:
    store = await make_store(partitions=1)
    await store.append([("session:default:a", "x"), ("session:default:b", "y")], "session")
    await store.close("session:default:a")
    await store.close("session:default:b")
    await store.redis.delete(store.prefix(0) + "closed:session:default:a")  # lost (say, a partial AOF)
    assert [w.window_id for w in await store.read_batch("c", 10, 100, 0)] == ["session:default:b"]
    assert store.take_dropped() == {"lines_missing": 1}
    assert store.take_dropped() == {}
    assert await store.queue_depth() == 1  # only b's entry is left
    pending = await store.redis.xpending(store.prefix(0) + "ready", "classifiers")
    assert pending["pending"] == 1


async def test_only_model_failures_count_as_attempts_not_re_reads_or_reclaims(make_store: MakeStore) -> None:
    store = await make_store()
    await store.append([("session:default:s", "x")], "session")
    await store.close("session:default:s")
    [window] = await store.read_batch("w", 10, 100, 0)
    for _ in range(5):  # the same worker re-reads its history and reclaims its own entry again and again
        await store.resume("w")
        [window] = await store.read_batch("w", 10, 100, 0)
        [window] = await store.reclaim("w", 0, 10)
    assert window.attempts == 0
    assert await store.record_failure(window) == 1
    assert await store.record_failure(window) == 2
    [window] = await store.reclaim("w", 0, 10)
    assert window.attempts == 2
    await store.complete([(window, verdict_for(window.window_id))])
    assert await store.redis.hlen(store.prefix(window.partition) + "attempts") == 0


async def test_concurrent_requests_cannot_pass_the_open_window_cap(make_store: MakeStore) -> None:
    stores = [await make_store(max_open_windows=5, partitions=1) for _ in range(20)]

    async def one(i: int) -> int:
        try:
            return (await stores[i].append([(f"session:default:s{i}", "x")], "session")).accepted
        except TooManySessions:
            return 0

    accepted = await asyncio.gather(*(one(i) for i in range(20)))
    assert sum(accepted) == 5
    assert await stores[0].open_windows() == 5


async def test_concurrent_requests_cannot_pass_the_queue_cap(make_store: MakeStore) -> None:
    stores = [await make_store(max_ready_queue=3, max_session_lines=1, partitions=1) for _ in range(20)]

    async def one(i: int) -> int:
        try:
            return (await stores[i].append([(f"session:default:s{i}", "x")], "session")).accepted
        except QueueFull:
            return 0

    accepted = await asyncio.gather(*(one(i) for i in range(20)))
    assert sum(accepted) == 3
    assert await stores[0].queue_depth() == 3


async def test_a_partition_refusing_in_a_race_reports_its_items_and_writes_nothing(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pre-check saw room, then a concurrent request filled one partition: its items come back refused."""
    store = await make_store(max_open_windows=4, partitions=2)  # 2 open windows per partition
    keys = [f"session:default:k{i}" for i in range(40)]
    by_partition = {p: [k for k in keys if store.partition(k) == p] for p in (0, 1)}
    full, free = by_partition[0][:3], by_partition[1][:1]
    await store.append([(k, "x") for k in full[:2]], "session")  # partition 0 at its share

    async def saw_room(touched: object) -> None:
        return None

    monkeypatch.setattr(store, "_check_caps", saw_room)
    result = await store.append([(free[0], "a"), (full[2], "b"), (free[0], "c")], "session")
    assert result.accepted == 2
    assert [(i, reason) for _, i, reason in result.refused] == [(1, "too_many_sessions")]
    assert await store.open_windows() == 3
    assert await store.verdict(full[2]) is None
    with pytest.raises(TooManySessions):  # every partition refused: the request as a whole
        await store.append([(full[2], "b")], "session")


async def lastseen(store: WindowStore) -> set[str]:
    """Every window key in the partitions' last-seen sets (the idle sweep's view of what is open)."""
    found: set[str] = set()
    for p in range(store.config.partitions):
        found |= {k.decode() for k in await store.redis.zrange(store.prefix(p) + "lastseen", 0, -1)}
    return found


async def test_windows_closed_and_reopened_within_one_call_keep_meta_and_last_seen_right(make_store: MakeStore) -> None:
    """append.lua reads each window's meta once per call and writes last-seen once per window at the end: a
    window that closes and reopens within the call is open and seen after it, one that closes is neither."""
    store = await make_store(max_session_lines=2, idle_timeout_s=30)
    a, b = "session:default:a", "session:default:b"
    result = await store.append([(a, "1"), (b, "x"), (a, "2"), (a, "3"), (b, "y")], "session")
    assert (result.accepted, result.closed) == (5, [a, b])
    assert await store.open_windows() == 1
    assert await lastseen(store) == {a}
    assert await store.sweep_idle() == []
    await age(store, 31)
    assert await store.sweep_idle() == [f"{a}#1"]
    assert await lastseen(store) == set()
    assert await drain(store) == {a: ["1", "2"], b: ["x", "y"], f"{a}#1": ["3"]}


async def test_a_key_windowed_the_other_way_before_is_closed_first(make_store: MakeStore) -> None:
    """A key open as a session window that now arrives in fixed mode (the old id scheme): its window closes
    (reason mode) and the line opens a fixed window; both within one call, as before the meta was cached."""
    store = await make_store(window_size=2, window_step=2)
    await store.append([("src", "s1")], "session")
    result = await store.append([("src", "f1"), ("src", "f2"), ("src", "f3")], "fixed")
    assert result.closed == ["src", "src:0"]
    windows = await store.read_batch("c", 10, 100, 0)
    assert [(w.window_id, w.lines, w.reason) for w in windows] == [
        ("src", ["s1"], "mode"),
        ("src:0", ["f1", "f2"], "size"),
    ]
    assert await lastseen(store) == {"src"} and await store.open_windows() == 1


async def test_the_caps_pre_check_counts_new_windows_only_near_the_cap(make_store: MakeStore) -> None:
    """caps.lua skips the per-key count when the cap holds even if every key were new; near the cap it counts,
    so a request of windows already open still passes at the cap."""
    store = await make_store(max_open_windows=3, partitions=1)
    await store.append([("a", "1"), ("b", "1"), ("c", "1")], "session")
    await store.append([("a", "2"), ("b", "2"), ("c", "2")], "session")  # 3 open + 3 keys > 3: counted, none new
    with pytest.raises(TooManySessions, match="3 windows open in partition 0, this request would open 1 more"):
        await store.append([("a", "3"), ("d", "1")], "session")
    assert await store.open_windows() == 3


async def test_open_session_windows_are_read_from_last_seen_a_thousand_keys_at_a_time(make_store: MakeStore) -> None:
    """append.lua learns which session windows are open from the last-seen set (one ZMSCORE per 1,000 keys):
    over 2,500 open keys, 500 new ones and one closed in between, the open count and the cap stay exact."""
    store = await make_store(partitions=1, max_open_windows=3_000)
    old = [f"session:default:s{i}" for i in range(2_500)]
    await store.append([(key, "first") for key in old], "session")
    assert await store.close(old[1_234]) == old[1_234]
    new = [f"session:default:n{i}" for i in range(500)]
    items = [(key, "second") for key in old] + [(key, "second") for key in new]
    result = await store.append(items[::2] + items[1::2], "session")  # old and new keys interleaved
    assert (result.accepted, result.closed) == (3_000, [])
    assert await store.open_windows() == 3_000
    assert len(await lastseen(store)) == 3_000
    with pytest.raises(TooManySessions):
        await store.append([(old[0], "third"), ("session:default:one-more", "x")], "session")
    for key in old[:3]:
        await store.close(key)
    await store.close(old[1_234])
    windows = await drain(store)
    assert windows[old[0]] == ["first", "second"] and windows[old[2]] == ["first", "second"]
    assert windows[old[1_234]] == ["first"] and windows[f"{old[1_234]}#1"] == ["second"]


def runs_of_keys(a: str, b: str) -> list[tuple[str, str]]:
    """Lines of two keys in runs of 250, 3, 1, 40, 1, 1, 120 and 2 (the runs alternate between the keys)."""
    items: list[tuple[str, str]] = []
    for n, (key, length) in enumerate([(a, 250), (b, 3), (a, 1), (b, 40), (a, 1), (b, 1), (a, 120), (b, 2)]):
        items += [(key, f"{key} run {n} line {i}") for i in range(length)]
    return items


async def windows_after(store: WindowStore, keys: list[str]) -> list[tuple[str, list[str], str]]:
    for key in keys:
        await store.close(key)
    return [(w.window_id, w.lines, w.reason) for w in await store.read_batch("c", 10_000, 100_000, 0)]


@pytest.mark.parametrize(
    ("mode", "config"),
    [
        ("fixed", {"window_size": 100, "window_step": 100}),
        ("fixed", {"window_size": 100, "window_step": 30}),
        ("session", {"max_session_lines": 7}),
        ("session", {"max_session_lines": 1}),
    ],
)
async def test_a_run_of_lines_of_one_key_stores_what_line_by_line_appends_store(
    make_store: MakeStore, mode: str, config: dict[str, int]
) -> None:
    """append.lua buffers consecutive lines of one key with one RPUSH per window they fill: the windows, their
    ids, lines and order come out as if every line had been appended alone."""
    a, b = ("fixed:a", "fixed:b") if mode == "fixed" else ("session:default:a", "session:default:b")
    items = runs_of_keys(a, b)
    together = await make_store(key_prefix="together", partitions=1, **config)
    alone = await make_store(key_prefix="alone", partitions=1, **config)
    closed = (await together.append(items, mode)).closed  # type: ignore[arg-type]
    one_by_one = [i for item in items for i in (await alone.append([item], mode)).closed]  # type: ignore[arg-type]
    assert closed == one_by_one and len(closed) >= 3
    assert await together.open_windows() == await alone.open_windows()
    assert await windows_after(together, [a, b]) == await windows_after(alone, [a, b])


@pytest.mark.parametrize(
    ("mode", "before", "after"), [("fixed", "window_size", 4), ("session", "max_session_lines", 4)]
)
async def test_a_run_into_a_window_already_past_a_smaller_size_closes_it_as_lines_one_by_one_would(
    make_store: MakeStore, mode: str, before: str, after: int
) -> None:
    """A restart with a smaller window size finds a buffer longer than it: the first line of the next run closes
    it whole, as a line appended alone would, and the rest of the run fills the next windows."""
    key = "fixed:a" if mode == "fixed" else "session:default:a"
    found: list[list[tuple[str, list[str], str]]] = []
    for prefix, together in (("together", True), ("alone", False)):
        first = await make_store(key_prefix=prefix, partitions=1, **{before: 10, "window_step": 10})
        await first.append([(key, f"old {i}") for i in range(8)], mode)  # type: ignore[arg-type]
        second = await make_store(key_prefix=prefix, partitions=1, **{before: after, "window_step": after})
        run = [(key, f"new {i}") for i in range(9)]
        if together:
            await second.append(run, mode)  # type: ignore[arg-type]
        else:
            for item in run:
                await second.append([item], mode)  # type: ignore[arg-type]
        found.append(await windows_after(second, [key]))
    assert found[0] == found[1]
    assert found[0][0][1] == [f"old {i}" for i in range(8)] + ["new 0"]
