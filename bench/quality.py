"""Detection quality of checkpoints on the HDFS-sessions benchmark and BGL_2k, beside the paper's table.

Each checkpoint is scored on the test split of each data set at its own (validation-picked) threshold, with
training/evaluate.py; several checkpoints (seeds) are summarised with training/metrics.summarize_runs. The HDFS
split uses the seed recorded in each checkpoint's manifest, so a checkpoint is never scored on its own training
sessions. These are not the paper's data or backbones: the paper's figures are printed for orientation only.

    python -m bench.quality --checkpoint runs/seed1 --checkpoint runs/seed2
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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

PAPER_F1 = {"HDFS": 0.997, "BGL": 0.916, "Liberty": 0.958, "Thunderbird": 0.966}
PAPER_NOTE = (
    "paper (Table II): Llama-3-8B + BERT-base on the full Loghub sets (HDFS 11M lines, BGL 4.7M lines); "
    "not comparable with these small backbones and sample data"
)
# name -> (dataset kind, path under the data directory, window size, window step, what it is); BGL is named as
# a file because load_splits looks for a folder "Bgl" (str.capitalize), which shared/data spells "BGL".
BENCHMARKS: dict[str, tuple[str, str, int, int, str]] = {
    "hdfs-sessions": ("hdfs-sessions", ".", 100, 100, "DeepLog HDFS key sequences, random 80/20 split"),
    "bgl2k-100": (
        "bgl",
        "BGL/BGL_2k.log",
        100,
        100,
        "BGL_2k, chronological 80/20, windows 100/step 100 (small-sample check)",
    ),
    "bgl2k-20": (
        "bgl",
        "BGL/BGL_2k.log",
        20,
        20,
        "BGL_2k, chronological 80/20, windows 20/step 20 (small-sample check)",
    ),
}
REPORTED = ("n", "positives", "precision", "recall", "f1", "fpr", "pr_auc", "roc_auc", "sequences_per_second")


def evaluate_checkpoint(
    checkpoint: Path,
    benchmarks: list[str],
    data: Path,
    limit: int | None,
    seed: int,
    batch_size: int,
    max_fpr: float | None = None,
) -> list[dict[str, Any]]:
    from model.checkpoint import load_checkpoint
    from training.datasets import load_splits
    from training.evaluate import evaluate, validation_threshold
    from training.settings import DataSettings

    model, manifest = load_checkpoint(checkpoint)
    split_seed = int(manifest.training.get("seed", seed))
    rows = []
    for name in benchmarks:
        kind, where, size, step, what = BENCHMARKS[name]
        settings = DataSettings(
            dataset=kind, data=data / where, window_size=size, window_step=step, seed=split_seed, eval_limit=limit
        )  # type: ignore[call-arg]
        splits = load_splits(settings)
        test, threshold = splits.test, None
        if max_fpr is not None:  # re-picked on this checkpoint's validation split, as `logllm eval --max-fpr` does
            threshold = validation_threshold(model, splits.validation, max_fpr, batch_size)
        result = evaluate(model, test, batch_size=batch_size, threshold=threshold)
        rows.append(
            {
                "benchmark": name,
                "data": what,
                "checkpoint": str(checkpoint),
                "model_version": manifest.version,
                "trained_on": manifest.training.get("dataset", "untrained" if is_untrained(checkpoint) else "?"),
                "split_seed": split_seed,
                "sampled_to": limit,
                "threshold_rule": "manifest (best F1)" if max_fpr is None else f"validation FPR <= {max_fpr}",
                **{k: result.metrics.get(k) for k in (*REPORTED, "threshold", "tp", "fp", "fn", "tn")},
            }
        )
        print(f"  {checkpoint} on {name}: F1 {result.metrics['f1']:.4f} ({len(test)} sequences)", flush=True)
    del model
    return rows


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0], "quality")
    parser.add_argument(
        "--checkpoint", action="append", help="checkpoint directory; repeat for seeds (default: checkpoints/default)"
    )
    parser.add_argument("--benchmark", action="append", choices=sorted(BENCHMARKS), help="default: all three")
    parser.add_argument("--limit", type=int, help="score a stratified sample of at most N test sequences each")
    parser.add_argument("--seed", type=int, default=42, help="HDFS split seed when a manifest records none")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--max-fpr", type=float, help="re-pick each threshold for the most recall at this validation FPR or below"
    )
    args = parser.parse_args()
    limit = args.limit if args.limit is not None else (40 if args.quick else None)
    benchmarks = args.benchmark or list(BENCHMARKS)
    checkpoints = [resolve_checkpoint(c) for c in (args.checkpoint or [None])]
    info = machine(with_torch=True)
    print(machine_line(info))
    runs = [
        row
        for c in checkpoints
        for row in evaluate_checkpoint(c, benchmarks, args.data, limit, args.seed, args.batch_size, args.max_fpr)
    ]
    from training.metrics import summarize_runs

    summaries = {}
    rows = []
    for name in benchmarks:
        mine = [r for r in runs if r["benchmark"] == name]
        summary = summarize_runs([{k: r[k] for k in REPORTED} for r in mine])
        summaries[name] = summary

        def stat(key: str, s: dict[str, Any] = summary) -> str:
            entry = s.get(key)
            if entry is None:
                return "-"
            spread = f" ±{entry['std']:.3f}" if entry["std"] is not None else ""
            return f"{entry['mean']:.3f}{spread}"

        rows.append(
            [
                name,
                mine[0]["n"],
                mine[0]["positives"],
                len(mine),
                stat("f1"),
                stat("precision"),
                stat("recall"),
                stat("fpr"),
                stat("pr_auc"),
                ",".join(sorted({str(r["trained_on"]) for r in mine})),
            ]
        )
    print()
    print(
        table(["benchmark", "n", "anomalous", "runs", "F1", "precision", "recall", "FPR", "PR-AUC", "trained on"], rows)
    )
    print("mean ± sample std over the checkpoints given (one checkpoint: no spread)")
    if limit:
        print(f"test splits sampled to at most {limit} sequences (stratified): a smoke figure, not a result")
    if any(is_untrained(c) for c in checkpoints):
        print("UNTRAINED checkpoint: these scores are meaningless (speed and plumbing only)")
    print()
    print(table(["paper data set", "paper F1"], list(PAPER_F1.items())))
    print(PAPER_NOTE)
    write_result(
        result_name(args),
        {
            "quick": args.quick,
            "sampled_to": limit,
            "max_fpr": args.max_fpr,
            "benchmarks": {n: BENCHMARKS[n][4] for n in benchmarks},
            "runs": runs,
            "summary": summaries,
            "paper_f1": PAPER_F1,
            "paper_note": PAPER_NOTE,
        },
        info,
    )


if __name__ == "__main__":
    main()
