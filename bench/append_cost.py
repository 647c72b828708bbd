"""Redis CPU µs per line of the intake's append, with the AOF on and off, and which commands it spends them on.

The ingest goal of issue 14 (100,000 lines/s on two cores) needs Redis' own share per line to be small, because
Redis, the service and the load client share the machine. This runs the intake's own steps (``build_batch``,
``WindowStore.append_groups``, one EVALSHA per partition) on 1,000-line requests of real HDFS_2k lines spread
over ``--sessions`` sessions (or, ``--window-mode fixed``, BGL_2k lines of one source in fixed windows), against
one embedded Redis, and reads Redis' CPU time (``INFO cpu``, user + sys)
before and after: that is Redis' work per line whatever the client costs. The AOF (what the embedded Redis
runs with: appendonly, fsync every second) is switched with CONFIG SET between passes, which alternate; the
windows are flushed between passes. ``INFO commandstats`` of the last pass with the AOF on splits the time: the
EVALSHA total includes its nested commands, so what the nested ones do not account for is the script's own
work (Lua, decoding the argument, building keys).

    python -m bench.append_cost --lines 200000 --sessions 5000 --repeats 2
    python -m bench.append_cost --lines 200000 --window-mode fixed --window-size 100 --window-step 100
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from bench.common import (
    base_parser,
    bgl_lines,
    hdfs_lines,
    machine,
    machine_line,
    result_name,
    table,
    with_session,
    write_result,
)


def _redis_cpu(sync: Any) -> float:
    info = sync.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def one_pass(url: str, batches: list[Any], settings: Any, aof: bool) -> tuple[float, float, dict[str, Any]]:
    """(Redis CPU seconds, wall seconds, commandstats) for storing every batch once on a flushed Redis."""
    import redis
    from redis.asyncio import Redis

    from service.windows.store import WindowStore

    with redis.Redis.from_url(url) as sync:
        sync.flushall()
        sync.config_set("appendonly", "yes" if aof else "no")
        while sync.info("persistence").get("aof_rewrite_in_progress"):
            time.sleep(0.05)  # switching the AOF on rewrites it: not this pass's work
        sync.config_resetstat()
        client = Redis.from_url(url)
        store = WindowStore(client, settings)
        await store.setup()
        cpu, started = _redis_cpu(sync), time.perf_counter()
        for batch in batches:
            await store.append_groups(batch.groups)
        wall, cpu = time.perf_counter() - started, _redis_cpu(sync) - cpu
        await client.aclose()
        return cpu, wall, sync.info("commandstats")


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0], "append_cost")
    parser.add_argument("--lines", type=int, default=200_000, help="HDFS lines per pass (1,000 per request)")
    parser.add_argument("--sessions", type=int, default=5000, help="distinct session ids the lines spread over")
    parser.add_argument("--repeats", type=int, default=2, help="passes per AOF setting (median reported)")
    parser.add_argument(
        "--window-mode",
        choices=("session", "fixed"),
        default="session",
        help="session: HDFS lines over --sessions sessions; fixed: BGL_2k lines of one source in windows of"
        " --window-size lines every --window-step",
    )
    parser.add_argument("--window-size", type=int, default=100)
    parser.add_argument("--window-step", type=int, default=100)
    args = parser.parse_args()
    if args.quick:
        args.lines, args.repeats = 4000, 1

    from service.intake.batch import build_batch
    from service.settings import ServiceSettings
    from service.windows.embedded_redis import EmbeddedRedis

    info = machine()
    print(machine_line(info))
    if args.window_mode == "fixed":
        settings = ServiceSettings(
            log_format="bgl",
            window_mode="fixed",
            window_size=args.window_size,
            window_step=args.window_step,
            max_ready_queue=10**9,
        )
        bgl = bgl_lines(args.data)
        fields = [(i, bgl[i % len(bgl)], None, None, None) for i in range(args.lines)]
    else:
        settings = ServiceSettings(log_format="hdfs", max_session_lines=10**9, max_open_windows=10**9)
        templates = hdfs_lines(args.data)
        fields = [
            (i, with_session(templates[i % len(templates)], f"blk_{8000000 + i % args.sessions}"), None, None, None)
            for i in range(args.lines)
        ]
    batches = [build_batch(fields[start : start + 1000], settings) for start in range(0, args.lines, 1000)]
    runs: dict[str, dict[str, list[float]]] = {"on": {"cpu": [], "wall": []}, "off": {"cpu": [], "wall": []}}
    stats: dict[str, Any] = {}
    with EmbeddedRedis() as server:
        for _ in range(args.repeats):
            for name in ("on", "off"):
                cpu, wall, found = asyncio.run(one_pass(server.url, batches, settings, name == "on"))
                runs[name]["cpu"].append(cpu)
                runs[name]["wall"].append(wall)
                if name == "on":
                    stats = found
    us = 1e6 / args.lines
    rows = []
    for name, r in runs.items():
        cpu_us = statistics.median(r["cpu"]) * us
        rows.append([f"AOF {name}", cpu_us, statistics.median(r["wall"]) * us, 1e6 / cpu_us])
    if args.window_mode == "fixed":
        what = f"BGL_2k lines per pass, fixed windows of {args.window_size} every {args.window_step}"
    else:
        what = f"HDFS_2k lines per pass over {args.sessions} sessions"
    print(f"{args.lines} {what}, 1,000-line requests, {args.repeats} alternating pass(es) per setting")
    print(table(["Redis", "Redis CPU µs/line", "wall µs/line (client incl.)", "lines/s Redis' core allows"], rows))
    spent = sorted(((k.removeprefix("cmdstat_"), v) for k, v in stats.items()), key=lambda kv: -kv[1]["usec"])
    nested = sum(v["usec"] for k, v in spent if k != "evalsha")
    script = next((v["usec"] for k, v in spent if k == "evalsha"), 0)
    command_rows = [[k, v["calls"] / args.lines, v["usec"] / args.lines] for k, v in spent[:6]]
    command_rows.append(["evalsha minus nested commands (the scripts' own work)", "", (script - nested) / args.lines])
    print(table(["command (last AOF-on pass)", "calls/line", "µs/line"], command_rows))
    print(machine_line(info))
    write_result(result_name(args), {"quick": args.quick, "lines": args.lines, "sessions": args.sessions,
                                     "window_mode": args.window_mode, "window_size": args.window_size,
                                     "window_step": args.window_step, "seconds": runs, "commandstats": stats},
                 info)  # fmt: skip


if __name__ == "__main__":
    main()
