"""Scoring throughput with explanations, as the service's worker does it, at 0%, 5% and 20% anomalous windows.

Windows are normal HDFS test sessions (DeepLog key sequences turned into template text); a chosen share of
them gets one message of event E20 ("Unexpected error trying to delete block ...", which occurs only in
anomalous sessions) in the middle. Each round scores all windows in batches of --batch-size, then explains
every window the model flags (model/explain.py: one batched forward pass per window), as the record step does.
Reported: windows/s with and without the explanation step, the measured anomalous share, seconds per
explanation. The embedding cache is warmed by one pass first, as in a running service.

    python -m bench.explain_speed --windows 96 --batch-size 16 --shares 0 0.05 0.2
"""

from __future__ import annotations

import random
import time

from bench.common import (
    base_parser,
    is_untrained,
    machine,
    machine_line,
    resolve_checkpoint,
    result_name,
    table,
    write_result,
)


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0], "explain_speed")
    parser.add_argument("--checkpoint", help="checkpoint (default: checkpoints/default)")
    parser.add_argument("--windows", type=int, default=96, help="windows per round")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--shares", type=float, nargs="+", default=[0.0, 0.05, 0.2], help="shares made anomalous")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.quick:
        args.windows = 20
    from model.checkpoint import load_checkpoint
    from model.explain import explain, one_pass
    from training.data_hdfs import hdfs_event_messages, load_hdfs_keyseq_benchmark

    info = machine(with_torch=True)
    print(machine_line(info))
    print(f"seed {args.seed}")
    checkpoint = resolve_checkpoint(args.checkpoint)
    model, manifest = load_checkpoint(checkpoint)
    events = hdfs_event_messages(args.data / "HDFS" / "HDFS_templates.csv")
    _, test = load_hdfs_keyseq_benchmark(args.data / "HDFS_deeplog_keyseq", seed=args.seed)
    normal = [s.messages for s in test if s.label == 0][: args.windows]
    model.score(normal, batch_size=args.batch_size)  # warm the embedding cache
    rng = random.Random(args.seed)
    rows, results = [], []
    for share in args.shares:
        chosen = set(rng.sample(range(len(normal)), round(share * len(normal))))
        windows = [
            [*w[: len(w) // 2], events[20], *w[len(w) // 2 :]] if i in chosen else list(w) for i, w in enumerate(normal)
        ]
        started = time.perf_counter()
        scores = model.score(windows, batch_size=args.batch_size)
        scored_s = time.perf_counter() - started
        flagged = [i for i, s in enumerate(scores) if s >= model.threshold]
        started = time.perf_counter()
        for i in flagged:
            explain(one_pass(model), windows[i], args.top_k, base_score=scores[i])
        explain_s = time.perf_counter() - started
        total = scored_s + explain_s
        result = {
            "share_injected": share,
            "share_flagged": len(flagged) / len(windows),
            "windows": len(windows),
            "score_only_windows_per_s": len(windows) / scored_s,
            "with_explanations_windows_per_s": len(windows) / total,
            "seconds_per_explanation": explain_s / len(flagged) if flagged else None,
        }
        results.append(result)
        rows.append([
            f"{share:.0%}", f"{result['share_flagged']:.1%}", result["score_only_windows_per_s"],
            result["with_explanations_windows_per_s"], result["seconds_per_explanation"] or "-",
        ])  # fmt: skip
    print()
    print(table(["injected", "flagged", "score only win/s", "with explanations win/s", "s / explanation"], rows))
    note = " (UNTRAINED: scores meaningless)" if is_untrained(checkpoint) else ""
    print(f"model {manifest.version}{note}, threshold {model.threshold:.4f}, batch {args.batch_size}")
    print(machine_line(info))
    write_result(
        result_name(args),
        {"quick": args.quick, "checkpoint": str(checkpoint), "seed": args.seed, "batch_size": args.batch_size,
         "top_k": args.top_k, "rounds": results},
        info,
    )  # fmt: skip


if __name__ == "__main__":
    main()
