"""What idempotent retries and kept timestamps cost per line of POST /logs, each side by side in one process.

Two comparisons on one embedded Redis, passes alternating so both sides see the same machine load:

- request key: storing 1,000-line requests of real HDFS_2k lines over ``--sessions`` sessions (every request
  spans all partitions) with ``append_prepared(prepared)`` as before, and with the request key the intake now
  passes (XXH3-128 of the body as sent, the lock, the per-call markers in append.lua, the one DEL after success);
- timestamps: ``build_batch`` + append of the same lines without a timestamp field and with one (Loki's
  nanosecond string, which every Loki and OTLP entry carries), which line_codec now keeps in the element.

It reports the service-side CPU (this process) and Redis' CPU (``INFO cpu``) per line, medians over passes.

    python -m bench.retry_key --lines 100000 --repeats 3
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from bench.common import base_parser, hdfs_lines, machine, machine_line, result_name, table, with_session, write_result

VARIANTS = ("no request key (before)", "request key (now)", "timestamps: none", "timestamps: kept (now)")


def _redis_cpu(sync: Any) -> float:
    info = sync.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def one_pass(url: str, variant: str, fields: list[Any], settings: Any) -> tuple[float, float]:
    """(process CPU s, Redis CPU s) to build and store every 1,000-line request once on a flushed Redis."""
    import redis
    from redis.asyncio import Redis

    from service.intake.batch import build_batch
    from service.intake.idempotency import _digest
    from service.windows.store import WindowStore

    stamped = variant.startswith("timestamps: kept")
    keyed = variant.startswith("request key")
    requests = [fields[i : i + 1000] for i in range(0, len(fields), 1000)]
    if not stamped:
        requests = [[(i, m, s, src, None) for i, m, s, src, _ in r] for r in requests]
    bodies = [repr(r).encode() for r in requests]  # stands for the body as sent (what the key hashes)
    with redis.Redis.from_url(url) as sync:
        sync.flushall()
        client = Redis.from_url(url)
        store = WindowStore(client, settings)
        await store.setup()
        cpu, redis_cpu = time.process_time(), _redis_cpu(sync)
        for lines, body in zip(requests, bodies, strict=True):
            prepared = store.prepare(build_batch(lines, settings).groups)
            key = _digest([b"/logs", b"", b"application/json", b"", b""], body) if keyed else None
            await store.append_prepared(prepared, key)
        cpu, redis_cpu = time.process_time() - cpu, _redis_cpu(sync) - redis_cpu
        await client.aclose()
        return cpu, redis_cpu


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0], "retry_key")
    parser.add_argument("--lines", type=int, default=100_000, help="HDFS lines per pass (1,000 per request)")
    parser.add_argument("--sessions", type=int, default=5000, help="distinct session ids the lines spread over")
    parser.add_argument("--repeats", type=int, default=3, help="passes per variant (median reported)")
    args = parser.parse_args()
    if args.quick:
        args.lines, args.repeats = 4000, 1

    from service.settings import ServiceSettings
    from service.windows.embedded_redis import EmbeddedRedis

    info = machine()
    print(machine_line(info))
    settings = ServiceSettings(log_format="hdfs", max_session_lines=10**9, max_open_windows=10**9)
    templates = hdfs_lines(args.data)
    fields = [
        (i, with_session(templates[i % len(templates)], f"blk_{8000000 + i % args.sessions}"), None, None,
         str(1714557600123456789 + i))
        for i in range(args.lines)
    ]  # fmt: skip
    runs: dict[str, dict[str, list[float]]] = {v: {"cpu": [], "redis_cpu": []} for v in VARIANTS}
    with EmbeddedRedis() as server:
        for _ in range(args.repeats):
            for variant in VARIANTS:
                cpu, redis_cpu = asyncio.run(one_pass(server.url, variant, fields, settings))
                runs[variant]["cpu"].append(cpu)
                runs[variant]["redis_cpu"].append(redis_cpu)
    us = 1e6 / args.lines
    medians = {v: (statistics.median(r["cpu"]) * us, statistics.median(r["redis_cpu"]) * us) for v, r in runs.items()}
    rows = []
    for variant, (cpu_us, redis_us) in medians.items():
        base = VARIANTS[0] if variant in VARIANTS[:2] else VARIANTS[2]
        total, base_total = cpu_us + redis_us, sum(medians[base])
        rows.append([variant, cpu_us, redis_us, total, total / base_total])
    print(f"{args.lines} HDFS_2k lines per pass over {args.sessions} sessions, 1,000-line requests, "
          f"{args.repeats} alternating passes per variant")  # fmt: skip
    print(table(["variant", "service CPU µs/line", "Redis CPU µs/line", "total", "x its before"], rows))
    print(machine_line(info))
    write_result(
        result_name(args),
        {"quick": args.quick, "lines": args.lines, "sessions": args.sessions, "seconds": runs,
         "us_per_line": {v: {"service": c, "redis": r} for v, (c, r) in medians.items()}},
        info,
    )  # fmt: skip


if __name__ == "__main__":
    main()
