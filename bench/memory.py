"""Peak RSS of the service process with the model loaded and scoring, and Redis memory per session and per line.

A real ``logllm serve`` runs on a Redis started here. Peak RSS is the kernel's high-water mark (VmHWM in
/proc/<pid>/status) at ready (model loaded and warm), after ingestion, and after scoring ``--score-windows``
closed windows. Redis memory: INFO used_memory before and after opening N sessions of M lines (phase A), and
after M more lines each (phase B): per line = (B - A) / (N*M), per session = what A costs beyond its lines.
MEMORY USAGE of one session's keys is shown beside it. Lines are real HDFS_2k lines; Redis stores their
content (header cut by the hdfs format) and the raw line beside it; the mean content length is reported, as
per-line memory depends on it.

    python -m bench.memory --sessions 10000 --lines 20 --score-windows 64

Kept anomalous windows (``--kept-windows``, also alone with ``--records-only``): the store and record store
write N anomalous windows of M lines exactly as the classifier does (verdict, record with preprocessed messages
and a top-5 explanation, lines kept); bytes per kept window = INFO used_memory after / N, against an empty
Redis. No model is needed for this part: the record's size does not depend on the score.

Raw lines beside their content (service/windows/line_codec.py), side by side in one run on one Redis (flushed
between): each store-level measurement runs twice, with the list elements the store wrote before (content only)
and those it writes now (content + raw line): bytes per kept anomalous window, and per buffered line of
open sessions (WindowStore.append of N sessions x M lines, then M more: (B - A) / (N*M)); and the mean element
size over all HDFS_2k lines, which has no noise.

    python -m bench.memory --records-only --kept-windows 2000 --lines 20
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from bench.common import (
    ServiceProcess,
    base_parser,
    hdfs_lines,
    machine,
    machine_line,
    resolve_checkpoint,
    result_name,
    table,
    with_session,
    write_result,
)


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def post_lines(client: Any, templates: list[str], sessions: range, per_session: int, offset: int) -> int:
    """Round-robin over the sessions, 1,000 lines a request, as a busy shipper would interleave them."""
    lines = [
        with_session(templates[(offset + s * 7 + i) % len(templates)], f"blk_{6000000 + s}")
        for i in range(per_session)
        for s in sessions
    ]
    accepted = 0
    for start in range(0, len(lines), 1000):
        body = {"lines": [{"message": m} for m in lines[start : start + 1000]]}
        response = client.post("/logs", content=json.dumps(body), headers={"content-type": "application/json"})
        response.raise_for_status()
        accepted += response.json()["accepted"]
    return accepted


def used_memory(redis_client: Any) -> int:
    time.sleep(0.2)  # let lazy frees and the AOF rewrite buffer settle
    return int(redis_client.info("memory")["used_memory"])


VARIANTS = {"content only (before)": False, "content + raw (now)": True}


def element(raw: str, keep_raw: bool) -> str | bytes:
    """The list element of one HDFS line: its content, or (keep_raw) what the intake stores now."""
    from model.log_formats import parse_line
    from service.windows.line_codec import encode_line

    content = parse_line(raw, "hdfs").content
    return encode_line(raw, content) if keep_raw else content


def element_sizes(templates: list[str]) -> dict[str, float]:
    """Mean bytes of one line's element per variant, over every template (exact, no allocator noise)."""
    sizes = {}
    for name, keep_raw in VARIANTS.items():
        elements = [element(with_session(t, "blk_6000000"), keep_raw) for t in templates]
        sizes[name] = sum(len(e if isinstance(e, bytes) else e.encode()) for e in elements) / len(elements)
    return sizes


async def open_lines(url: str, templates: list[str], n: int, m: int, keep_raw: bool) -> dict[str, Any]:
    """Bytes per buffered line of n open sessions (store only, no HTTP), as the service part measures it."""
    from redis.asyncio import Redis

    from service.windows.store import StoreConfig, WindowStore

    client = Redis.from_url(url)
    store = WindowStore(client, StoreConfig(max_ready_queue=10**9, max_open_windows=10**9, max_session_lines=10**9))
    await store.setup()
    sync = __import__("redis").Redis.from_url(url)
    phases = [used_memory(sync)]
    for offset in (0, m):
        for first in range(0, n, 500):
            items = [
                (f"blk_{6000000 + s}", element(with_session(templates[(offset + s * 7 + i) % len(templates)],
                                                            f"blk_{6000000 + s}"), keep_raw))
                for i in range(m) for s in range(first, min(n, first + 500))
            ]  # fmt: skip
            await store.append(items, "session")
        phases.append(used_memory(sync))
    sync.close()
    await client.aclose()
    per_line = (phases[2] - phases[1]) / (n * m)
    return {"sessions": n, "lines": 2 * m, "used_memory": phases, "per_buffered_line": per_line,
            "per_open_session": (phases[1] - phases[0] - n * m * per_line) / n}  # fmt: skip


