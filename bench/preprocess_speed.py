"""µs per line of the preprocessing before (one alternation over the line) and now, side by side in one run.

Lines: the message content of every line of shared/data's BGL_2k, Thunderbird_2k and HDFS_2k. "Before" is the
implementation kept as the reference in tests/model/preprocess_reference.py. "Now, cold" empties the token cache
before each repeat, so every distinct token of the run is a miss once (a fresh process); "now, warm" runs again
with the cache filled by the previous repeat. Repeats interleave the methods, so a neighbour's load hits all
alike; the minimum and the median of the repeats are printed. Every output is compared with the reference.

Worst case: lines crafted against a backtracking scan (CRAFTED: long runs a run pattern fails after, and the
month path), now, cold cache, each beside a real line of the same length (sample lines joined by spaces);
"x real line" is the crafted line's time over the real line's.

    python -m bench.preprocess_speed --repeats 5
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import base_parser, machine, machine_line, result_name, table, write_result

FILES = (("BGL/BGL_2k.log", "bgl"), ("Thunderbird/Thunderbird_2k.log", "thunderbird"), ("HDFS/HDFS_2k.log", "hdfs"))
CRAFTED = {  # the line first; each stalls one run pattern or the month path of the plain scan
    "'a'*8000+'!@1' (9a, 9b, 10)": "a" * 8000 + "!@1",
    "'a.'*4000+'!@' (9a, 9b)": "a." * 4000 + "!@",
    "'a'*8000+'/' + ' 1' (7)": "a" * 8000 + "/ 1",
    "'true.'*1600+'x!1' (10, after each match)": "true." * 1600 + "x!1",
    "'Jun 14 x '+'a'*8000+'!@1' (month path)": "Jun 14 x " + "a" * 8000 + "!@1",
}


def contents(data: Path) -> list[str]:
    from model.log_formats import parse_line

    lines: list[str] = []
    for name, fmt in FILES:
        text = (data / name).read_text(encoding="utf-8", errors="replace")
        lines += [parse_line(line, fmt).content for line in text.splitlines() if line.strip()]
    return lines


def seconds(run: Callable[[str], str], lines: list[str]) -> float:
    started = time.perf_counter()
    for line in lines:
        run(line)
    return time.perf_counter() - started


def cold(run: Callable[[str], str], line: str, repeats: int) -> float:
    """The fastest of repeats, each with an empty token cache (the reference has none), after one untimed run
    that compiles the regexes this line needs."""
    from model import preprocess as now

    run(line)
    best = float("inf")
    for _ in range(repeats):
        now._substitute_token.cache_clear()
        best = min(best, seconds(run, [line]))
    return best


def worst_case(lines: list[str], repeats: int) -> list[dict[str, Any]]:
    """Each crafted line now, and a real line of the same length now, interleaved. The reference is not timed on
    them: its nested quantifiers (``\\w+[\\w.]*``) make it cubic there, hours per line."""
    from model import preprocess as now

    rows: list[dict[str, Any]] = []
    joined = " ".join(lines)
    for name, line in CRAFTED.items():
        real = joined[: len(line)]
        now_s, real_s = cold(now.preprocess, line, repeats), cold(now.preprocess, real, repeats)
        rows.append({"line": name, "chars": len(line), "now_s": now_s, "real_line_now_s": real_s,
                     "x_real_line": now_s / real_s})  # fmt: skip
    return rows


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0], "preprocess_speed")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per method (min and median reported)")
    args = parser.parse_args()
    if args.quick:
        args.repeats = 1
    from model import preprocess as now
    from tests.model.preprocess_reference import preprocess as before

    info = machine()
    print(machine_line(info))
    lines = contents(args.data)
    if args.quick:
        lines = lines[:300]
    chars = sum(map(len, lines)) / len(lines)
    print(f"{len(lines)} lines, {chars:.0f} characters on average, {args.repeats} repeat(s)", flush=True)
    times: dict[str, list[float]] = {"before": [], "now, cold cache": [], "now, warm cache": []}
    for _ in range(args.repeats):
        times["before"].append(seconds(before, lines))
        now._substitute_token.cache_clear()
        times["now, cold cache"].append(seconds(now.preprocess, lines))
        times["now, warm cache"].append(seconds(now.preprocess, lines))
    cache = now._substitute_token.cache_info()
    mismatches = sum(now.preprocess(line) != before(line) for line in lines)

    n = len(lines)
    base = min(times["before"]) / n * 1e6
    rows, methods = [], {}
    for name, runs in times.items():
        best, median = min(runs) / n * 1e6, statistics.median(runs) / n * 1e6
        methods[name] = {"seconds": runs, "us_per_line_min": best, "us_per_line_median": median, "speedup": base / best}
        rows.append([name, best, median, base / best])
    print()
    print(table(["method", "µs/line (min)", "µs/line (median)", "x before"], rows))
    print(f"distinct tokens {cache.currsize}; outputs differing from the reference: {mismatches} of {n}")
    worst = worst_case(lines, args.repeats)
    print()
    print(table(["crafted line", "chars", "now ms", "real line now ms", "x real line"], [
        [r["line"], r["chars"], 1e3 * r["now_s"], 1e3 * r["real_line_now_s"], r["x_real_line"]] for r in worst
    ]))  # fmt: skip
    print(machine_line(info))
    write_result(
        result_name(args),
        {"quick": args.quick, "lines": n, "mean_chars": chars, "methods": methods, "mismatches": mismatches,
         "worst_case": worst},
        info,
    )  # fmt: skip


if __name__ == "__main__":
    main()
