"""Detection quality of checkpoints on the HDFS-sessions benchmark and BGL_2k, beside the paper's table.

Each checkpoint is scored on the test split of each data set at its own (validation-picked) threshold, with
training/evaluate.py; several checkpoints (seeds) are summarised with training/metrics.summarize_runs. The HDFS
split uses the seed recorded in each checkpoint's manifest, so a checkpoint is never scored on its own training
sessions. These are not the paper's data or backbones: the paper's figures are printed for orientation only.

Honest figures beside the raw ones: metrics on the *unseen* test sequences (message list never in train), and
precision/F1 projected to the data set's real prevalence (HDFS 2.93%, BGL 8.67%). The novelty experiment
(``--inject N``) takes held-out normal windows, inserts into each one template that training saw only in
anomalous windows, and counts how many the model flags with and without the novelty rule; it also counts the
false positives the rule adds on the held-out normal windows, split by whether all their templates were seen in
training. The vocabulary is the checkpoint's when it was trained on that data set, else built from the
benchmark's own train split (said in the output).

    python -m bench.quality --checkpoint runs/seed1 --checkpoint runs/seed2
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from model.logllm import LogLLM
    from model.vocab import Vocabulary
    from training.data import LabeledSequence

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
HONEST = ("projected_precision", "projected_f1", "unseen_n", "unseen_positives", "unseen_f1", "unseen_fpr",
          "unseen_projected_f1", "novelty_f1", "novelty_fpr", "novelty_projected_f1")  # fmt: skip
INJECTED = ("injected", "injected_flagged_model", "injected_flagged_novelty", "normal", "fp_model",
            "fp_novelty", "extra_fp", "extra_fp_all_templates_seen")  # fmt: skip


def inject(messages: Sequence[str], template: str, rng: random.Random, max_messages: int) -> list[str]:
    """``messages`` with ``template`` inserted at a random place the model still reads (within max_messages)."""
    at = rng.randrange(min(len(messages), max_messages - 1) + 1)
    return [*messages[:at], template, *messages[at:]][:max_messages]


def novelty_experiment(
    model: LogLLM,
    threshold: float,
    normal: Sequence[LabeledSequence],
    normal_scores: Sequence[float],
    vocabulary: Vocabulary,
    count: int,
    seed: int,
    batch_size: int,
) -> dict[str, Any]:
    """Detection of normal windows with one injected anomalous-only template, and the FPR, with and without."""
    from model.vocab import decide, window_novelty
    from training.evaluate import score_distinct

    rng = random.Random(seed)
    templates = sorted(vocabulary.anomalous_only)
    picks = rng.sample(list(normal), count) if count < len(normal) else list(normal)  # each window once
    injected = [inject(s.messages, rng.choice(templates), rng, model.max_messages) for s in picks]
    scores, _ = score_distinct(model, injected, batch_size)
    flagged_model = sum(score >= threshold for score in scores)
    flagged_novelty = sum(
        decide(score, threshold, window_novelty(m, vocabulary), "flag")[0]
        for m, score in zip(injected, scores, strict=True)
    )
    fp_model = fp_novelty = extra_seen = 0
    for s, score in zip(normal, normal_scores, strict=True):
        found = window_novelty(s.messages, vocabulary)
        by_model = score >= threshold
        fp_model += by_model
        fp_novelty += decide(score, threshold, found, "flag")[0]
        extra_seen += found.reason is None and not by_model and decide(score, threshold, found, "flag")[0]
    return {
        "templates": len(templates),
        "injected": len(injected),
        "injected_flagged_model": flagged_model,
        "injected_flagged_novelty": flagged_novelty,
        "normal": len(normal),
        "fp_model": fp_model,
        "fp_novelty": fp_novelty,
        "extra_fp": fp_novelty - fp_model,
        "extra_fp_all_templates_seen": int(extra_seen),
    }


def benchmark_vocabulary(checkpoint: Path, trained_on: str, kind: str, train: Sequence[LabeledSequence]) -> tuple[
        Vocabulary, str]:  # fmt: skip
    """The checkpoint's vocabulary when it was trained on this data set, else one built from its train split."""
    from model.preprocess import PREPROCESS_VERSION
    from model.vocab import build_vocabulary, load_vocabulary

    own = load_vocabulary(checkpoint) if trained_on == kind else None
    if own is not None:
        return own, "checkpoint"
    return build_vocabulary(((s.messages, s.label) for s in train), PREPROCESS_VERSION), "benchmark train split"


