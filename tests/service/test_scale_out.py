"""Scale-out proof with real processes: 2 api and 3 worker ``logllm serve`` processes on one real Redis (and on
the real 3-node Redis Cluster) take 50,000 lines; every window gets exactly one verdict write, no line is lost;
a SIGKILLed worker's windows are claimed by a live one within reclaim_idle_ms and its name leaves the group.

The workers score with ``bench.scorers:fixed_cost`` (a few ms per batch), so this tests the queueing, not the
model. Marked slow (5 processes per test): the three tests took 3 min together on the shared 2-core machine,
about 20 s of it per 50,000-line run and the rest starting processes.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from redis.asyncio import Redis, RedisCluster

from bench.common import ServiceProcess
from service.windows.store import GROUP, StoreConfig, Verdict, WindowStore
from tests.service.local_cluster import LocalCluster

LINES = 50_000
SESSION_LINES = 10  # max_session_lines: every session closes by size, so the closed ids come back in responses
REQUEST_LINES = 1_000
PARTITIONS = 8
START_TIMEOUT_S = 90.0
DRAIN_TIMEOUT_S = 180.0
pytestmark = pytest.mark.slow


class Fleet:
    """api and worker processes on one Redis; stopped (SIGTERM, then kill) at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.apis: list[ServiceProcess] = []
        self.workers: list[ServiceProcess] = []

    def start(self, redis_url: str, cluster: bool, apis: int, workers: int, **settings: object) -> None:
        common = {
            "redis_url": redis_url,
            "redis_cluster": cluster,
            "partitions": PARTITIONS,
            "max_session_lines": SESSION_LINES,
            "idle_timeout_s": 3600,
            "max_batch_wait_ms": 5,
            **settings,
        }
        missing = self.tmp_path / "no-checkpoint"  # neither role may need one here
        self.apis = [ServiceProcess(missing, {**common, "role": "api"}) for _ in range(apis)]
        self.workers = []
        for i in range(workers):
            worker = ServiceProcess(
                missing,
                {**common, "role": "worker", "scorer": "bench.scorers:fixed_cost", "consumer": f"worker-{i}"},
            )
            worker.env["LOGLLM_WORKER_PORT"] = str(worker.port)
            self.workers.append(worker)
        errors: list[BaseException] = []

        def start(process: ServiceProcess) -> None:
            try:
                process.start(ready_timeout_s=START_TIMEOUT_S)
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(p,)) for p in [*self.apis, *self.workers]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    def stop(self) -> None:
        for process in [*self.apis, *self.workers]:
            process.stop()


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fleet]:
    monkeypatch.setenv("FIXED_COST_MS", "5")
    running = Fleet(tmp_path)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("scale-cluster")) as running:
        yield running


def post_lines(apis: list[ServiceProcess], lines: int) -> tuple[int, list[str]]:
    """Send the lines in requests of REQUEST_LINES, round-robin over the api processes, one thread per api.

    Session ``blk_<n>`` gets lines n*SESSION_LINES ... : consecutive, so windows close all through the run.
    Returns (accepted, ids of the windows the requests closed).
    """
    bodies = [
        "\n".join(f"step {j % SESSION_LINES} of blk_{j // SESSION_LINES}" for j in range(start, start + REQUEST_LINES))
        for start in range(0, lines, REQUEST_LINES)
    ]
    results: list[tuple[int, list[str]]] = []
    lock = threading.Lock()

    def send(api: ServiceProcess, share: list[str]) -> None:
        with httpx.Client(base_url=api.url, timeout=60) as client:
            for body in share:
                while True:
                    response = client.post("/logs", content=body, headers={"Content-Type": "text/plain"})
                    if response.status_code != 429:  # the ready queue is full: back off as a client should
                        break
                    time.sleep(float(response.headers.get("Retry-After", "1")))
                assert response.status_code == 200, response.text
                reply = response.json()
                with lock:
                    results.append((reply["accepted"], reply["closed"]))

    threads = [threading.Thread(target=send, args=(api, bodies[i :: len(apis)])) for i, api in enumerate(apis)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == len(bodies), "a sender thread failed (see its exception above)"
    return sum(a for a, _ in results), [i for _, closed in results for i in closed]


def verdicts_written(worker: ServiceProcess) -> int:
    """logllm_verdicts_total of one worker: counts only verdicts its complete() call wrote (not re-scores)."""
    text = httpx.get(f"{worker.url}/metrics", timeout=10).text
    return int(sum(float(v) for v in re.findall(r"^logllm_verdicts_total\{[^}]*\} (\S+)$", text, re.MULTILINE)))


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.2)