async def kept_anomalies(url: str, templates: list[str], n: int, m: int, keep_raw: bool = True) -> dict[str, Any]:
    """Write n anomalous windows of m real HDFS lines through WindowStore.complete with their records."""
    from redis.asyncio import Redis

    from model.preprocess import preprocess
    from service.records.record_store import RecordConfig, RecordStore
    from service.windows.store import StoreConfig, Verdict, WindowStore

    client = Redis.from_url(url)
    store = WindowStore(client, StoreConfig(max_ready_queue=10**9, max_open_windows=10**9))
    await store.setup()
    records = RecordStore(store, RecordConfig())
    sync = __import__("redis").Redis.from_url(url)
    base = used_memory(sync)
    for first in range(0, n, 500):
        sessions = range(first, min(n, first + 500))
        items = [
            (f"blk_{7000000 + s}", element(with_session(templates[(s * 7 + i) % len(templates)],
                                                        f"blk_{7000000 + s}"), keep_raw))
            for s in sessions for i in range(m)
        ]  # fmt: skip
        await store.append(items, "session")
        for s in sessions:
            await store.close(f"blk_{7000000 + s}")
        windows = await store.read_batch("bench", 500, 10**9, 1000)
        verdicts, payloads = [], {}
        for w in windows:
            messages = [preprocess(line) for line in w.lines]
            top = [{"message": t, "contribution": 0.1, "count": messages.count(t), "line": w.lines[messages.index(t)]}
                   | ({"raw": w.raw_line(messages.index(t))} if keep_raw else {})
                   for t in list(dict.fromkeys(messages))[:5]]  # fmt: skip
            verdicts.append((w, Verdict(w.window_id, "anomalous", 0.9, 0.5, m, "bench", w.closed_at, time.time())))
            payloads[w.window_id] = records.payload(w, "anomalous", messages, top)
        await store.complete(verdicts, payloads)
    after = used_memory(sync)
    prefix = store.prefix(store.partition("blk_7000000"))
    usage = {k: int(sync.memory_usage(prefix + k + "blk_7000000", samples=0) or 0)
             for k in ("rec:", "rec:lines:", "verdict:")}  # fmt: skip
    kept = sum(int(sync.zcard(store.prefix(p) + "rec:all")) for p in range(store.config.partitions))
    sync.close()
    await client.aclose()
    return {"windows": n, "kept": kept, "lines_per_window": m, "used_memory_before": base, "after": after,
            "bytes_per_kept_window": (after - base) / n, "memory_usage_one_window": usage}  # fmt: skip


def raw_side_by_side(url: str, templates: list[str], args: Any) -> dict[str, Any]:
    """Every store-level figure once per element variant, on one Redis flushed in between."""
    import redis

    out: dict[str, Any] = {"element_bytes": element_sizes(templates), "kept": {}, "open": {}}
    with redis.Redis.from_url(url) as sync:
        for name, keep_raw in VARIANTS.items():
            sync.flushall()
            out["kept"][name] = asyncio.run(kept_anomalies(url, templates, args.kept_windows, args.lines, keep_raw))
            sync.flushall()
            out["open"][name] = asyncio.run(open_lines(url, templates, args.open_sessions, args.lines, keep_raw))
        sync.flushall()
    return out


