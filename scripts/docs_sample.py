"""Write docs/samples/hdfs-sample.log: the quickstart's sample, HDFS block sessions as raw HDFS_v1 lines.

The sessions come from the held-out test split of the HDFS-sessions benchmark (the shipped checkpoint's seed, so
none of them trained it), written as bench/first_run.py writes them: each event as a real HDFS line of that event,
header included, a block id per session, a few sessions open at once so their lines interleave, as a DataNode's
log does. Deterministic for a given --seed.

    .venv/bin/python scripts/docs_sample.py --normal 57 --anomalous 3
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.first_run import held_out, raw_forms  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--normal", type=int, default=57)
    parser.add_argument("--anomalous", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7, help="which sessions, and how their lines interleave")
    parser.add_argument("--concurrent", type=int, default=4, help="sessions open at once")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "samples" / "hdfs-sample.log")
    args = parser.parse_args()

    forms = raw_forms(args.data / "HDFS" / "HDFS_templates.csv")
    sessions = held_out(args.data, 42, args.normal, args.anomalous, args.seed)
    rng = random.Random(args.seed)
    pending = []
    for session in sessions:
        block = f"blk_{rng.randrange(10**18, 10**19)}"
        pending.append([forms[m].replace("{blk}", block) for m in session.messages])
    lines: list[str] = []
    open_now: list[list[str]] = []
    while pending or open_now:
        while pending and len(open_now) < args.concurrent:
            open_now.append(pending.pop(0))
        chosen = rng.choice(open_now)
        lines.append(chosen.pop(0))
        if not chosen:
            open_now.remove(chosen)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    labels = [s.label for s in sessions]
    print(f"wrote {args.output}: {len(lines)} lines, {labels.count(0)} normal and {labels.count(1)} anomalous sessions")


if __name__ == "__main__":
    main()
