"""Event-loop stalls under big bodies: ``GET /health/live`` latency while 10 MiB bodies stream into POST /logs,
the code before and after, side by side.

Each side is a ``logllm serve --role api`` on its own Redis (bench/ingestion.py's ``start_sides``: "before" runs
``--before``, exported with git archive; "after" this checkout). One body at a time, each just under
``max_body_bytes`` (10 MiB, the default) of HDFS lines spread over a pool of sessions, as JSON, text and
gzip-compressed text (10 MiB once inflated); meanwhile a second connection asks ``GET /health/live`` every
10 ms. That route does nothing, so its latency is how long the event loop was busy elsewhere: parsing,
keying or storing a body on the loop shows up here as a stall of every other request. Rounds alternate the
sides, so both see the same machine load.

    python -m bench.stalls --bodies 4
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
from pathlib import Path
from typing import Any

from bench.common import (
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
from bench.ingestion import drive, encode_body, merge_rounds, start_sides

FORMATS = ("json", "text", "text_gzip")
MAX_BODY_BYTES = 10 * 2**20


def big_body(data: Path, mode: str, sessions: int, first: int) -> tuple[tuple[str, dict[str, str], bytes], int]:
    """One body of as many lines as fit in MAX_BODY_BYTES (before compression), and its line count."""
    templates = hdfs_lines(data)
    lines = [
        with_session(templates[k % len(templates)], f"blk_{9000000 + k % sessions}")
        for k in range(first, first + MAX_BODY_BYTES // 90)
    ]
    plain = "json" if mode == "json" else "text"
    while len(encode_body(plain, lines)[2]) > MAX_BODY_BYTES:
        lines = lines[: int(len(lines) * 0.98)]
    return encode_body(mode, lines), len(lines)


def stall_client(url: str, data: Path, mode: str, bodies: int, sessions: int) -> dict[str, Any]:
    """Runs in its own process: sends ``bodies`` big bodies one after the other while probing."""
    result: dict[str, Any] = {"accepted_lines": 0, "failed_requests": 0, "seconds": 0.0, "probe_ms": []}
    for i in range(bodies):
        body, n = big_body(data, mode, sessions, first=i * 7919)
        r = asyncio.run(drive(url, [body], n, 1))
        for key in ("accepted_lines", "failed_requests", "seconds"):
            result[key] += r[key]
        result["probe_ms"] += r["probe_ms"]
        result["body_bytes_mean"] = len(body[2])
    return result


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0], "stalls")
    parser.add_argument("--bodies", type=int, default=4, help="10 MiB bodies per format and side")
    parser.add_argument("--rounds", type=int, default=2, help="the bodies are sent in this many alternating rounds")
    parser.add_argument("--sessions", type=int, default=5000, help="distinct session ids the lines spread over")
    parser.add_argument("--before", default="76f1bdb", help="git revision run as 'before' ('' for none)")
    parser.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated: {', '.join(FORMATS)}")
    args = parser.parse_args()
    if args.quick:
        args.bodies, args.rounds = 1, 1
    info = machine()
    print(machine_line(info))
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    per_round = max(1, args.bodies // args.rounds)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    with contextlib.ExitStack() as stack:
        sides = start_sides(args.before or None, resolve_checkpoint(None), {}, stack)
        pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(1))
        for round_no in range(args.rounds):
            for mode in formats:
                for side, (service, _) in sides.items():
                    r = pool.apply(stall_client, (service.url, args.data, mode, per_round, args.sessions))
                    runs.setdefault(side, {}).setdefault(mode, []).append(r)
                    probes = sorted(r["probe_ms"])
                    print(
                        f"  round {round_no + 1}/{args.rounds} {side} {mode}: {len(probes)} probes, max"
                        f" {1000 * probes[-1]:.0f} ms, {r['accepted_lines'] / r['seconds']:.0f} lines/s,"
                        f" {r['failed_requests']} requests failed",
                        flush=True,
                    )
    results = {side: {mode: merge_rounds(r) for mode, r in by_mode.items()} for side, by_mode in runs.items()}
    rows = [
        [
            f"{side} {mode}",
            r["health_probes"],
            r["health_probe_ms_p50"],
            r["health_probe_ms_p99"],
            r["health_probe_ms_max"],
            r["lines_per_second"],
            r["failed_requests"],
        ]
        for mode in formats
        for side, by_mode in results.items()
        for r in [by_mode[mode]]
    ]
    print()
    print(table(["body (10 MiB)", "probes", "live p50 ms", "live p99 ms", "live max ms", "lines/s", "failed"], rows))
    print(f"{args.bodies} bodies per format and side, one at a time, in {args.rounds} alternating rounds")
    print(machine_line(info))
    summary = "; ".join(
        f"{mode} p99 " + ", ".join(f"{side} {results[side][mode]['health_probe_ms_p99']:.0f} ms" for side in results)
        for mode in formats
    )
    print(f"SUMMARY stalls (GET /health/live while 10 MiB bodies stream in): {summary}")
    write_result(
        result_name(args),
        {
            "quick": args.quick,
            "before": args.before,
            "bodies": args.bodies,
            "rounds": args.rounds,
            "sessions": args.sessions,
            "results": results,
            "summary": summary,
        },
        info,
    )


if __name__ == "__main__":
    main()
