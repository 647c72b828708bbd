"""End-to-end latency: from the close of a window to its verdict being readable, under sustained load, in a storm.

A real ``logllm serve`` (embedded Redis, every feature on with default flags: the checkpoint's ``hdfs`` format and
session windows, records, explanations, patterns and novelty, the verdict stream) gets real HDFS sessions: the
held-out test split of the HDFS-sessions benchmark (the checkpoint's seed, so none built its vocabulary or
threshold), each session's events written as raw HDFS_v1 lines with a block id of its own (bench/first_run.py's
``raw_forms``), POSTed as one text body, then closed (``POST /sequences/{key}/close``, as a block's end is).

Before the first share, a warm-up (not timed): ``--warmup-windows`` normal sessions, their verdicts awaited,
until ``GET /sources`` shows the source past its novelty warm-up (its lines' templates are the checkpoint's, so
its rules apply once it has sent ``coverage_min_lines`` lines); else the rules would only annotate.

Per share: a separate process sends ``--load-windows-per-s`` sessions per second; meanwhile probes, one at a time
every ``--probe-interval-s``, POST a session's lines, then time its close until GET /sequences/{id}/verdict (polled
every ``--poll-ms``) is no longer pending. ``--shares``: the share of windows (load and probes alike, spread
evenly) that are held-out *anomalous* sessions, the rest normal ones; each anomalous session is used once in a
run. Every window's verdict is read back, so the table shows the share actually flagged (and recall and FPR
against the sessions' labels): 50% means half the windows came out anomalous, each needing an explanation.
The storm ends when its last window is closed; then every flagged window's record is polled until its
``explanation_status`` is no longer ``pending``: how long after the storm's end the last one landed, and how many
came out done / partial / failed. If the ready queue grows, the load is not sustainable on this machine.
``--before REV``: that revision's service runs beside this one, each share measured on one side, then the other.

    python -m bench.latency --probes 200 --probe-interval-s 0.2 --load-windows-per-s 1 --shares 0 0.2 0.5 \
        --explain-timeout-s 60
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    ServiceProcess,
    base_parser,
    checkout,
    machine,
    machine_line,
    percentile,
    resolve_checkpoint,
    result_name,
    table,
    write_result,
)
from bench.first_run import held_out, raw_forms

SOURCE = "default"
Session = tuple[int, list[str]]  # (label, raw lines with "{blk}" for the block id)


def is_anomalous(n: int, share: float) -> bool:
    """Window n of a stream is anomalous when it takes the count of anomalous windows up: exactly ``share`` of any
    prefix (to one window), spread evenly, the same for every run."""
    return int((n + 1) * share) > int(n * share)


class Sessions:
    """One stream's sessions: normal ones cycled (they need nothing but a verdict), anomalous ones each used once
    (a repeat would find its explanation cached); cycled only when the pool runs out, which is counted."""

    def __init__(self, normal: list[Session], anomalous: list[Session], share: float) -> None:
        self.normal, self.anomalous, self.share = normal, anomalous, share
        self.reused_anomalous = 0

    def body(self, n: int, block: str) -> tuple[int, str]:
        """(label, text body of the session's raw lines with this block id) of window n."""
        if is_anomalous(n, self.share):
            index = int(n * self.share)
            self.reused_anomalous += index >= len(self.anomalous)
            label, lines = self.anomalous[index % len(self.anomalous)]
        else:
            label, lines = self.normal[n % len(self.normal)]
        return label, "\n".join(line.replace("{blk}", block) for line in lines)


def post_session(client: Any, body: str) -> None:
    answer = client.post("/logs", content=body, headers={"Content-Type": "text/plain"})
    answer.raise_for_status()
    if answer.json().get("rejected"):
        raise RuntimeError(f"lines rejected: {answer.text[:300]}")


def close(client: Any, block: str) -> str:
    """The session's window id; a 404 means it closed already, by size (max_session_lines, 128 as trained)."""
    answer = client.post(f"/sequences/{block}/close")
    if answer.status_code == 404:
        return f"session:{SOURCE}:{block}"  # service/windows/ids.py
    answer.raise_for_status()
    return str(answer.json()["id"])


def background_load(url: str, sessions: Sessions, first_block: int, rate: float, stop: Any, out: Any) -> None:
    """Own process: one session per 1/rate seconds, its lines in one POST, then its close; reports what it sent
    (window id and label of each) and when (time.monotonic, one clock for all processes) the last close went."""
    import httpx

    windows: list[tuple[str, int]] = []
    lines = 0
    started = time.monotonic()
    last_close = started
    with httpx.Client(base_url=url, timeout=60) as client:
        while not stop.is_set():
            due = started + len(windows) / rate
            if (wait := due - time.monotonic()) > 0:
                stop.wait(wait)
                continue
            block = f"blk_{first_block + len(windows)}"
            label, body = sessions.body(len(windows), block)
            post_session(client, body)
            windows.append((close(client, block), label))
            last_close = time.monotonic()
            lines += body.count("\n") + 1
    seconds = time.monotonic() - started
    out.put(
        {
            "windows": windows,
            "last_close": last_close,
            "windows_sent": len(windows),
            "seconds": seconds,
            "windows_per_second": len(windows) / seconds,
            "lines_per_second": lines / seconds,
            "reused_anomalous": sessions.reused_anomalous,
        }
    )


def probe(client: Any, sessions: Sessions, n: int, block: str, poll_s: float, timeout_s: float) -> dict[str, Any]:
    """One timed window: its lines posted (not timed), then its close, then its verdict polled."""
    label, body = sessions.body(n, block)
    post_session(client, body)
    started = time.perf_counter()
    window_id = close(client, block)
    closed = time.monotonic()
    while time.perf_counter() - started < timeout_s:
        verdict = client.get(f"/sequences/{window_id}/verdict").json()
        if verdict.get("status") not in (None, "pending"):
            return {"id": window_id, "label": label, "status": verdict["status"], "took": time.perf_counter() - started,
                    "closed": closed, "lines": body.count("\n") + 1, "reason": verdict.get("reason")}  # fmt: skip
        time.sleep(poll_s)
    return {
        "id": window_id,
        "label": label,
        "status": None,
        "took": None,
        "closed": closed,
        "lines": body.count("\n") + 1,
    }


def metric(text: str, name: str) -> float | None:
    found = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


Awaited = tuple[str, str, tuple[str | None, ...]]  # GET path (with {} for the id), field, values that mean "wait"
VERDICT: Awaited = ("/sequences/{}/verdict", "status", (None, "pending"))
EXPLANATION: Awaited = ("/sequences/{}", "explanation_status", ("pending",))  # null: none coming (explain_top_k 0)


def poll_until(client: Any, ids: list[str], awaited: Awaited, timeout_s: float) -> dict[str, tuple[float, str]]:
    """GET each id until the awaited field is no longer one of its waiting values; id -> (time.monotonic when
    seen, the value). Ids still waiting at the timeout are left out."""
    path, field, waiting = awaited
    pending, found = list(ids), {}
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        for window_id in list(pending):
            value = client.get(path.format(window_id)).json().get(field)
            if value not in waiting:
                found[window_id] = (time.monotonic(), str(value))
                pending.remove(window_id)
        if pending:
            time.sleep(0.1)
    return found


def source_warm(client: Any) -> bool | None:
    """Whether GET /sources shows the source past its novelty warm-up (None: the service has no such route)."""
    answer = client.get("/sources")
    if answer.status_code == 404:
        return None
    items = {i["source"]: i for i in answer.json()["items"]}
    return SOURCE in items and not items[SOURCE]["warming_up"]


def warm_up(service: ServiceProcess, sessions: list[Session], first_block: int, timeout_s: float) -> dict[str, Any]:
    """Normal sessions until the source is past its novelty warm-up (at least the given ones); not timed."""
    import httpx

    started = time.monotonic()
    sent: list[str] = []
    warm: bool | None = False
    with httpx.Client(base_url=service.url, timeout=60) as client:
        while time.monotonic() - started < timeout_s:
            batch: list[str] = []
            for _, lines in sessions:
                block = f"blk_{first_block + len(sent) + len(batch)}"
                post_session(client, "\n".join(line.replace("{blk}", block) for line in lines))
                batch.append(close(client, block))
            sent += batch
            poll_until(client, batch, VERDICT, timeout_s)
            warm = source_warm(client)
            if warm is not False:
                break
    if warm is False:
        raise RuntimeError(f"source {SOURCE!r} still warming up after {len(sent)} sessions: {service.log_tail()}")
    return {"windows": len(sent), "seconds": time.monotonic() - started, "source_past_warm_up": warm}


def measure(service: ServiceProcess, args: Any, load: Sessions, probes: Sessions, blocks: int) -> dict[str, Any]:
    """One share against one service: background load in its own process, probes one at a time from here, then
    every verdict read back and every flagged window's explanation waited for."""
    import httpx

    ctx = multiprocessing.get_context("spawn")
    stop, out = ctx.Event(), ctx.Queue()
    loader = ctx.Process(target=background_load, args=(service.url, load, blocks, args.load_windows_per_s, stop, out))
    probed: list[dict[str, Any]] = []
    with httpx.Client(base_url=service.url, timeout=60) as client:
        before = client.get("/metrics").text
        started = time.monotonic()
        try:
            loader.start()
            time.sleep(min(5.0, 2 * args.probe_interval_s))  # let the load settle in
            for n in range(args.probes):
                found = probe(client, probes, n, f"blk_{blocks + 500_000 + n}", args.poll_ms / 1000,
                              args.probe_timeout_s)  # fmt: skip
                probed.append(found)
                if args.verbose:
                    took = found["took"]
                    print(f"  probe {n}: {'timeout' if took is None else f'{took * 1000:.0f} ms'} {found['status']}")
                time.sleep(args.probe_interval_s)
            stop.set()
            sent = out.get(timeout=120)
        finally:
            stop.set()
            loader.join(timeout=30)
        storm_end = max(sent["last_close"], *(p["closed"] for p in probed))
        queue_at_end = metric(client.get("/metrics").text, "logllm_ready_queue_depth")
        labels = {p["id"]: p["label"] for p in probed} | dict(sent.pop("windows"))
        status = {p["id"]: p["status"] for p in probed if p["status"] is not None}
        late = [i for i in labels if i not in status]
        status |= {i: s for i, (_, s) in poll_until(client, late, VERDICT, args.drain_s).items()}
        verdicts_done = time.monotonic()
        flagged = [i for i, s in status.items() if s == "anomalous"]
        explained = poll_until(client, flagged, EXPLANATION, args.explain_timeout_s)
        after = client.get("/metrics").text

    def delta(name: str) -> float:
        return (metric(after, name) or 0.0) - (metric(before, name) or 0.0)

    def mean(name: str) -> float | None:
        count = delta(f"{name}_count")
        return delta(f"{name}_sum") / count if count else None

    values = [p["took"] for p in probed if p["took"] is not None]
    anomalous = [i for i, label in labels.items() if label == 1]
    normal = [i for i, label in labels.items() if label == 0]
    outcomes = [s for _, s in explained.values()]  # done, partial, failed; "None": none (explain_top_k 0)
    seconds = time.monotonic() - started
    return {
        "share_injected": len(anomalous) / len(labels),
        "windows": len(labels),
        "share_flagged": len(flagged) / len(status) if status else None,
        "recall": sum(status.get(i) == "anomalous" for i in anomalous) / len(anomalous) if anomalous else None,
        "fpr": sum(status.get(i) == "anomalous" for i in normal) / len(normal) if normal else None,
        "probe_reasons": dict(
            Counter(
                f"{'anomalous' if p['label'] else 'normal'}:{p.get('reason') or '-'}"
                for p in probed
                if p["status"] == "anomalous"
            )
        ),  # fmt: skip
        "verdicts_missing": len(labels) - len(status),
        "timed_out": sum(p["took"] is None for p in probed),
        "load": sent,
        "windows_per_second_all": len(labels) / (storm_end - started),
        "lines_per_probe_mean": sum(p.get("lines", 0) for p in probed) / len(probed),
        "ready_queue_at_end": queue_at_end,
        "verdicts_all_read_after_storm_end_s": max(0.0, verdicts_done - storm_end),
        "explanations": {
            "flagged": len(flagged),
            "done": outcomes.count("done"),
            "partial": outcomes.count("partial"),
            "failed": outcomes.count("failed"),
            "still_pending": len(flagged) - len(explained),
            "last_after_storm_end_s": max((t for t, _ in explained.values()), default=storm_end) - storm_end,
            "by_how": {
                how: delta(f'logllm_explanations_total{{how="{how}"}}')
                for how in ("occlusion", "cached", "novelty", "failed")
            },  # fmt: skip
        },
        "dropped_already_scored": delta('logllm_windows_dropped_total{reason="already_scored"}'),
        "service_end_to_end_mean_s": mean("logllm_end_to_end_seconds"),
        # where a verdict's time goes: waiting to be picked (behind a batch or an explanation pass), the model
        "service_queue_wait_mean_s": mean("logllm_queue_wait_seconds"),
        "service_inference_mean_s": mean("logllm_inference_seconds"),
        "service_batch_windows_mean": mean("logllm_batch_windows"),
        "occlusion_model_s": delta("logllm_explanation_seconds_sum"),
        "load_average_1m": os.getloadavg()[0],
        "seconds": seconds,
        "latency": {
            "n": len(values),
            "p50_s": percentile(values, 50),
            "p99_s": percentile(values, 99),
            "max_s": max(values, default=None),
            "samples_s": values,
        },  # fmt: skip
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


def pools(data: Path, checkpoint: Path, seed: int) -> tuple[list[Session], list[Session]]:
    """Held-out normal and anomalous sessions as raw-line templates, each class shuffled with ``seed``."""
    trained_seed = int(json.loads((checkpoint / "manifest.json").read_text())["training"].get("seed", 42))
    forms = raw_forms(data / "HDFS" / "HDFS_templates.csv")
    sessions = held_out(data, trained_seed, None, None, seed)
    as_lines = [(s.label, [forms[m] for m in s.messages]) for s in sessions]
    return [s for s in as_lines if s[0] == 0], [s for s in as_lines if s[0] == 1]


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0], "latency")
    parser.add_argument("--checkpoint", help="checkpoint the service loads (default checkpoints/default)")
    parser.add_argument("--probes", type=int, default=60, help="windows timed per share, one at a time")
    parser.add_argument("--probe-interval-s", type=float, default=0.2, help="pause between probes")
    parser.add_argument("--load-windows-per-s", type=float, default=1.0, help="background windows per second")
    parser.add_argument("--warmup-windows", type=int, default=24, help="normal sessions sent (per round) until the"
                        " source is past its novelty warm-up")  # fmt: skip
    parser.add_argument("--poll-ms", type=float, default=5.0)
    parser.add_argument("--probe-timeout-s", type=float, default=300.0)
    parser.add_argument("--shares", type=float, nargs="+", default=[0.0], help="shares of anomalous sessions")
    parser.add_argument("--seed", type=int, default=7, help="seed of the sessions' order")
    parser.add_argument("--before", default="", help="git revision run beside this checkout as 'before'")
    parser.add_argument("--before-probes", type=int, help="probes on the before side (default --probes)")
    parser.add_argument("--verbose", action="store_true", help="print every probe")
    parser.add_argument("--drain-s", type=float, default=120.0, help="longest wait for verdicts after a storm")
    parser.add_argument("--explain-timeout-s", type=float, default=300.0,
                        help="longest wait for the explanations after a storm")  # fmt: skip
    args = parser.parse_args()
    if args.quick:
        args.probes, args.load_windows_per_s, args.probe_interval_s, args.warmup_windows = 4, 0.5, 0.5, 12
    info = machine()
    print(machine_line(info))
    print(f"seed {args.seed}")
    checkpoint = resolve_checkpoint(args.checkpoint)
    normal, anomalous = pools(args.data, checkpoint, args.seed)
    warm, normal = normal[: args.warmup_windows], normal[args.warmup_windows :]
    slices = max(1, len([s for s in args.shares if s > 0]))
    per_share = len(anomalous) // slices  # each share's own anomalous sessions: none repeats in a run
    repos: dict[str, Path] = ({"before": checkout(args.before)} if args.before else {}) | {"after": REPO}
    # this checkout: default flags (the checkpoint says hdfs, sessions by block id); older code may not read them
    older = {"log_format": "hdfs", "window_mode": "session"}
    services = {side: ServiceProcess(checkpoint, {"redis_url": ""} | (older if side == "before" else {}), repo=repo)
                for side, repo in repos.items()}  # fmt: skip
    runs: dict[str, dict[str, Any]] = {side: {} for side in services}
    rows = []
    try:
        for side, service in services.items():
            print(f"{side}: logllm serve ready on {service.url} after {service.start():.1f} s", flush=True)
            print(f"  warm-up: {warm_up(service, warm, 6_000_000, 300.0)}", flush=True)
        slice_no = 0
        for number, share in enumerate(args.shares):
            mine = anomalous[slice_no * per_share : (slice_no + 1) * per_share] if share > 0 else anomalous[:1]
            slice_no += share > 0
            rng = random.Random(args.seed + number)
            shuffled = rng.sample(normal, len(normal))
            load = Sessions(shuffled[0::2], mine[0::2], share)
            probes = Sessions(shuffled[1::2], mine[1::2], share)
            for side, service in reversed(services.items()):  # after first: a before backlog is drained after it
                side_args = argparse.Namespace(**vars(args))
                if side == "before" and args.before_probes:
                    side_args.probes = args.before_probes
                blocks = 10_000_000 * (number + 1)
                run = runs[side][f"{share:g}"] = measure(service, side_args, load, probes, blocks)
                run["backlog_left_after_drain"] = drain(service.url, args.drain_s)
                lat, sent, exp = run["latency"], run["load"], run["explanations"]
                rows.append([
                    f"{run['share_injected']:.0%}", side, f"{run['share_flagged']:.0%}", run["recall"], run["fpr"],
                    lat["n"], lat["p50_s"] and lat["p50_s"] * 1000, lat["p99_s"] and lat["p99_s"] * 1000,
                    lat["max_s"] and lat["max_s"] * 1000, run["timed_out"], run["windows_per_second_all"],
                    run["ready_queue_at_end"], f"{exp['done']}/{exp['partial']}/{exp['failed']}/{exp['flagged']}",
                    exp["last_after_storm_end_s"], run["load_average_1m"],
                ])  # fmt: skip
                print("  " + " | ".join(str(c) for c in rows[-1]), flush=True)
                print("  service means: " + ", ".join(f"{k.removeprefix('service_')} {v:.3f}" for k, v in run.items()
                      if k.startswith("service_") and v is not None) + f"; occlusion model time "
                      f"{run['occlusion_model_s']:.1f} s; explanations {exp['by_how']}; dropped as already scored "
                      f"(a batch outlived reclaim_idle_ms) {run['dropped_already_scored']:g}", flush=True)  # fmt: skip
                if sent["reused_anomalous"] or probes.reused_anomalous:
                    print(f"  note: {sent['reused_anomalous'] + probes.reused_anomalous} anomalous sessions reused")
    finally:
        for service in services.values():
            service.stop()
    print()
    print(table(["anomalous", "side", "flagged", "recall", "FPR", "probes", "p50 ms", "p99 ms", "max ms", "timed out",
                 "windows/s", "queue at end", "explained done/partial/failed/of", "last explained +s",
                 "machine load"], rows))  # fmt: skip
    print(
        f"held-out HDFS sessions (raw HDFS_v1 lines), closed explicitly; background {args.load_windows_per_s}/s plus"
        f" probes every {args.probe_interval_s} s; poll every {args.poll_ms} ms; windows/s: load and probes together;"
        f" 'last explained +s': seconds from the storm's last close to its last flagged window's explanation;"
        f" before = {args.before or '-'}"
    )
    if args.probes < 100:
        print(f"p99 of {args.probes} probes is close to the max: run more probes for a real tail")
    print(machine_line(info))
    write_result(
        result_name(args),
        {"quick": args.quick, "checkpoint": str(checkpoint), "seed": args.seed, "poll_ms": args.poll_ms,
         "probe_interval_s": args.probe_interval_s, "load_windows_per_s": args.load_windows_per_s,
         "before": args.before, "runs": runs},
        info,
    )  # fmt: skip


if __name__ == "__main__":
    main()