def nothing_left_to_score(redis_url: str, cluster: bool) -> bool:
    """Every partition's ready stream is empty: complete (and drop) delete the entries they ack, so a window
    can only be scored again while its entry is there; once none is, the verdict counters are final."""
    client = redis.RedisCluster.from_url(redis_url) if cluster else redis.Redis.from_url(redis_url)
    with client:
        return all(client.xlen(f"logllm:{{p{p}}}:ready") == 0 for p in range(PARTITIONS))


def read_verdicts(redis_url: str, cluster: bool, window_ids: list[str]) -> list[Verdict | str | None]:
    async def read() -> list[Verdict | str | None]:
        client = RedisCluster.from_url(redis_url) if cluster else Redis.from_url(redis_url)
        store = WindowStore(client, StoreConfig(partitions=PARTITIONS, max_session_lines=SESSION_LINES))
        try:
            return [await store.verdict(w) for w in window_ids]
        finally:
            await client.aclose()

    return asyncio.run(read())


@pytest.mark.parametrize("on_cluster", [False, True], ids=["redis", "cluster"])
def test_two_apis_and_three_workers_score_every_window_of_50000_lines_exactly_once(
    fleet: Fleet, redis_url: str, on_cluster: bool, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("cluster").url if on_cluster else redis_url
    if on_cluster:
        with redis.RedisCluster.from_url(url) as client:
            client.flushall(target_nodes=redis.RedisCluster.PRIMARIES)
    fleet.start(url, on_cluster, apis=2, workers=3, max_batch_windows=32)
    started = time.perf_counter()
    accepted, closed = post_lines(fleet.apis, LINES)
    expected = LINES // SESSION_LINES
    assert accepted == LINES and len(closed) == expected == len(set(closed))
    wait_for(lambda: sum(map(verdicts_written, fleet.workers)) >= expected, DRAIN_TIMEOUT_S, "all verdicts")
    elapsed = time.perf_counter() - started
    # no entry left in any ready queue: no window can be scored (and its verdict written) again
    wait_for(lambda: nothing_left_to_score(url, on_cluster), DRAIN_TIMEOUT_S, "every ready queue empty")
    per_worker = [verdicts_written(w) for w in fleet.workers]
    assert sum(per_worker) == expected, f"verdict writes per worker: {per_worker}"
    assert all(n > 0 for n in per_worker), f"a worker got no work: {per_worker}"
    verdicts = read_verdicts(url, on_cluster, closed)
    assert all(isinstance(v, Verdict) for v in verdicts)
    assert sum(v.n_lines for v in verdicts if isinstance(v, Verdict)) == LINES  # every line was scored
    print(f"\n{LINES} lines -> {expected} windows in {elapsed:.1f} s; verdict writes per worker {per_worker}")


def test_a_sigkilled_workers_windows_are_claimed_within_reclaim_idle_ms_and_its_name_removed(
    fleet: Fleet, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reclaim_ms = 2_000
    monkeypatch.setenv("FIXED_COST_MS", "100")  # slow enough that windows are still queued when one dies
    fleet.start(
        redis_url, False, apis=2, workers=3, reclaim_idle_ms=reclaim_ms, consumer_idle_s=1, max_batch_windows=8
    )
    accepted, closed = post_lines(fleet.apis, 10_000)
    assert accepted == 10_000 and len(closed) == 1_000
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    streams = [f"logllm:{{p{p}}}:ready" for p in range(PARTITIONS)]

    def pending_of(consumer: str) -> int:
        return sum(
            c["pending"] for s in streams for c in client.xinfo_consumers(s, GROUP) if c["name"] == consumer
        )

    wait_for(lambda: pending_of("worker-0") > 0, 30, "worker-0 to hold windows")
    victim = fleet.workers[0]
    assert victim.process is not None
    os.kill(victim.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    victim.process.wait(timeout=10)
    held = pending_of("worker-0")
    wait_for(lambda: pending_of("worker-0") == 0, 30, "worker-0's windows to be claimed")
    claimed_after = time.monotonic() - killed_at
    # Entries become claimable reclaim_idle_ms after their last delivery (before the kill); a live worker looks
    # every reclaim_idle_ms / 2. Slack for a busy, shared 2-core machine.
    assert claimed_after <= reclaim_ms * 1.5 / 1000 + 2.0, f"claimed {claimed_after:.1f} s after the kill"
    wait_for(
        lambda: all(c["name"] != "worker-0" for s in streams for c in client.xinfo_consumers(s, GROUP)),
        reclaim_ms / 1000 + 10,
        "the dead consumer to leave the group",
    )
    wait_for(lambda: sum(client.xlen(s) for s in streams) == 0, DRAIN_TIMEOUT_S, "the queue to drain")
    verdicts = read_verdicts(redis_url, False, closed)
    assert all(isinstance(v, Verdict) for v in verdicts)
    assert sum(v.n_lines for v in verdicts if isinstance(v, Verdict)) == 10_000
    print(f"\nworker-0 held {held} windows at the kill; all claimed {claimed_after:.1f} s later")
    client.close()
