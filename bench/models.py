"""Many models on one base: scoring seq/s with 16 models mixed in every batch beside one model, mixed batches beside
grouping windows by model, the memory of 1, 16 and 256 registered models, and the time to register one.

Paths, all on the same BGL windows, batch size and an emptied embedding cache (so every path encodes its messages):
"one model, merged": ``load_checkpoint`` as a service without ``--models`` serves it (adapters folded in); "one model,
pool": the same checkpoint in the AdapterPool (adapters unmerged, applied per row); "16 mixed": window i scored by
model i % 16, every batch holding rows of all 16 (``score_mixed``, the path the service takes); "16 grouped": the same
windows, one pass per model. The 16 (and 256) models are the checkpoint registered again and again: each load reads
its files into tensors of its own (the pool shares nothing between checkpoints but the backbones), so the same
weights cost what distinct weights cost. "16 mixed" is given against both one-model paths: merged (no adapter
matmul at all) and in the pool (the same code, one adapter). It does more work than either: every model encodes the
messages of its own windows through its own encoder adapter (on BGL's first 320 lines, 86 (model, message) pairs
where one model encodes 49 distinct messages). Passes are the fastest of ``--repeats``, the paths taking turns.

Memory: the process RSS after each count, every count measured the same way: registered, one scoring pass over the
windows spread across all its models, message caches emptied, free heap handed back (malloc_trim; the figure before
it is in the result file too). The backbones are memory-mapped files that only
become resident once a forward pass touches them, so a warm-up pass of both the merged model and the pool's first
model comes before the first figure; without it the first scoring (between 16 and 256 models in the earlier
protocol) counted ~570 MiB of backbone pages per copy as growth. A model's own size: its LoRA tensors, projector and
vocabulary (Python objects, measured deep); growth from 1 model is compared with (count - 1) x that.

    python -m bench.models --windows 16 --counts 1 16 256 --repeats 5
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.common import (
    base_parser,
    bgl_lines,
    machine,
    machine_line,
    resolve_checkpoint,
    result_name,
    table,
    write_result,
)


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def trimmed_rss_mib() -> float:
    """RSS once the heap's free pages went back to the system (glibc's malloc_trim): the activations of a scoring
    pass leave free heap behind that is no model's memory."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss_mib()


