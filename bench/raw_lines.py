"""µs per line to parse, key and store HDFS lines with the content alone (before) and with the raw line beside it
(now, service/windows/line_codec.py), side by side in one run.

Each pass runs the intake's own steps on 1,000-line requests of real HDFS_2k lines (sessions by block id):
``build_batch`` (parse, window keys, the stored element) and ``WindowStore.append_groups`` on an embedded Redis
(one EVALSHA per partition). "Before" swaps the element builder for one that keeps the content only, which is
what the store was given before raw lines were kept. Passes interleave the variants, so a neighbour's load hits
both alike; min and median of the repeats are printed. The windows are flushed between passes. No HTTP: the
request parsing around these steps is the same for both.

    python -m bench.raw_lines --lines 20000 --repeats 5
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from bench.common import base_parser, hdfs_lines, machine, machine_line, result_name, table, with_session, write_result

VARIANTS = ("content only (before)", "content + raw (now)")


async def one_pass(store: Any, settings: Any, requests: list[list[Any]], keep_raw: bool) -> tuple[float, float]:
    """Seconds in build_batch and in append_groups for all requests."""
    import service.intake.batch as batch_module
    from service.windows.line_codec import encode_line

    batch_module.encode_line = encode_line if keep_raw else (lambda raw, content, timestamp=None: content)  # type: ignore[assignment]
    try:
        building = storing = 0.0
        for lines in requests:
            started = time.perf_counter()
            batch = batch_module.build_batch(lines, settings)
            built = time.perf_counter()
            await store.append_groups(batch.groups)
            storing += time.perf_counter() - built
            building += built - started
        return building, storing
    finally:
        batch_module.encode_line = encode_line


async def run(url: str, templates: list[str], n_lines: int, repeats: int) -> dict[str, dict[str, list[float]]]:
    import redis
    from redis.asyncio import Redis

    from service.intake.batch import LogLine
    from service.settings import ServiceSettings
    from service.windows.store import WindowStore

    settings = ServiceSettings(log_format="hdfs", max_session_lines=10**9, max_open_windows=10**9)
    lines = [
        (i, LogLine(message=with_session(templates[i % len(templates)], f"blk_{8000000 + i % 5000}")))
        for i in range(n_lines)
    ]
    requests = [lines[start : start + 1000] for start in range(0, n_lines, 1000)]
    client = Redis.from_url(url)
    times: dict[str, dict[str, list[float]]] = {v: {"build_batch": [], "append": []} for v in VARIANTS}
    with redis.Redis.from_url(url) as sync:
        for _ in range(repeats):
            for name, keep_raw in zip(VARIANTS, (False, True), strict=True):
                sync.flushall()
                store = WindowStore(client, settings)
                await store.setup()
                building, storing = await one_pass(store, settings, requests, keep_raw)
                times[name]["build_batch"].append(building)
                times[name]["append"].append(storing)
    await client.aclose()
    return times


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0], "raw_lines")
    parser.add_argument("--lines", type=int, default=20_000, help="HDFS lines per pass (1,000 per request)")
    parser.add_argument("--repeats", type=int, default=5, help="passes per variant (min and median reported)")
    args = parser.parse_args()
    if args.quick:
        args.lines, args.repeats = 2000, 1
    from service.windows.embedded_redis import EmbeddedRedis

    info = machine()
    print(machine_line(info))
    templates = hdfs_lines(args.data)
    with EmbeddedRedis() as server:
        times = asyncio.run(run(server.url, templates, args.lines, args.repeats))
    us = 1e6 / args.lines
    rows = []
    for name in VARIANTS:
        total = [b + a for b, a in zip(times[name]["build_batch"], times[name]["append"], strict=True)]
        rows.append([
            name, min(times[name]["build_batch"]) * us, min(times[name]["append"]) * us, min(total) * us,
            statistics.median(total) * us,
        ])  # fmt: skip
    print(f"{args.lines} HDFS_2k lines per pass in 1,000-line requests, {args.repeats} interleaved repeat(s)")
    print(table(["elements", "build_batch µs/line (min)", "append µs/line (min)", "both (min)", "both (median)"], rows))
    print(f"now / before, both steps (min): {rows[1][3] / rows[0][3]:.3f}")
    print(machine_line(info))
    write_result(result_name(args), {"quick": args.quick, "lines": args.lines, "seconds": times}, info)


if __name__ == "__main__":
    main()