def evaluate_checkpoint(
    checkpoint: Path,
    benchmarks: list[str],
    data: Path,
    limit: int | None,
    seed: int,
    batch_size: int,
    max_fpr: float | None = None,
    inject_count: int = 0,
) -> list[dict[str, Any]]:
    from model.checkpoint import load_checkpoint
    from training.datasets import load_splits
    from training.evaluate import evaluate, validation_threshold
    from training.metrics import PREVALENCE
    from training.settings import DataSettings

    model, manifest = load_checkpoint(checkpoint)
    split_seed = int(manifest.training.get("seed", seed))
    rows = []
    for name in benchmarks:
        kind, where, size, step, what = BENCHMARKS[name]
        settings = DataSettings(
            dataset=kind,
            data=data / where,
            window_size=size,
            window_step=step,
            seed=split_seed,
            split=manifest.training.get("split", "random"),  # a checkpoint trained on --split distinct is tested so
            eval_limit=limit,
        )  # type: ignore[call-arg]
        splits = load_splits(settings)
        test, threshold = splits.test, None
        if max_fpr is not None:  # re-picked on this checkpoint's validation split, as `logllm eval --max-fpr` does
            threshold, _ = validation_threshold(model, splits.validation, max_fpr, batch_size)
        trained_on = str(manifest.training.get("dataset", "untrained" if is_untrained(checkpoint) else "?"))
        vocabulary, vocabulary_from = benchmark_vocabulary(checkpoint, trained_on, kind, splits.train)
        result = evaluate(
            model,
            test,
            batch_size=batch_size,
            threshold=threshold,
            seen={tuple(s.messages) for s in (*splits.train, *splits.validation)},
            prevalence=PREVALENCE.get(kind),
            vocabulary=vocabulary,
            novelty="flag",
        )
        m = result.metrics
        honest = {
            "projected_precision": m["projected"]["precision"],
            "projected_f1": m["projected"]["f1"],
            "unseen_n": m["unseen"]["n"],
            "unseen_positives": m["unseen"].get("positives"),
            "unseen_distinct": m["unseen"].get("distinct"),
            "unseen_f1": m["unseen"].get("f1"),
            "unseen_fpr": m["unseen"].get("fpr"),
            "unseen_projected_f1": m["unseen"].get("projected", {}).get("f1"),
            "novelty_f1": m["novelty"]["with_novelty"]["f1"],
            "novelty_fpr": m["novelty"]["with_novelty"]["fpr"],
            "novelty_projected_f1": m["novelty"]["with_novelty"]["projected"]["f1"],
        }
        injection: dict[str, Any] = {}
        if inject_count and vocabulary.anomalous_only:
            normal = [i for i, s in enumerate(test) if s.label == 0]
            injection = novelty_experiment(
                model,
                result.threshold,
                [test[i] for i in normal],
                [result.scores[i] for i in normal],
                vocabulary,
                inject_count,
                split_seed,
                batch_size,
            )
        rows.append(
            {
                "benchmark": name,
                "data": what,
                "checkpoint": str(checkpoint),
                "model_version": manifest.version,
                "trained_on": trained_on,
                "vocabulary_from": vocabulary_from,
                "split_seed": split_seed,
                "sampled_to": limit,
                "threshold_rule": "manifest (best F1)" if max_fpr is None else f"validation FPR <= {max_fpr}",
                **{k: result.metrics.get(k) for k in (*REPORTED, "threshold", "tp", "fp", "fn", "tn")},
                **honest,
                "novelty": m["novelty"],
                "injection": injection,
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
    parser.add_argument(
        "--inject",
        type=int,
        default=0,
        help="novelty experiment: inject one anomalous-only template into N held-out normal windows (0: skip)",
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
        for row in evaluate_checkpoint(
            c, benchmarks, args.data, limit, args.seed, args.batch_size, args.max_fpr, args.inject
        )
    ]
    from training.metrics import PREVALENCE, summarize_runs

    summaries = {}
    rows = []
    honest_rows = []
    injected_rows = []
    for name in benchmarks:
        mine = [r for r in runs if r["benchmark"] == name]
        summary = summarize_runs([{k: r[k] for k in (*REPORTED, *HONEST)} | r["injection"] for r in mine])
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
        honest_rows.append(
            [name, stat("projected_precision"), stat("projected_f1"), mine[0]["unseen_n"], mine[0]["unseen_positives"],
             stat("unseen_f1"), stat("unseen_fpr"), stat("unseen_projected_f1"), stat("novelty_f1"),
             stat("novelty_fpr"), stat("novelty_projected_f1")]
        )  # fmt: skip
        for r in mine:
            if r["injection"]:
                i = r["injection"]
                injected_rows.append(
                    [name, Path(r["checkpoint"]).name, r["vocabulary_from"], i["templates"],
                     f"{i['injected_flagged_model']}/{i['injected']}",
                     f"{i['injected_flagged_novelty']}/{i['injected']}",
                     f"{i['fp_model']}/{i['normal']}", f"{i['fp_novelty']}/{i['normal']}",
                     i["extra_fp_all_templates_seen"]]
                )  # fmt: skip
    print()
    print(
        table(["benchmark", "n", "anomalous", "runs", "F1", "precision", "recall", "FPR", "PR-AUC", "trained on"], rows)
    )
    print("mean ± sample std over the checkpoints given (one checkpoint: no spread)")
    print()
    print(
        table(["benchmark", "proj. precision", "proj. F1", "unseen n", "unseen anom.", "unseen F1", "unseen FPR",
               "unseen proj. F1", "F1 +novelty", "FPR +novelty", "proj. F1 +novelty"], honest_rows)
    )  # fmt: skip
    prevalences = ", ".join(f"{k} {v:.2%}" for k, v in PREVALENCE.items())
    print(f"proj. = projected to the real prevalence ({prevalences}); unseen = test sequences never in train")
    if injected_rows:
        print()
        print(
            table(["benchmark", "checkpoint", "vocabulary", "templates", "injected flagged (model)",
                   "injected flagged (+novelty)", "FP normal (model)", "FP normal (+novelty)",
                   "extra FP, all templates seen"], injected_rows)
        )  # fmt: skip
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
            "inject": args.inject,
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
