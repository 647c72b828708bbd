"""Many models on one base: scoring seq/s with 16 models mixed in every batch beside one model, mixed batches beside
grouping windows by model, the memory of 1, 16 and 256 registered models, and the time to register one.

Paths, all on the same BGL windows, batch size and an emptied embedding cache (so every path encodes its messages):
"one model, merged": ``load_checkpoint`` as a service without ``--models`` serves it (adapters folded in); "one model,
pool": the same checkpoint in the AdapterPool (adapters unmerged, named per row); "16 mixed": window i scored by
model i % 16, every batch holding rows of all 16 (``score_mixed``, the path the service takes); "16 grouped": the same
windows, one pass per model. The 16 (and 256) models are the checkpoint registered again and again: the same weights
under other adapter names, which costs what distinct weights cost. Memory: the pool's parameter bytes and the
process RSS after each count, beside the models' own size (adapters + projector).

    python -m bench.models --windows 32 --counts 1 16 256 --repeats 3
"""

from __future__ import annotations

import resource
import statistics
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


def best_of(repeats: int, run: Callable[[], object], clear: Callable[[], None]) -> float:
    times = []
    for _ in range(repeats):
        clear()
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0], "models")
    parser.add_argument("--checkpoint", help="checkpoint directory (default: checkpoints/default, else untrained)")
    parser.add_argument("--windows", type=int, default=32, help="BGL windows of --window-lines lines")
    parser.add_argument("--window-lines", type=int, default=20)
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 16, 256], help="registered models to measure")
    parser.add_argument("--mixed", type=int, default=16, help="models mixed in every batch")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
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
    checkpoint = resolve_checkpoint(args.checkpoint)
    lines = bgl_lines(args.data)[: args.windows * args.window_lines]
    messages = [preprocess(parse_line(line, "bgl").content) for line in lines]
    windows = [messages[i : i + args.window_lines] for i in range(0, len(messages), args.window_lines)]
    settings = ModelSettings(quantize="none", embedding_cache_size=50_000)

    merged, _ = load_checkpoint(checkpoint, settings)
    rss_base = rss_mib()
    pool = AdapterPool(settings, 64 << 30)
    models: list[PooledModel] = []
    registering: dict[int, list[float]] = {}
    memory: dict[int, dict[str, float]] = {}
    started = time.perf_counter()
    models.append(pool.load(checkpoint))
    first_load_s = time.perf_counter() - started
    base_mib = pool.bases()[0].nbytes / MIB

    def register_up_to(count: int) -> None:
        times = registering.setdefault(count, [])
        while len(models) < count:
            started = time.perf_counter()
            models.append(pool.load(checkpoint))
            times.append(time.perf_counter() - started)
        memory[count] = {"pool_mib": pool.nbytes / MIB, "rss_mib": rss_mib()}
        print(f"{count} models: pool {pool.nbytes / MIB:.1f} MiB, rss {rss_mib():.0f} MiB", flush=True)

    counts = sorted(set(args.counts) | {args.mixed})
    for count in [c for c in counts if c <= args.mixed]:
        register_up_to(count)
    own_mib = models[0].nbytes / MIB
    mixed = models[: args.mixed]

    def clear() -> None:
        merged.cache.clear()
        for model in mixed:
            model.model.cache.clear()

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
    seconds = {name: best_of(args.repeats, run, clear) for name, run in paths.items()}
    rate = {name: len(windows) / s for name, s in seconds.items()}
    one = rate["one model, merged"]
    rows = [[name, f"{rate[name]:.1f}", f"{rate[name] / one:.2f}x"] for name in paths]
    print(table(["path", "seq/s", "vs one merged"], rows))
    def report() -> None:
        mem_rows = [
            [count, f"{m['pool_mib']:.1f}", f"{m['pool_mib'] - base_mib - own_mib:.1f}",
             f"{m['rss_mib'] - rss_base:.0f}",
             f"{statistics.mean(registering[count]) * 1000:.0f}" if registering[count] else "-"]
            for count, m in memory.items()
        ]  # fmt: skip
        print(table(["models", "pool MiB", "beyond 1 model MiB", "RSS growth MiB", "register ms (mean)"], mem_rows))
        print(f"backbones {base_mib:.0f} MiB; one model's own {own_mib:.2f} MiB; first load {first_load_s:.1f} s")
        payload = {
            "checkpoint": str(checkpoint), "windows": len(windows), "window_lines": args.window_lines,
            "batch_size": args.batch_size, "repeats": args.repeats, "seq_per_s": rate,
            "mixed_vs_one_merged": rate[f"{len(mixed)} mixed"] / one,
            "mixed_vs_one_pool": rate[f"{len(mixed)} mixed"] / rate["one model, pool"],
            "grouped_vs_mixed": rate[f"{len(mixed)} grouped"] / rate[f"{len(mixed)} mixed"],
            "memory": memory, "backbones_mib": base_mib, "model_own_mib": own_mib, "first_load_s": first_load_s,
            "register_s": {count: times for count, times in registering.items()},
        }  # fmt: skip
        write_result(result_name(args), payload, info)

    report()  # the speed figures are written before the long registrations
    for count in [c for c in counts if c > args.mixed]:
        register_up_to(count)
        report()


if __name__ == "__main__":
    main()