def print_kept(raw: dict[str, Any]) -> None:
    names = list(VARIANTS)
    kept, opened = raw["kept"], raw["open"]
    first = kept[names[0]]
    rows = [
        ["mean list element per HDFS_2k line", *(raw["element_bytes"][n] for n in names)],
        [f"per kept anomalous window ({first['windows']} x {first['lines_per_window']} lines, all keys)",
         *(kept[n]["bytes_per_kept_window"] for n in names)],
        *[[f"MEMORY USAGE {k}<id> (one kept window)", *(float(kept[n]["memory_usage_one_window"][k]) for n in names)]
          for k in first["memory_usage_one_window"]],
        [f"per buffered line ({opened[names[0]]['sessions']} open sessions x {2 * first['lines_per_window']} lines)",
         *(opened[n]["per_buffered_line"] for n in names)],
        ["per open session (beyond its lines)", *(opened[n]["per_open_session"] for n in names)],
    ]  # fmt: skip
    print(table(["Redis bytes (store level, same run)", *names], rows))


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0], "memory")
    parser.add_argument("--checkpoint", help="checkpoint the service loads (default, else untrained)")
    parser.add_argument("--sessions", type=int, default=10_000, help="N open sessions")
    parser.add_argument("--lines", type=int, default=20, help="M lines per session in each phase")
    parser.add_argument("--score-windows", type=int, default=64, help="sessions closed and scored for peak RSS")
    parser.add_argument("--score-timeout-s", type=float, default=600)
    parser.add_argument("--kept-windows", type=int, default=2000, help="anomalous windows kept (records part)")
    parser.add_argument("--open-sessions", type=int, default=5000, help="open sessions (store-level raw comparison)")
    parser.add_argument("--records-only", action="store_true", help="measure only the store-level parts (no model)")
    args = parser.parse_args()
    if args.quick:
        args.sessions, args.lines, args.score_windows, args.kept_windows, args.open_sessions = 500, 10, 8, 200, 200
    if args.records_only and not args.name:
        args.name = "memory-records-quick" if args.quick else "memory-records"
    import httpx
    import redis

    from model.log_formats import parse_line
    from service.windows.embedded_redis import EmbeddedRedis

    info = machine()
    print(machine_line(info))
    templates = hdfs_lines(args.data)
    with EmbeddedRedis() as server:
        raw = raw_side_by_side(server.url, templates, args)
    kept = raw["kept"][list(VARIANTS)[-1]]
    if args.records_only:
        print_kept(raw)
        print(machine_line(info))
        write_result(result_name(args), {"quick": args.quick, "kept_anomalous_windows": kept, "raw_lines": raw}, info)
        return
    checkpoint = resolve_checkpoint(args.checkpoint)
    n, m = args.sessions, args.lines
    rss: dict[str, dict[str, int]] = {}
    with EmbeddedRedis() as server:
        r = redis.Redis.from_url(server.url)
        service = ServiceProcess(
            checkpoint,
            {
                "redis_url": server.url,
                "log_format": "hdfs",
                "window_mode": "session",
                "max_session_lines": 10**9,
                "idle_timeout_s": 10**6,
                "max_open_windows": 10**8,
            },
        )
        service.start()
        try:
            rss["ready"] = proc_status(service.pid)
            with httpx.Client(base_url=service.url, timeout=120) as client:
                base = used_memory(r)
                post_lines(client, templates, range(n), m, 0)
                after_a = used_memory(r)
                post_lines(client, templates, range(n), m, m)
                after_b = used_memory(r)
                rss["ingested"] = proc_status(service.pid)
                sample = [k.decode() for k in r.scan_iter(match="logllm:*:*:blk_6000000", count=10_000)]
                key_usage = {k: int(r.memory_usage(k, samples=0) or 0) for k in sample}
                lastseen = sum(int(r.memory_usage(k, samples=0) or 0) for k in r.scan_iter(match="logllm:*lastseen"))
                closed = [
                    client.post(f"/sequences/blk_{6000000 + s}/close").json()["id"]
                    for s in range(min(args.score_windows, n))
                ]
                started, pending = time.monotonic(), list(closed)
                while pending and time.monotonic() - started < args.score_timeout_s:
                    pending = [
                        w for w in pending if client.get(f"/sequences/{w}/verdict").json().get("status") == "pending"
                    ]
                    time.sleep(0.5)
                rss["scored"] = proc_status(service.pid)
        finally:
            service.stop()
        r.close()
    per_line = (after_b - after_a) / (n * m)
    per_session = (after_a - base - n * m * per_line) / n
    content = [parse_line(with_session(t, "blk_6000000"), "hdfs").content for t in templates]
    mean_content = sum(map(len, content)) / len(content)
    mib = 2**20
    print()
    print(
        table(
            ["service process", "RSS MiB", "peak RSS (VmHWM) MiB"],
            [[k, v["VmRSS"] / mib, v["VmHWM"] / mib] for k, v in rss.items()],
        )
    )
    print(f"scored {len(closed) - len(pending)} of {len(closed)} closed windows of {2 * m} lines before 'scored'")
    print()
    print(
        table(
            ["Redis", "bytes"],
            [
                ["used_memory before", float(base)],
                [f"after {n} sessions x {m} lines", float(after_a)],
                [f"after {m} more lines each", float(after_b)],
                ["per buffered line", per_line],
                ["per open session (beyond its lines)", per_session],
                *[
                    [f"MEMORY USAGE {k} ({2 * m} lines)" if ":lines:" in k else f"MEMORY USAGE {k}", float(v)]
                    for k, v in key_usage.items()
                ],
                [f"lastseen sorted sets / {n} sessions", lastseen / n],
            ],
        )
    )
    print_kept(raw)
    print(f"mean stored line content: {mean_content:.0f} characters (HDFS_2k, hdfs format)")
    print(machine_line(info))
    write_result(
        result_name(args),
        {
            "quick": args.quick,
            "checkpoint": str(checkpoint),
            "sessions": n,
            "lines_per_phase": m,
            "service_rss_bytes": rss,
            "scored_windows": len(closed) - len(pending),
            "closed_windows": len(closed),
            "redis": {
                "used_memory_before": base,
                "after_phase_a": after_a,
                "after_phase_b": after_b,
                "per_line_bytes": per_line,
                "per_session_bytes": per_session,
                "memory_usage_sample": key_usage,
                "lastseen_bytes_per_session": lastseen / n,
            },
            "mean_line_content_chars": mean_content,
            "kept_anomalous_windows": kept,
            "raw_lines": raw,
        },
        info,
    )


if __name__ == "__main__":
    main()
