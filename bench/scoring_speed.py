"""Sequences/s of the one-pass scorer against the reference-style generate-and-search loop, in one run.

Same model, same windows (HDFS test sessions and BGL_2k windows of 100), same batch size and the same
length-sorted batching for every method. The reference loop greedily generates up to 6 tokens and searches the
text for "normal"/"anomalous" (as the paper's code does); the one-pass scorer compares two logits of one forward
pass. The message-embedding cache is measured off, cold (emptied before each repeat: only repeats within the
run hit) and warm (filled by an earlier pass). Agreement: how many windows get the same label both ways.

    python -m bench.scoring_speed --hdfs 256 --bgl 20 --batch-size 16 --repeats 3
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable, Sequence
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

ANSWER = re.compile(r"normal|anomalous", re.IGNORECASE)


def reference_labels(model: Any, sequences: Sequence[Sequence[str]], batch_size: int) -> list[int | None]:
    """Greedy generation up to 6 tokens, then the first "normal"/"anomalous" in the text (None: neither)."""
    labels: list[int | None] = []
    for start in range(0, len(sequences), batch_size):
        for text in model.generate(sequences[start : start + batch_size], max_new_tokens=6):
            found = ANSWER.search(text)
            labels.append(None if found is None else int(found.group(0).lower() == "anomalous"))
    return labels


def timed(run: Callable[[], Any], repeats: int, before: Callable[[], None] | None = None) -> tuple[list[float], Any]:
    seconds, result = [], None
    for _ in range(repeats):
        if before is not None:
            before()
        started = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - started)
    return seconds, result


def load_windows(data: Any, n_hdfs: int, n_bgl: int, seed: int) -> tuple[list[list[str]], dict[str, int]]:
    from training.data import load_hdfs_keyseq_benchmark, load_line_labeled, stratified_split

    _, hdfs_test = load_hdfs_keyseq_benchmark(data / "HDFS_deeplog_keyseq", seed=seed)
    if n_hdfs < len(hdfs_test):
        hdfs_test = stratified_split(hdfs_test, n_hdfs / len(hdfs_test), seed)[1] if n_hdfs else []
    bgl_train, bgl_test = load_line_labeled(data / "BGL" / "BGL_2k.log", "bgl", 100, 100)
    bgl = (bgl_train + bgl_test)[:n_bgl]
    windows = [list(s.messages) for s in hdfs_test] + [list(s.messages) for s in bgl]
    return windows, {"hdfs_sessions": len(hdfs_test), "bgl_windows_of_100": len(bgl)}


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0], "scoring_speed")
    parser.add_argument("--checkpoint", help="checkpoint directory (default: checkpoints/default, else untrained)")
    parser.add_argument("--hdfs", type=int, default=256, help="HDFS test sessions (stratified sample)")
    parser.add_argument("--bgl", type=int, default=20, help="BGL_2k windows of 100 lines (at most 20)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per method (median reported)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=42, help="HDFS split and sample seed")
    args = parser.parse_args()
    if args.quick:
        args.hdfs, args.bgl, args.batch_size, args.repeats = 12, 4, 8, 1
    import torch

    from model.checkpoint import load_checkpoint
    from model.embedding_cache import EmbeddingCache

    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine(with_torch=True)
    print(machine_line(info))
    checkpoint = resolve_checkpoint(args.checkpoint)
    model, manifest = load_checkpoint(checkpoint)
    windows, counts = load_windows(args.data, args.hdfs, args.bgl, args.seed)
    windows = sorted(windows, key=len)  # the order score() batches in; the reference loop gets it too
    n, bs = len(windows), args.batch_size
    messages = sum(min(len(w), model.max_messages) for w in windows)
    print(f"{n} windows ({counts}), {messages} messages, batch size {bs}, {args.repeats} repeat(s)", flush=True)
    model.score(windows[:1], batch_size=1)  # load lazily-initialised kernels before any timing

    model.cache = EmbeddingCache(0)
    ref_s, ref_labels = timed(lambda: reference_labels(model, windows, bs), args.repeats)
    off_s, scores = timed(lambda: model.score(windows, batch_size=bs), args.repeats)
    model.cache = EmbeddingCache(1_000_000)
    cold_s, _ = timed(lambda: model.score(windows, batch_size=bs), args.repeats, before=model.cache.clear)
    model.cache.hits = model.cache.misses = 0
    warm_s, warm_scores = timed(lambda: model.score(windows, batch_size=bs), args.repeats)
    distinct = len(model.cache)

    rows, methods = [], {}
    base = statistics.median(ref_s)
    for name, seconds in (
        ("reference: generate 6 tokens + text search (no cache)", ref_s),
        ("one-pass logits, cache off", off_s),
        ("one-pass logits, cache cold", cold_s),
        ("one-pass logits, cache warm", warm_s),
    ):
        median = statistics.median(seconds)
        methods[name] = {
            "seconds": seconds,
            "median_s": median,
            "sequences_per_second": n / median,
            "speedup_vs_reference": base / median,
        }
        rows.append([name, median, n / median, base / median])
    print()
    print(table(["method", "median s", "seq/s", "x reference"], rows))

    agreement: dict[str, Any] = {}
    for label, threshold in (("at 0.5", 0.5), (f"at checkpoint threshold {model.threshold:.4g}", model.threshold)):
        one_pass = [int(s >= threshold) for s in scores]
        agreement[label] = {
            "agree": sum(r == o for r, o in zip(ref_labels, one_pass, strict=True)),
            "disagree": sum(r is not None and r != o for r, o in zip(ref_labels, one_pass, strict=True)),
            "reference_found_no_answer": sum(r is None for r in ref_labels),
            "windows": n,
        }
    print()
    print(
        table(
            ["one-pass labels vs reference", "agree", "disagree", "no answer in text", "windows"],
            [[k, v["agree"], v["disagree"], v["reference_found_no_answer"], n] for k, v in agreement.items()],
        )
    )
    max_diff = max(abs(a - b) for a, b in zip(scores, warm_scores, strict=True))
    print(
        f"cache: {distinct} distinct messages of {messages}; warm pass hit rate "
        f"{model.cache.hits / max(model.cache.hits + model.cache.misses, 1):.3f}; "
        f"max |score(cache off) - score(cache warm)| = {max_diff:.2e}"
    )
    gpu_peak_mib = torch.cuda.max_memory_allocated() / 2**20 if model.device.type == "cuda" else None
    if gpu_peak_mib is not None:
        print(f"GPU memory: peak {gpu_peak_mib:.0f} MiB allocated by torch ({torch.cuda.get_device_name()})")
    if is_untrained(checkpoint):
        print("UNTRAINED checkpoint: speed is real; label agreement says little (the answer text may be neither)")
    print(machine_line(info))
    write_result(
        result_name(args),
        {
            "quick": args.quick,
            "checkpoint": str(checkpoint),
            "model_version": manifest.version,
            "windows": counts,
            "messages": messages,
            "distinct_messages": distinct,
            "batch_size": bs,
            "repeats": args.repeats,
            "methods": methods,
            "agreement": agreement,
            "max_score_difference_cache_on_off": max_diff,
            "device": str(model.device),
            "gpu_peak_mib": gpu_peak_mib,
        },
        info,
    )


if __name__ == "__main__":
    main()
