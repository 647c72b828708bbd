"""End-to-end latency: from the POST that closes a window to its verdict being readable, under sustained load.

A real ``logllm serve`` (embedded Redis, session windows of ``--window-lines`` HDFS lines) gets a steady
background load from a separate process: ``--load-windows-per-s`` fresh sessions per second, each posted as one
request that closes it by size. Meanwhile probes, one at a time, close a window either by size (the POST
carrying its last line) or explicitly (POST /sequences/{id}/close after its lines) and poll GET
/sequences/{id}/verdict every ``--poll-ms`` until it is no longer pending. Latency = verdict read - close sent
(so it includes up to one poll interval). If the ready queue grows during the run, the load is not sustainable
on this machine and the figures measure a backlog; the queue depth at the end is reported.

    python -m bench.latency --probes 60 --load-windows-per-s 2 --window-lines 20
"""

from __future__ import annotations

import multiprocessing
import re
import time
from pathlib import Path
from typing import Any

from bench.common import (
    ServiceProcess,
    base_parser,
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


def window_body(templates: list[str], session: str, lines: int, offset: int) -> dict[str, Any]:
    return {
        "lines": [{"message": with_session(templates[(offset + i) % len(templates)], session)} for i in range(lines)]
    }


def background_load(url: str, data: Path, rate: float, lines: int, stop: Any, out: Any) -> None:
    """Own process: one window per 1/rate seconds, each closed by size in one POST; reports what it sent."""
    import httpx

    templates = hdfs_lines(data)
    sent = refused = failed = 0
    started = time.perf_counter()
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            due = started + sent / rate
            if (wait := due - time.perf_counter()) > 0:
                stop.wait(wait)
                continue
            response = client.post("/logs", json=window_body(templates, f"blk_{7000000 + sent}", lines, sent))
            sent += 1
            refused += response.status_code == 429
            failed += response.status_code not in (200, 429)
    seconds = time.perf_counter() - started
    out.put(
        {
            "windows_sent": sent,
            "refused_429": refused,
            "failed": failed,
            "seconds": seconds,
            "windows_per_second": sent / seconds,
            "lines_per_second": sent * lines / seconds,
        }
    )


def probe(
    client: Any, templates: list[str], n: int, lines: int, explicit: bool, poll_s: float, timeout_s: float
) -> float | None:
    session = f"blk_{8000000 + n}"
    window_id = f"session:default:{session}"  # service/windows/ids.py
    if explicit:
        client.post("/logs", json=window_body(templates, session, lines - 1, n)).raise_for_status()
        started = time.perf_counter()
        client.post(f"/sequences/{session}/close").raise_for_status()
    else:
        started = time.perf_counter()
        response = client.post("/logs", json=window_body(templates, session, lines, n))
        response.raise_for_status()
        if window_id not in response.json()["closed"]:
            raise RuntimeError(f"probe {session}: {lines} lines did not close the window: {response.text[:200]}")
    while time.perf_counter() - started < timeout_s:
        status = client.get(f"/sequences/{window_id}/verdict").json().get("status")
        if status in ("normal", "anomalous"):
            return time.perf_counter() - started
        time.sleep(poll_s)
    return None


def metric(text: str, name: str) -> float | None:
    found = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0], "latency")
    parser.add_argument("--checkpoint", help="checkpoint the service loads (default, else untrained)")
    parser.add_argument("--probes", type=int, default=60, help="windows timed (half size, half explicit close)")
    parser.add_argument("--probe-interval-s", type=float, default=1.0, help="pause between probes")
    parser.add_argument("--load-windows-per-s", type=float, default=2.0, help="background windows per second")
    parser.add_argument("--window-lines", type=int, default=20, help="lines per window (max_session_lines)")
    parser.add_argument("--poll-ms", type=float, default=5.0)
    parser.add_argument("--probe-timeout-s", type=float, default=300.0)
    args = parser.parse_args()
    if args.quick:
        args.probes, args.load_windows_per_s, args.probe_interval_s = 4, 0.5, 0.5
    import httpx

    info = machine()
    print(machine_line(info))
    checkpoint = resolve_checkpoint(args.checkpoint)
    templates = hdfs_lines(args.data)
    service = ServiceProcess(
        checkpoint,
        {
            "log_format": "hdfs",
            "window_mode": "session",
            "redis_url": "",
            "max_session_lines": args.window_lines,
            "idle_timeout_s": 3600,
        },
    )
    ready_s = service.start()
    print(f"logllm serve ready on {service.url} after {ready_s:.1f} s", flush=True)
    ctx = multiprocessing.get_context("spawn")
    stop, out = ctx.Event(), ctx.Queue()
    loader = ctx.Process(
        target=background_load, args=(service.url, args.data, args.load_windows_per_s, args.window_lines, stop, out)
    )
    latencies: dict[str, list[float]] = {"size": [], "explicit": []}
    lost = 0
    try:
        loader.start()
        with httpx.Client(base_url=service.url, timeout=30) as client:
            time.sleep(min(5.0, 2 * args.probe_interval_s))  # let the load settle in
            for n in range(args.probes):
                mode = "explicit" if n % 2 else "size"
                took = probe(
                    client,
                    templates,
                    n,
                    args.window_lines,
                    mode == "explicit",
                    args.poll_ms / 1000,
                    args.probe_timeout_s,
                )
                if took is None:
                    lost += 1
                else:
                    latencies[mode].append(took)
                print(f"  probe {n} ({mode}): {'timeout' if took is None else f'{took * 1000:.0f} ms'}", flush=True)
                time.sleep(args.probe_interval_s)
            stop.set()
            load = out.get(timeout=60)
            metrics = client.get("/metrics").text
    finally:
        stop.set()
        loader.join(timeout=30)
        service.stop()
    e2e_sum = metric(metrics, "logllm_end_to_end_seconds_sum") or 0.0
    e2e_count = metric(metrics, "logllm_end_to_end_seconds_count") or 0.0
    depth = metric(metrics, "logllm_ready_queue_depth")
    rows, figures = [], {}
    for mode, values in (*latencies.items(), ("all", latencies["size"] + latencies["explicit"])):
        p50, p99 = percentile(values, 50), percentile(values, 99)
        figures[mode] = {
            "n": len(values),
            "p50_s": p50,
            "p99_s": p99,
            "max_s": max(values, default=None),
            "samples_s": values,
        }
        rows.append([mode, len(values), p50 and p50 * 1000, p99 and p99 * 1000, max(values) * 1000 if values else None])
    print()
    print(table(["close by", "probes", "p50 ms", "p99 ms", "max ms"], rows))
    print(
        f"load: {load['windows_per_second']:.2f} windows/s = {load['lines_per_second']:.0f} lines/s of "
        f"{args.window_lines}-line windows (429: {load['refused_429']}, failed: {load['failed']}); "
        f"probes every {args.probe_interval_s} s; poll every {args.poll_ms} ms; {lost} probe(s) timed out"
    )
    print(
        f"ready queue at the end: {depth}; service's closed->verdict mean: "
        f"{(e2e_sum or 0) / e2e_count * 1000 if e2e_count else float('nan'):.0f} ms over {e2e_count} windows"
    )
    if args.probes < 100:
        print(f"p99 of {args.probes} probes is close to the max: run more probes for a real tail")
    print(machine_line(info))
    write_result(
        result_name(args),
        {
            "quick": args.quick,
            "checkpoint": str(checkpoint),
            "window_lines": args.window_lines,
            "poll_ms": args.poll_ms,
            "probe_interval_s": args.probe_interval_s,
            "timed_out": lost,
            "load": load,
            "ready_queue_at_end": depth,
            "service_end_to_end_mean_s": (e2e_sum / e2e_count) if e2e_count else None,
            "latency": figures,
        },
        info,
    )


if __name__ == "__main__":
    main()