def deep_bytes(value: object) -> int:
    """Bytes of a tree of dicts, lists, tuples, sets and scalars (a vocabulary in memory)."""
    size = sys.getsizeof(value)
    if isinstance(value, dict):
        return size + sum(deep_bytes(k) + deep_bytes(v) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return size + sum(deep_bytes(v) for v in value)
    if hasattr(value, "__dataclass_fields__"):
        return size + sum(deep_bytes(getattr(value, name)) for name in value.__dataclass_fields__)
    return size


def best_of(repeats: int, runs: dict[str, Callable[[], object]], clear: Callable[[], None]) -> dict[str, float]:
    """Each path's fastest of ``repeats`` passes, the paths taking turns: on a shared machine whose load changes
    from minute to minute, every path meets the same spells (all of one path's passes, then the next's, did not)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            clear()
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    return {name: min(t) for name, t in times.items()}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0], "models")
    parser.add_argument("--checkpoint", help="checkpoint directory (default: checkpoints/default, else untrained)")
    parser.add_argument("--windows", type=int, default=16, help="BGL windows of --window-lines lines")
    parser.add_argument("--window-lines", type=int, default=20)
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 16, 256], help="registered models to measure")
    parser.add_argument("--mixed", type=int, default=16, help="models mixed in every batch")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.quick:
        args.windows, args.counts, args.mixed, args.repeats = 4, [1, 2], 2, 1
    from model.adapter_pool import MIB, AdapterPool, PooledModel, score_mixed
    from model.checkpoint import load_checkpoint
    from model.log_formats import parse_line
    from model.preprocess import preprocess
    from model.settings import ModelSettings

    info = machine(with_torch=True)
    print(machine_line(info))
    loads = {"start": load_average()}
    checkpoint = resolve_checkpoint(args.checkpoint)
    lines = bgl_lines(args.data)[: args.windows * args.window_lines]
    messages = [preprocess(parse_line(line, "bgl").content) for line in lines]
    windows = [messages[i : i + args.window_lines] for i in range(0, len(messages), args.window_lines)]
    settings = ModelSettings(quantize="none", embedding_cache_size=50_000)

    merged, _ = load_checkpoint(checkpoint, settings)
    pool = AdapterPool(settings, 64 << 30)
    models: list[PooledModel] = []
    registering: dict[int, list[float]] = {}
    memory: dict[int, dict[str, float]] = {}
    started = time.perf_counter()
    models.append(pool.load(checkpoint))
    first_load_s = time.perf_counter() - started
    base_mib = pool.bases()[0].nbytes / MIB
    vocabulary_mib = deep_bytes(models[0].vocabulary) / MIB
    own_mib = models[0].nbytes / MIB + vocabulary_mib  # LoRA tensors + projector + vocabulary

    def clear(scored: list[PooledModel]) -> None:
        merged.cache.clear()
        for model in scored:
            model.model.cache.clear()

    merged.score(windows, batch_size=args.batch_size)  # warm-up: the backbones' pages resident
    models[0].score(windows, batch_size=args.batch_size)

    def register_up_to(count: int) -> None:
        times = registering.setdefault(count, [])
        while len(models) < count:
            started = time.perf_counter()
            models.append(pool.load(checkpoint))
            times.append(time.perf_counter() - started)
        score_mixed([(models[i % count], w) for i, w in enumerate(windows)], args.batch_size)
        clear(models)
        untrimmed = rss_mib()
        memory[count] = {"pool_mib": pool.nbytes / MIB, "rss_mib": trimmed_rss_mib(), "rss_untrimmed_mib": untrimmed}
        print(f"{count} models: pool {pool.nbytes / MIB:.1f} MiB, rss {memory[count]['rss_mib']:.0f} MiB", flush=True)

    counts = sorted(set(args.counts) | {1, args.mixed})
    for count in [c for c in counts if c <= args.mixed]:
        register_up_to(count)
    mixed = models[: args.mixed]

    def grouped() -> None:
        for k, model in enumerate(mixed):
            mine = windows[k :: len(mixed)]
            if mine:
                model.score(mine, batch_size=args.batch_size)

    paths: dict[str, Callable[[], Any]] = {
        "one model, merged": lambda: merged.score(windows, batch_size=args.batch_size),
        "one model, pool": lambda: score_mixed([(models[0], w) for w in windows], args.batch_size),
        f"{len(mixed)} mixed": lambda: score_mixed(
            [(mixed[i % len(mixed)], w) for i, w in enumerate(windows)], args.batch_size
        ),
        f"{len(mixed)} grouped": grouped,
    }
    seconds = best_of(args.repeats, paths, lambda: clear(mixed))
    loads["after_speed"] = load_average()
    rate = {name: len(windows) / s for name, s in seconds.items()}
    one, one_pool = rate["one model, merged"], rate["one model, pool"]
    rows = [[n, f"{rate[n]:.2f}", f"{rate[n] / one:.2f}x", f"{rate[n] / one_pool:.2f}x"] for n in paths]
    print(table(["path", "seq/s", "vs one merged", "vs one in the pool"], rows))

    def report() -> None:
        rss_one = memory[1]["rss_mib"]
        mem_rows = [
            [count, f"{m['pool_mib']:.1f}", f"{m['rss_mib'] - rss_one:.1f}", f"{(count - 1) * own_mib:.1f}",
             f"{(m['rss_mib'] - rss_one) / max(count - 1, 1):.2f}",
             f"{statistics.mean(registering[count]) * 1000:.0f}" if registering[count] else "-"]
            for count, m in memory.items()
        ]  # fmt: skip
        headers = ["models", "pool MiB", "RSS growth MiB", "own size x (n-1) MiB", "RSS MiB/model", "register ms"]
        print(table(headers, mem_rows))
        print(
            f"backbones {base_mib:.0f} MiB; one model's own {own_mib:.2f} MiB (LoRA + projector"
            f" {models[0].nbytes / MIB:.2f}, vocabulary {vocabulary_mib:.3f}); first load {first_load_s:.1f} s;"
            f" load averages {loads}"
        )
        payload = {
            "checkpoint": str(checkpoint), "windows": len(windows), "window_lines": args.window_lines,
            "batch_size": args.batch_size, "repeats": args.repeats, "seq_per_s": rate,
            "vs_one_merged": {name: r / one for name, r in rate.items()},
            "vs_one_pool": {name: r / one_pool for name, r in rate.items()},
            "mixed_vs_one_pool": rate[f"{len(mixed)} mixed"] / one_pool,
            "grouped_vs_mixed": rate[f"{len(mixed)} grouped"] / rate[f"{len(mixed)} mixed"],
            "memory": memory, "rss_growth_from_one_mib": {c: m["rss_mib"] - rss_one for c, m in memory.items()},
            "own_size_growth_mib": {c: (c - 1) * own_mib for c in memory},
            "backbones_mib": base_mib, "model_own_mib": own_mib, "model_lora_projector_mib": models[0].nbytes / MIB,
            "model_vocabulary_mib": vocabulary_mib, "first_load_s": first_load_s,
            "register_ms_mean": {c: statistics.mean(t) * 1000 for c, t in registering.items() if t},
            "register_s": {count: times for count, times in registering.items()},
            "load_average_1_5_15": loads,
        }  # fmt: skip
        write_result(result_name(args), payload, info)

    report()  # the speed figures are written before the long registrations
    for count in [c for c in counts if c > args.mixed]:
        register_up_to(count)
        loads[f"after_{count}"] = load_average()
        report()


if __name__ == "__main__":
    main()
