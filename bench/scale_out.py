"""Scale-out figures: start time and RSS of each role, lines/s of one api process, windows/s of 1, 2, 4 workers.

- roles: ``logllm serve --role api|worker|all`` on a Redis started here; seconds from spawn to /health/ready
  (worker, all: model loaded and warm) and RSS then (VmRSS, and the peak VmHWM).
- api: one ``--role api`` process, no worker; POST /logs of text bodies (1,000 lines each) from 2 threads.
- workers: N ``--role worker`` processes with ``bench.scorers:fixed_cost`` (``--cost-ms`` per batch, default
  50: a GPU call's cost), ready and idle; then ``--windows`` closed windows are queued at once and the clock
  runs until every verdict is written. Ideal: N * max_batch_windows / cost. On a 2-core machine this shows that
  the queueing (Redis, the loop) does not hold the workers back, not model compute scaling.

    python -m bench.scale_out --windows 2000 --workers 1 2 4
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    ServiceProcess,
    base_parser,
    machine,
    machine_line,
    resolve_checkpoint,
    result_name,
    table,
    write_result,
)
from bench.memory import proc_status

SESSION_LINES = 10
BATCH_WINDOWS = 16


def role_process(role: str, checkpoint: Path, redis_url: str, **settings: Any) -> ServiceProcess:
    process = ServiceProcess(checkpoint, {"role": role, "redis_url": redis_url, **settings})
    if role == "worker":
        process.env["LOGLLM_WORKER_PORT"] = str(process.port)
    return process


def measure_roles(checkpoint: Path, redis_url: str, roles: list[str]) -> list[dict[str, Any]]:
    rows = []
    for role in roles:
        process = role_process(role, checkpoint, redis_url)
        seconds = process.start()
        status = proc_status(process.pid)
        rows.append(
            {"role": role, "ready_s": round(seconds, 2), "rss_mib": status["VmRSS"] / 2**20,
             "peak_rss_mib": status["VmHWM"] / 2**20}
        )  # fmt: skip
        process.stop()
    return rows


def api_lines_per_s(redis_url: str, lines: int, senders: int) -> float:
    process = role_process("api", Path("no-checkpoint"), redis_url, max_ready_queue=10**6, idle_timeout_s=3600)
    process.start()
    bodies = [
        "\n".join(f"step {j % SESSION_LINES} of blk_{j // SESSION_LINES}" for j in range(s, s + 1000))
        for s in range(0, lines, 1000)
    ]

    def send(share: list[str]) -> None:
        with httpx.Client(base_url=process.url, timeout=60) as client:
            for body in share:
                client.post("/logs", content=body, headers={"Content-Type": "text/plain"}).raise_for_status()

    threads = [threading.Thread(target=send, args=(bodies[i::senders],)) for i in range(senders)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    process.stop()
    return lines / elapsed


def verdicts_written(process: ServiceProcess) -> int:
    text = httpx.get(f"{process.url}/metrics", timeout=10).text
    return int(sum(float(v) for v in re.findall(r"^logllm_verdicts_total\{[^}]*\} (\S+)$", text, re.MULTILINE)))


async def queue_windows(redis_url: str, windows: int) -> None:
    """Closed windows straight into the store (as the api would after SESSION_LINES lines each)."""
    from redis.asyncio import Redis

    from service.windows.store import StoreConfig, WindowStore

    client = Redis.from_url(redis_url)
    store = WindowStore(client, StoreConfig(max_session_lines=SESSION_LINES, max_ready_queue=10**6))
    await store.setup()
    items = [(f"blk_{w}", f"step {i} of blk_{w}") for w in range(windows) for i in range(SESSION_LINES)]
    for start in range(0, len(items), 2000):
        await store.append(items[start : start + 2000], "session")
    await client.aclose()


def workers_windows_per_s(redis_url: str, n: int, windows: int, cost_ms: float) -> dict[str, Any]:
    import redis

    redis.Redis.from_url(redis_url).flushall()
    os.environ["FIXED_COST_MS"] = str(cost_ms)
    workers = [
        role_process(
            "worker", Path("no-checkpoint"), redis_url, scorer="bench.scorers:fixed_cost",
            max_batch_windows=BATCH_WINDOWS, max_batch_wait_ms=5,
        )
        for _ in range(n)
    ]  # fmt: skip
    for worker in workers:
        worker.start()
    started = time.perf_counter()
    asyncio.run(queue_windows(redis_url, windows))
    while sum(map(verdicts_written, workers)) < windows:
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    per_worker = [verdicts_written(w) for w in workers]
    for worker in workers:
        worker.stop()
    ideal = n * BATCH_WINDOWS / (cost_ms / 1000)
    return {
        "workers": n, "windows": windows, "seconds": round(elapsed, 2), "windows_per_s": windows / elapsed,
        "ideal_windows_per_s": ideal, "per_worker": per_worker,
    }  # fmt: skip


def main() -> None:
    parser = base_parser(__doc__ or "", "scale_out")
    parser.add_argument("--checkpoint", help="checkpoint for the worker and all roles (default: checkpoints/default)")
    parser.add_argument("--roles", nargs="*", default=["api", "worker", "all"], help="roles to time (none: skip)")
    parser.add_argument("--lines", type=int, default=50_000, help="lines sent to one api process")
    parser.add_argument("--windows", type=int, default=2_000, help="windows queued for each worker count")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--cost-ms", type=float, default=50.0, help="fixed cost per batch of the test scorer")
    args = parser.parse_args()
    if args.quick:
        args.roles, args.lines, args.windows, args.workers = ["api"], 5_000, 200, [1, 2]
    from service.windows.embedded_redis import EmbeddedRedis

    info = machine()
    print(machine_line(info))
    with EmbeddedRedis(None) as server:
        checkpoint = resolve_checkpoint(args.checkpoint) if set(args.roles) - {"api"} else Path("no-checkpoint")
        roles = measure_roles(checkpoint, server.url, args.roles)
        if roles:
            print(table(["role", "ready s", "RSS MiB", "peak RSS MiB"], [list(r.values()) for r in roles]))
        lines_per_s = api_lines_per_s(server.url, args.lines, senders=2)
        print(f"one api process: {lines_per_s:.0f} lines/s ({args.lines} lines, 1,000 per request, 2 senders)")
        runs = [workers_windows_per_s(server.url, n, args.windows, args.cost_ms) for n in args.workers]
    print(
        table(
            ["workers", "windows", "s", "windows/s", "ideal windows/s", "verdicts per worker"],
            [[r["workers"], r["windows"], r["seconds"], r["windows_per_s"], r["ideal_windows_per_s"],
              " ".join(map(str, r["per_worker"]))] for r in runs],
        )  # fmt: skip
    )
    payload = {
        "checkpoint": str(checkpoint), "roles": roles, "api_lines_per_s": lines_per_s, "api_lines": args.lines,
        "cost_ms_per_batch": args.cost_ms, "max_batch_windows": BATCH_WINDOWS, "session_lines": SESSION_LINES,
        "workers": runs,
    }  # fmt: skip
    write_result(result_name(args), payload, info)


if __name__ == "__main__":
    main()
