"""What patterns per source cost: Redis bytes per template, and the pattern step's time per scoring batch beside
the model's time on the same batch.

Bytes: the distinct templates of the real BGL_2k, Thunderbird_2k and HDFS_2k lines (preprocessed as the worker
does), each with its raw example line and a full list of ``--recent`` window ids, written for one source through
``PatternStore.update`` on an empty embedded Redis; bytes per template = INFO used_memory after / templates.

Time: batches of ``--batch-size`` HDFS sessions of ``--lines`` real HDFS_2k lines (fresh block ids), through
``PatternKeeper.decide`` (the lookup script + the novelty rule) and ``record`` (the update script) against the
checkpoint's vocabulary, and through ``LogLLM.score`` on the same batch, interleaved round by round; medians.

    python -m bench.patterns --batches 8 --batch-size 16 --lines 20
"""

from __future__ import annotations

import asyncio
import statistics
import time
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
from bench.memory import used_memory


def corpus_templates(data: Any) -> list[tuple[str, str]]:
    """(template, first raw line that gave it) over the three sample logs."""
    from model.log_formats import parse_line
    from model.preprocess import preprocess

    found: dict[str, str] = {}
    for path, fmt in (("BGL/BGL_2k.log", "bgl"), ("Thunderbird/Thunderbird_2k.log", "thunderbird"),
                      ("HDFS/HDFS_2k.log", "hdfs")):  # fmt: skip
        for line in (data / path).read_text(encoding="utf-8", errors="replace").splitlines():
            found.setdefault(preprocess(parse_line(line, fmt).content), line)
    return list(found.items())


async def bytes_per_template(url: str, templates: list[tuple[str, str]], recent: int) -> dict[str, Any]:
    import redis
    from redis.asyncio import Redis

    from service.patterns.pattern_store import PatternConfig, PatternStore, TemplateUse
    from service.windows.store import StoreConfig, WindowStore

    client = Redis.from_url(url)
    sync = redis.Redis.from_url(url)
    store = PatternStore(WindowStore(client, StoreConfig()), PatternConfig(pattern_recent_windows=recent))
    base = used_memory(sync)
    windows = [f"session:default:blk_-{9000000000000000000 + i}#{i % 10}" for i in range(recent)]
    for first in range(0, len(templates), 200):
        uses = [TemplateUse(t, count=3, example=line, windows=windows, vocab="")
                for t, line in templates[first : first + 200]]  # fmt: skip
        await store.update({"bench": uses})
    after = used_memory(sync)
    sync.close()
    await client.aclose()
    n = len(templates)
    return {"templates": n, "recent_windows": recent, "bytes_per_template": (after - base) / n,
            "mean_example_chars": statistics.mean(len(line) for _, line in templates)}  # fmt: skip


def hdfs_batches(lines: list[str], batches: int, size: int, per_window: int) -> list[list[Any]]:
    """Closed windows of real HDFS lines with fresh block ids (what the store hands the classifier)."""
    from model.log_formats import parse_line
    from service.windows.store import ClosedWindow

    out = []
    for b in range(batches):
        batch = []
        for w in range(size):
            block = f"blk_{8000000 + b * size + w}"
            content = [parse_line(with_session(lines[(b * 31 + w * 7 + i) % len(lines)], block), "hdfs").content
                       for i in range(per_window)]  # fmt: skip
            key = f"session:default:{block}"
            batch.append(ClosedWindow(f"{b}-{w}", 0, key, content, "explicit", time.time(), key))
        out.append(batch)
    return out


async def step_times(url: str, checkpoint: Any, batches: list[list[Any]]) -> dict[str, Any]:
    from redis.asyncio import Redis

    from model.checkpoint import load_checkpoint
    from model.preprocess import preprocess
    from model.vocab import load_vocabulary
    from service.patterns.keeper import PatternKeeper
    from service.patterns.pattern_store import PatternStore
    from service.windows.store import StoreConfig, Verdict, WindowStore

    model, _ = load_checkpoint(checkpoint)
    client = Redis.from_url(url)
    keeper = PatternKeeper(PatternStore(WindowStore(client, StoreConfig())), load_vocabulary(checkpoint), "flag", 0.0)
    model_s, step_s, flagged = [], [], 0
    for batch in batches:
        sequences = [[preprocess(line) for line in w.lines] for w in batch]
        started = time.perf_counter()
        scores = model.score(sequences, batch_size=len(sequences))
        model_s.append(time.perf_counter() - started)
        labels = ["anomalous" if s >= model.threshold else "normal" for s in scores]
        pairs = [(w, Verdict(w.window_id, label, s, model.threshold, len(w.lines), "bench", w.closed_at, time.time()))
                 for w, s, label in zip(batch, scores, labels, strict=True)]  # fmt: skip
        started = time.perf_counter()
        decided = await keeper.decide(pairs, sequences)
        await keeper.record(decided, sequences)
        step_s.append(time.perf_counter() - started)
        flagged += sum(1 for _, v in decided if v.reason in ("novel_template", "known_anomalous_template"))
    await client.aclose()
    model_ms, step_ms = statistics.median(model_s) * 1000, statistics.median(step_s) * 1000
    return {"batches": len(batches), "windows_per_batch": len(batches[0]), "median_model_ms": model_ms,
            "median_pattern_step_ms": step_ms, "step_over_model": step_ms / model_ms,
            "flagged_by_novelty": flagged}  # fmt: skip


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0], "patterns")
    parser.add_argument("--checkpoint", help="checkpoint with a vocabulary (default checkpoints/default)")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lines", type=int, default=20, help="lines per HDFS window")
    parser.add_argument("--recent", type=int, default=20, help="window ids kept per template")
    args = parser.parse_args()
    if args.quick:
        args.batches, args.batch_size, args.lines = 2, 4, 5
    from service.windows.embedded_redis import EmbeddedRedis

    info = machine(with_torch=True)
    print(machine_line(info))
    templates = corpus_templates(args.data)
    with EmbeddedRedis() as server:
        memory = asyncio.run(bytes_per_template(server.url, templates, args.recent))
    batches = hdfs_batches(hdfs_lines(args.data), args.batches, args.batch_size, args.lines)
    with EmbeddedRedis() as server:
        times = asyncio.run(step_times(server.url, resolve_checkpoint(args.checkpoint), batches))
    print(table(["patterns", "value"], [
        [f"Redis bytes per template ({memory['templates']} templates of BGL/Thunderbird/HDFS 2k, "
         f"{args.recent} window ids each, example {memory['mean_example_chars']:.0f} chars)",
         memory["bytes_per_template"]],
        [f"model.score, median ms per batch of {args.batch_size} x {args.lines} lines", times["median_model_ms"]],
        ["pattern step (lookup + rule + update), median ms per batch", times["median_pattern_step_ms"]],
        ["pattern step / model", times["step_over_model"]],
    ]))  # fmt: skip
    print(machine_line(info))
    write_result(result_name(args), {"quick": args.quick, "memory": memory, "times": times}, info)


if __name__ == "__main__":
    main()
