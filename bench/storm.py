"""Verdicts per second through ``logllm serve`` in an alert storm, the code before and after side by side.

Both services run at once (embedded Redis each, the shipped checkpoint, every feature on: records, explanations,
patterns and novelty, the verdict stream); each storm goes to one of them while the other idles. A storm is
``--windows`` HDFS test sessions (DeepLog key sequences written out as lines: each template with its ``<*>``
filled by the session's block id, which preprocessing turns back into the template), a share of them with one
line of event E20 ("Unexpected error trying to delete block ...", seen only in anomalous sessions) in the
middle, as bench/explain_speed.py builds them. All lines are posted, then every session is closed at once
(POST /sequences/{id}/close); timed from the first close to the last verdict readable
(GET /sequences/{id}/verdict, polled). After the last verdict, the anomalous records are polled until their
explanation has landed (``explanation_status`` no longer ``pending``; before, it came with the verdict).
A warm-up storm (not timed) fills the model's embedding cache first, as in a running service.

    python -m bench.storm --windows 48 --shares 0 0.2 0.5
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from statistics import median
from typing import Any

from bench.common import (
    REPO,
    ServiceProcess,
    base_parser,
    checkout,
    machine,
    machine_line,
    resolve_checkpoint,
    result_name,
    table,
    write_result,
)
from bench.latency import metric

POLL_S = 0.05


def session_lines(messages: list[str], session: str) -> list[str]:
    return [m.replace("<*>", session) for m in messages]


def poll(client: Any, ids: list[str], done: Any, timeout_s: float) -> dict[str, tuple[float, dict[str, Any]]]:
    """GET each id until ``done(reply)``; id -> (perf_counter when it was, the reply)."""
    pending, out = list(ids), {}
    deadline = time.perf_counter() + timeout_s
    while pending and time.perf_counter() < deadline:
        for window_id in list(pending):
            reply = done(client, window_id)
            if reply is not None:
                out[window_id] = (time.perf_counter(), reply)
                pending.remove(window_id)
        time.sleep(POLL_S)
    if pending:
        raise RuntimeError(f"{len(pending)} windows not done within {timeout_s:.0f} s, e.g. {pending[0]}")
    return out


def verdict_of(client: Any, window_id: str) -> dict[str, Any] | None:
    reply: dict[str, Any] = client.get(f"/sequences/{window_id}/verdict").json()
    return reply if reply.get("status") not in (None, "pending") else None


def explained(client: Any, window_id: str) -> dict[str, Any] | None:
    reply: dict[str, Any] = client.get(f"/sequences/{window_id}").json()
    return reply if reply.get("explanation_status") != "pending" else None


def explanation_counts(client: Any) -> dict[str, float]:
    text = client.get("/metrics").text
    return {how: metric(text, f'logllm_explanations_total{{how="{how}"}}') or 0.0 for how in
            ("occlusion", "cached", "novelty", "failed")}  # fmt: skip


def storm(client: Any, windows: list[list[str]], first_block: int, timeout_s: float) -> dict[str, Any]:
    sessions = [f"blk_{first_block + i}" for i in range(len(windows))]
    lines = [{"message": line} for w, s in zip(windows, sessions, strict=True) for line in session_lines(w, s)]
    for start in range(0, len(lines), 1000):
        client.post("/logs", json={"lines": lines[start : start + 1000]}).raise_for_status()
    counts_before = explanation_counts(client)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    ids = []
    for session in sessions:
        reply = client.post(f"/sequences/{session}/close")
        reply.raise_for_status()
        ids.append(reply.json()["id"])
    verdicts = poll(client, ids, verdict_of, timeout_s)
    last_verdict = max(t for t, _ in verdicts.values())
    anomalous = [i for i, (_, v) in verdicts.items() if v["status"] == "anomalous"]
    explanations = poll(client, anomalous, explained, timeout_s)
    last_explanation = max((t for t, _ in explanations.values()), default=last_verdict)
    counts_after = explanation_counts(client)
    seconds = last_verdict - started
    return {
        "windows": len(ids),
        "anomalous": len(anomalous),
        "share_flagged": len(anomalous) / len(ids),
        "reasons": sorted({str(v.get("reason")) for _, v in verdicts.values() if v["status"] == "anomalous"}),
        "seconds_to_last_verdict": seconds,
        "verdicts_per_second": len(ids) / seconds,
        "explanations_done_after_last_verdict_s": max(0.0, last_explanation - last_verdict),
        "explanation_status": sorted({str(r.get("explanation_status")) for _, r in explanations.values()}),
        "explanations_by_how": {k: counts_after[k] - counts_before[k] for k in counts_after},
        "load_average_1m": [load_before, os.getloadavg()[0]],
    }


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0], "storm")
    parser.add_argument("--checkpoint", help="checkpoint the services load (default: checkpoints/default)")
    parser.add_argument("--windows", type=int, default=48, help="sessions per storm")
    parser.add_argument("--shares", type=float, nargs="+", default=[0.0, 0.2, 0.5], help="shares made anomalous")
    parser.add_argument("--before", default="668764b", help="git revision run as 'before' ('' for none)")
    parser.add_argument("--batch-size", type=int, default=16, help="max_batch_windows of both services")
    parser.add_argument("--rounds", type=int, default=1, help="rounds over all shares (medians are reported)")
    parser.add_argument("--timeout-s", type=float, default=900.0)
    parser.add_argument("--novelty", default="flag", help="both services' novelty rule ('off': every anomaly is the"
                        " model's, so every explanation is an occlusion; result file storm-novelty-off)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.novelty != "flag":
        parser.set_defaults(default_name=f"storm-novelty-{args.novelty}")
        args.default_name = f"storm-novelty-{args.novelty}"
    if args.quick:
        args.windows, args.shares = 8, [0.0, 0.5]
    import httpx

    from training.data_hdfs import hdfs_event_messages, load_hdfs_keyseq_benchmark

    info = machine()
    print(machine_line(info))
    print(f"seed {args.seed}")
    checkpoint = resolve_checkpoint(args.checkpoint)
    events = hdfs_event_messages(args.data / "HDFS" / "HDFS_templates.csv")
    _, test = load_hdfs_keyseq_benchmark(args.data / "HDFS_deeplog_keyseq", seed=args.seed)
    normal = [list(s.messages) for s in test if s.label == 0]
    rng = random.Random(args.seed)
    settings = {"log_format": "raw", "window_mode": "session", "redis_url": "", "idle_timeout_s": 3600,
                "max_session_lines": 10_000, "max_batch_windows": args.batch_size, "novelty": args.novelty}  # fmt: skip
    repos: dict[str, Path] = ({"before": checkout(args.before)} if args.before else {}) | {"after": REPO}
    services = {side: ServiceProcess(checkpoint, settings, repo=repo) for side, repo in repos.items()}
    results: dict[str, dict[str, list[dict[str, Any]]]] = {s: {f"{x:g}": [] for x in args.shares} for s in services}
    block = 5_000_000
    try:
        for side, service in services.items():
            print(f"{side}: ready after {service.start():.1f} s", flush=True)
        clients = {side: httpx.Client(base_url=s.url, timeout=60) for side, s in services.items()}
        warm = rng.sample(normal, args.windows)
        for client in clients.values():  # embedding cache warm, nothing anomalous
            storm(client, warm, block, args.timeout_s)
            block += args.windows
        for share in [x for _ in range(args.rounds) for x in args.shares]:
            picked = rng.sample(normal, args.windows)
            chosen = set(rng.sample(range(args.windows), round(share * args.windows)))
            windows = [[*w[: len(w) // 2], events[20], *w[len(w) // 2 :]] if i in chosen else w
                       for i, w in enumerate(picked)]  # fmt: skip
            for side, client in clients.items():  # the same windows for both sides
                found = storm(client, windows, block, args.timeout_s)
                block += args.windows
                results[side][f"{share:g}"].append(found)
                print(f"  {side} {share:.0%}: {found['verdicts_per_second']:.2f} verdicts/s, {found['anomalous']} "
                      f"anomalous ({found['share_flagged']:.0%} flagged), explanations done "
                      f"{found['explanations_done_after_last_verdict_s']:.1f} s after the last verdict, "
                      f"load {found['load_average_1m'][0]:.1f}", flush=True)  # fmt: skip
    finally:
        for service in services.values():
            service.stop()
    rows = []
    base = f"{args.shares[0]:g}"
    summary: dict[str, dict[str, dict[str, Any]]] = {side: {} for side in results}
    for share in args.shares:
        key = f"{share:g}"
        for side, runs in results.items():
            rate = median(r["verdicts_per_second"] for r in runs[key])
            r = summary[side][key] = {
                "verdicts_per_second_median": rate,
                "verdicts_per_second_runs": [r["verdicts_per_second"] for r in runs[key]],
                "x_rate_at_first_share": rate / median(r["verdicts_per_second"] for r in runs[base]),
                "explanations_done_after_last_verdict_s_max": max(
                    r["explanations_done_after_last_verdict_s"] for r in runs[key]
                ),
                "anomalous": [r["anomalous"] for r in runs[key]],
                "share_flagged": [r["anomalous"] / r["windows"] for r in runs[key]],
            }
            if side == "after" and "before" in results:
                r["x_before"] = rate / median(x["verdicts_per_second"] for x in results["before"][key])
            how: dict[str, float] = {}
            for run in runs[key]:
                for k, v in run["explanations_by_how"].items():
                    how[k] = how.get(k, 0) + v
            rows.append([
                f"{share:.0%}", side, "/".join(f"{x:.0%}" for x in r["share_flagged"]), rate,
                r["x_rate_at_first_share"], r.get("x_before") or "-", r["explanations_done_after_last_verdict_s_max"],
                " ".join(f"{k}={v:g}" for k, v in how.items() if v) or "-",
            ])  # fmt: skip
    print()
    print(table(["injected", "side", "flagged", "median verdicts/s", f"x at {float(base):.0%}", "x before",
                 "explained +s (max)", "explanations"], rows))  # fmt: skip
    print(f"{args.windows} windows per storm, {args.rounds} round(s), batch {args.batch_size}; novelty "
          f"{args.novelty}; before = {args.before or '-'}")  # fmt: skip
    print(machine_line(info))
    write_result(
        result_name(args),
        {"quick": args.quick, "checkpoint": str(checkpoint), "seed": args.seed, "windows": args.windows,
         "novelty": args.novelty, "rounds": args.rounds, "summary": summary,
         "batch_size": args.batch_size, "before": args.before, "results": results},
        info,
    )  # fmt: skip


if __name__ == "__main__":
    main()
