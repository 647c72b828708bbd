"""End-to-end latency: from the POST that closes a window to its verdict being readable, under sustained load.

A real ``logllm serve`` (embedded Redis, session windows of ``--window-lines`` HDFS lines) gets a steady
background load from a separate process: ``--load-windows-per-s`` fresh sessions per second, each posted as one
request that closes it by size. Meanwhile probes, one at a time, close a window either by size (the POST
carrying its last line) or explicitly (POST /sequences/{id}/close after its lines) and poll GET
/sequences/{id}/verdict every ``--poll-ms`` until it is no longer pending. Latency = verdict read - close sent
(so it includes up to one poll interval). If the ready queue grows during the run, the load is not sustainable
on this machine and the figures measure a backlog; the queue depth at the end is reported.

``--shares``: runs at these shares of anomalous windows (load and probes alike: a window picked by a seeded
draw gets a line of HDFS event E20, "Unexpected error trying to delete block ...", in the middle; the share the
service flagged is reported). ``--before REV``: the code at that git revision runs beside this checkout, one
service each, both up for the whole run; each share is measured on one side and then the other.

    python -m bench.latency --probes 60 --load-windows-per-s 2 --window-lines 20
    python -m bench.latency --probes 200 --probe-interval-s 0.5 --shares 0 0.2 0.5 --before 668764b
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import re
import time
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    ServiceProcess,
    base_parser,
    checkout,
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

ANOMALY = (
    "081109 214043 2561 WARN dfs.FSDataset: Unexpected error trying to delete block {} BlockInfo not found in"
    " volumeMap."
)


def window_body(templates: list[str], session: str, lines: int, offset: int, share: float = 0.0) -> dict[str, Any]:
    """``lines`` consecutive real lines with the session's block id; with probability ``share`` (seeded by the
    session) the middle one is an E20 line."""
    messages = [with_session(templates[(offset + i) % len(templates)], session) for i in range(lines)]
    if share > 0 and random.Random(session).random() < share:
        messages[lines // 2] = ANOMALY.format(session)
    return {"lines": [{"message": m} for m in messages]}


def background_load(url: str, data: Path, rate: float, lines: int, stop: Any, out: Any, share: float = 0.0) -> None:
    """Own process: one window per 1/rate seconds, each closed by size in one POST; reports what it sent."""
    import httpx

    templates = hdfs_lines(data)
    first_block = 7_000_000 + int(share * 1000) * 100_000  # fresh sessions per share
    sent = refused = failed = 0
    started = time.perf_counter()
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            due = started + sent / rate
            if (wait := due - time.perf_counter()) > 0:
                stop.wait(wait)
                continue
            body = window_body(templates, f"blk_{first_block + sent}", lines, sent, share)
            response = client.post("/logs", json=body)
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
    client: Any,
    templates: list[str],
    n: int,
    lines: int,
    explicit: bool,
    poll_s: float,
    timeout_s: float,
    share: float = 0.0,
) -> float | None:
    session = f"blk_{8_000_000 + int(share * 1000) * 100_000 + n}"
    window_id = f"session:default:{session}"  # service/windows/ids.py
    if explicit:
        body = window_body(templates, session, lines, n, share)
        body["lines"] = body["lines"][:-1]  # the last line's place is taken by the close
        client.post("/logs", json=body).raise_for_status()
        started = time.perf_counter()
        client.post(f"/sequences/{session}/close").raise_for_status()
    else:
        started = time.perf_counter()
        response = client.post("/logs", json=window_body(templates, session, lines, n, share))
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


def measure(service: ServiceProcess, args: Any, templates: list[str], share: float) -> dict[str, Any]:
    """One run against one service: background load in its own process, probes one at a time from here."""
    import httpx

    ctx = multiprocessing.get_context("spawn")
    stop, out = ctx.Event(), ctx.Queue()
    loader = ctx.Process(
        target=background_load,
        args=(service.url, args.data, args.load_windows_per_s, args.window_lines, stop, out, share),
    )
    latencies: dict[str, list[float]] = {"size": [], "explicit": []}
    lost = 0
    with httpx.Client(base_url=service.url, timeout=30) as client:
        before = client.get("/metrics").text
        try:
            loader.start()
            time.sleep(min(5.0, 2 * args.probe_interval_s))  # let the load settle in
            for n in range(args.probes):
                mode = "explicit" if n % 2 else "size"
                took = probe(
                    client, templates, n, args.window_lines, mode == "explicit", args.poll_ms / 1000,
                    args.probe_timeout_s, share,
                )  # fmt: skip
                if took is None:
                    lost += 1
                else:
                    latencies[mode].append(took)
                if args.verbose:
                    print(f"  probe {n} ({mode}): {'timeout' if took is None else f'{took * 1000:.0f} ms'}", flush=True)
                time.sleep(args.probe_interval_s)
            stop.set()
            load = out.get(timeout=60)
        finally:
            stop.set()
            loader.join(timeout=30)
        after = client.get("/metrics").text

    def delta(name: str) -> float:
        return (metric(after, name) or 0.0) - (metric(before, name) or 0.0)

    e2e_sum, e2e_count = delta("logllm_end_to_end_seconds_sum"), delta("logllm_end_to_end_seconds_count")
    anomalous = delta('logllm_verdicts_total{label="anomalous"}')
    verdicts = anomalous + delta('logllm_verdicts_total{label="normal"}')
    figures = {}
    for mode, values in (*latencies.items(), ("all", latencies["size"] + latencies["explicit"])):
        figures[mode] = {
            "n": len(values), "p50_s": percentile(values, 50), "p99_s": percentile(values, 99),
            "max_s": max(values, default=None), "samples_s": values,
        }  # fmt: skip
    return {
        "share_injected": share,
        "share_flagged": anomalous / verdicts if verdicts else None,
        "timed_out": lost,
        "load": load,
        "ready_queue_at_end": metric(after, "logllm_ready_queue_depth"),
        "service_end_to_end_mean_s": e2e_sum / e2e_count if e2e_count else None,
        "load_average_1m": os.getloadavg()[0],
        "latency": figures,
    }


def drain(url: str, timeout_s: float) -> float | None:
    """Wait until the service's ready queue is empty (a backlog of one run must not load the next); the depth
    left when the wait ran out, else None."""
    import httpx

    deadline = time.perf_counter() + timeout_s
    depth = None
    while time.perf_counter() < deadline:
        depth = metric(httpx.get(f"{url}/metrics", timeout=30).text, "logllm_ready_queue_depth")
        if not depth:
            return None
        time.sleep(1.0)
    return depth


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0], "latency")
    parser.add_argument("--checkpoint", help="checkpoint the service loads (default, else untrained)")
    parser.add_argument("--probes", type=int, default=60, help="windows timed (half size, half explicit close)")
    parser.add_argument("--probe-interval-s", type=float, default=1.0, help="pause between probes")
    parser.add_argument("--load-windows-per-s", type=float, default=2.0, help="background windows per second")
    parser.add_argument("--window-lines", type=int, default=20, help="lines per window (max_session_lines)")
    parser.add_argument("--poll-ms", type=float, default=5.0)
    parser.add_argument("--probe-timeout-s", type=float, default=300.0)
    parser.add_argument("--shares", type=float, nargs="+", default=[0.0], help="shares of windows made anomalous")
    parser.add_argument("--before", default="", help="git revision run beside this checkout as 'before'")
    parser.add_argument("--before-probes", type=int, help="probes on the before side (default --probes)")
    parser.add_argument("--verbose", action="store_true", help="print every probe")
    parser.add_argument("--drain-s", type=float, default=120.0, help="longest wait for a backlog to clear after a run")
    args = parser.parse_args()
    if args.quick:
        args.probes, args.load_windows_per_s, args.probe_interval_s = 4, 0.5, 0.5
    info = machine()
    print(machine_line(info))
    checkpoint = resolve_checkpoint(args.checkpoint)
    templates = hdfs_lines(args.data)
    settings = {"log_format": "hdfs", "window_mode": "session", "redis_url": "", "max_session_lines": args.window_lines,
                "idle_timeout_s": 3600}  # fmt: skip
    repos: dict[str, Path] = ({"before": checkout(args.before)} if args.before else {}) | {"after": REPO}
    services = {side: ServiceProcess(checkpoint, settings, repo=repo) for side, repo in repos.items()}
    runs: dict[str, dict[str, Any]] = {side: {} for side in services}
    rows = []
    try:
        for side, service in services.items():
            print(f"{side}: logllm serve ready on {service.url} after {service.start():.1f} s", flush=True)
        for share in args.shares:
            for side, service in reversed(services.items()):  # after first: a before backlog is drained after it
                side_args = argparse.Namespace(**vars(args))
                if side == "before" and args.before_probes:
                    side_args.probes = args.before_probes
                run = runs[side][f"{share:g}"] = measure(service, side_args, templates, share)
                run["backlog_left_after_drain"] = drain(service.url, args.drain_s)
                lat, load = run["latency"]["all"], run["load"]
                flagged = run["share_flagged"]
                rows.append([
                    f"{share:.0%}", side, f"{flagged:.0%}" if flagged is not None else "-", lat["n"],
                    lat["p50_s"] and lat["p50_s"] * 1000, lat["p99_s"] and lat["p99_s"] * 1000,
                    lat["max_s"] and lat["max_s"] * 1000, run["timed_out"], load["windows_per_second"],
                    run["ready_queue_at_end"], run["load_average_1m"],
                ])  # fmt: skip
                print("  " + " | ".join(str(c) for c in rows[-1]), flush=True)
    finally:
        for service in services.values():
            service.stop()
    print()
    print(table(["injected", "side", "flagged", "probes", "p50 ms", "p99 ms", "max ms", "timed out", "load win/s",
                 "queue at end", "machine load"], rows))  # fmt: skip
    print(
        f"{args.window_lines}-line windows; probes every {args.probe_interval_s} s (half closed by size, half"
        f" explicitly); poll every {args.poll_ms} ms; before = {args.before or '-'}"
    )
    if args.probes < 100:
        print(f"p99 of {args.probes} probes is close to the max: run more probes for a real tail")
    print(machine_line(info))
    write_result(
        result_name(args),
        {
            "quick": args.quick, "checkpoint": str(checkpoint), "window_lines": args.window_lines,
            "poll_ms": args.poll_ms, "probe_interval_s": args.probe_interval_s, "before": args.before, "runs": runs,
        },
        info,
    )  # fmt: skip


if __name__ == "__main__":
    main()
