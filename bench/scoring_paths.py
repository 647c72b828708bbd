"""Sequences/s of the scoring path as it was and as it is now, on the same HDFS test sessions, in one run.

"Before": the checkpoint loaded with its LoRA adapters unmerged (``--merge-lora false``) and every sequence scored,
as ``LogLLM.score`` did before equal sequences were scored once. "Now": ``load_checkpoint`` as ``logllm score``,
``logllm eval`` and the service call it (adapters merged) and ``LogLLM.score`` (each distinct sequence once).
"Now, int8": the same with ``--quantize int8``. Also "merged, every sequence", which separates the two gains. All
paths use the same batch size, length-sorted batches and an emptied message-embedding cache. Agreement: labels at the
checkpoint's threshold against "before", and the largest score difference.

    python -m bench.scoring_paths --hdfs 200 --batch-size 16
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from bench.common import base_parser, machine, machine_line, resolve_checkpoint, result_name, table, write_result


def score_every_sequence(model: Any, sequences: Sequence[Sequence[str]], batch_size: int) -> list[float]:
    """The loop ``LogLLM.score`` ran before: every sequence, length-sorted batches, input order kept."""
    import torch

    order = sorted(range(len(sequences)), key=lambda i: min(len(sequences[i]), model.max_messages))
    scores = [0.0] * len(sequences)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            for i, value in zip(chunk, model._score_batch([sequences[i] for i in chunk]).tolist(), strict=True):
                scores[i] = float(value)
    return scores


def timed(model: Any, run: Callable[[], list[float]]) -> tuple[float, list[float]]:
    model.cache.clear()
    started = time.perf_counter()
    scores = run()
    return time.perf_counter() - started, scores


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0], "scoring_paths")
    parser.add_argument("--checkpoint", help="checkpoint directory (default: checkpoints/default, else untrained)")
    parser.add_argument("--hdfs", type=int, default=200, help="HDFS test sessions (stratified sample)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=42, help="HDFS split and sample seed")
    parser.add_argument("--no-int8", action="store_true", help="skip the int8 path")
    args = parser.parse_args()
    if args.quick:
        args.hdfs, args.batch_size = 12, 4
    from model.checkpoint import load_checkpoint
    from model.settings import ModelSettings
    from training.data import load_hdfs_keyseq_benchmark, stratified_split

    info = machine(with_torch=True)
    print(machine_line(info))
    checkpoint = resolve_checkpoint(args.checkpoint)
    _, test = load_hdfs_keyseq_benchmark(args.data / "HDFS_deeplog_keyseq", seed=args.seed)
    if args.hdfs < len(test):
        test = stratified_split(test, args.hdfs / len(test), args.seed)[1]
    sequences = [list(s.messages) for s in test]
    distinct = len({tuple(s) for s in sequences})
    bs = args.batch_size
    print(f"{len(sequences)} HDFS test sessions ({distinct} distinct), batch size {bs}", flush=True)

    before, _ = load_checkpoint(checkpoint, ModelSettings(merge_lora=False))
    now, manifest = load_checkpoint(checkpoint, ModelSettings())
    threshold = now.threshold
    for model in (before, now):
        model.score(sequences[:1], batch_size=1)  # lazily initialised kernels load before any timing
    runs = {
        "before: adapters unmerged, every sequence": timed(before, lambda: score_every_sequence(before, sequences, bs)),
        "merged, every sequence": timed(now, lambda: score_every_sequence(now, sequences, bs)),
        "now: merged, each distinct sequence once": timed(now, lambda: now.score(sequences, batch_size=bs)),
    }
    if not args.no_int8:
        int8, _ = load_checkpoint(checkpoint, ModelSettings(quantize="int8"))
        int8.score(sequences[:1], batch_size=1)
        runs["now, --quantize int8"] = timed(int8, lambda: int8.score(sequences, batch_size=bs))

    base_s, base_scores = runs["before: adapters unmerged, every sequence"]
    rows, methods = [], {}
    for name, (seconds, scores) in runs.items():
        agree = sum((a >= threshold) == (b >= threshold) for a, b in zip(base_scores, scores, strict=True))
        diff = max(abs(a - b) for a, b in zip(base_scores, scores, strict=True))
        n = len(sequences)
        methods[name] = {
            "seconds": seconds,
            "sequences_per_second": n / seconds,
            "speedup": base_s / seconds,
            "labels_agreeing_with_before": agree,
            "max_score_difference": diff,
        }
        rows.append([name, seconds, n / seconds, base_s / seconds, f"{agree}/{n} ({agree / n:.2%})", f"{diff:.2e}"])
    print()
    print(table(["path", "s", "seq/s", "x before", f"labels as before (thr {threshold:.4g})", "max |Δscore|"], rows))
    print(machine_line(machine(with_torch=True)))
    write_result(
        result_name(args),
        {
            "quick": args.quick,
            "checkpoint": str(checkpoint),
            "model_version": manifest.version,
            "threshold": threshold,
            "sequences": len(sequences),
            "distinct_sequences": distinct,
            "batch_size": bs,
            "methods": methods,
        },
        info,
    )


if __name__ == "__main__":
    main()
