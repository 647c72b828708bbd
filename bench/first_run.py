"""Quality of a first run, as a user meets it: raw HDFS lines streamed into a live ``logllm serve``, verdicts read back.

The held-out sessions are the test split of the HDFS-sessions benchmark, split with the seed the checkpoint's
manifest recorded, so none of them built the checkpoint's vocabulary or picked its threshold (those come from the
train and validation parts). Each session's events are written as raw HDFS_v1 lines, header included
(``081109 203615 148 INFO dfs.DataNode: ...``), with a block id of its own; ``--concurrent`` sessions are open at
once and their lines interleave, each session closed (``POST /sequences/<key>/close``) after its last line. The
service runs with its default flags apart from what the run needs (``--warmup-s``: the novelty warm-up of a new
source, default 3600 s, i.e. the rules wait an hour; 0 measures a source past its warm-up; ``--explain-top-k``:
explanations follow the verdict and never change it, 0 saves the shared machine their time). Prints FPR, recall,
precision, F1 and F1 projected to HDFS's 2.93% anomalous sessions, and the verdicts' reasons.

    python -m bench.first_run --normal 971 --anomalous 1000 --warmup-s 0
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import (
    ServiceProcess,
    base_parser,
    machine,
    machine_line,
    resolve_checkpoint,
    result_name,
    table,
    write_result,
)

HDFS_PREVALENCE = 0.0293
HEADER = "081109 203615 148 INFO dfs.DataNode: "
IP, PEER, SIZE = "10.251.43.21:50010", "/10.250.19.102:54106", "67108864"
# event number -> the values of its template's <*> in order ("{blk}": the session's block id); what a real
# HDFS_v1 line of that event holds there, so that preprocessing the line's content gives the benchmark's message
FILLS: dict[int, list[str]] = {
    1: ["{blk}"], 2: ["{blk}"], 3: [IP, "{blk}", "/10.251.43.22"], 4: [IP, "{blk}", "/10.251.43.22"],
    5: ["{blk}", PEER, "/" + IP], 6: ["{blk}", PEER, "/" + IP, SIZE],
    7: ["{blk}", "java.net.SocketTimeoutException:480000"], 8: ["1", "{blk}", "java.io.InterruptedIOException:1"],
    9: ["{blk}", SIZE, "/10.251.43.22"], 10: ["{blk}", "java.io.EOFException:2"], 11: ["2", "{blk}"],
    12: ["{blk}", IP], 13: ["{blk}"], 14: ["{blk}"], 15: ["{blk}", "0", "4096", "39"], 16: ["{blk}", "/" + IP],
    17: ["{blk}", IP, "java.io.IOException:104"], 18: [IP, "{blk}", "10.251.43.22:50010"], 19: ["{blk}"],
    20: ["{blk}", "/mnt/hadoop/dfs/data/current"], 21: ["{blk}", "/mnt/hadoop/dfs/data/current/subdir3/{blk}"],
    22: ["/user/root/rand/_temporary/_task_200811092030_0001_m_000590_0/part-00590.", "{blk}"],
    23: ["{blk}", IP], 24: ["{blk}", "/mnt/hadoop/mapred"], 25: [IP, "{blk}", "10.251.43.22:50010"],
    26: [IP, "{blk}", SIZE], 27: ["{blk}", IP, SIZE], 28: ["{blk}", IP, SIZE], 29: ["{blk}"], 30: [IP, "{blk}"],
}  # fmt: skip


def raw_forms(templates_csv: Path) -> dict[str, str]:
    """Benchmark message -> a raw HDFS line of that event with ``{blk}`` for the block id, each checked: the hdfs
    format and preprocessing turn it back into the message the model and the vocabulary know."""
    from model.log_formats import parse_line
    from model.preprocess import preprocess
    from training.data_hdfs import hdfs_event_messages

    forms: dict[str, str] = {}
    for number, message in hdfs_event_messages(templates_csv).items():
        pieces = message.split("<*>")
        fills = FILLS[number]
        if len(pieces) != len(fills) + 1:
            raise RuntimeError(f"E{number} {message!r}: {len(pieces) - 1} placeholders, {len(fills)} values")
        content = pieces[0] + "".join(fill + piece for fill, piece in zip(fills, pieces[1:], strict=True))
        line = HEADER + content
        back = preprocess(parse_line(line.replace("{blk}", "blk_-1608999687919862906"), "hdfs").content)
        if back != message:
            raise RuntimeError(f"E{number}: the raw line preprocesses to {back!r}, not {message!r}")
        forms[message] = line
    return forms


def held_out(data: Path, seed: int, normal: int | None, anomalous: int | None, sample_seed: int) -> list[Any]:
    """The test split of hdfs-sessions (the checkpoint's seed), optionally a seeded sample of each class."""
    from training.datasets import load_splits
    from training.settings import DataSettings

    splits = load_splits(DataSettings(dataset="hdfs-sessions", data=data, seed=seed))
    rng = random.Random(sample_seed)
    chosen: list[Any] = []
    for label, limit in ((0, normal), (1, anomalous)):
        part = [s for s in splits.test if s.label == label]
        chosen.extend(part if limit is None or limit >= len(part) else rng.sample(part, limit))
    rng.shuffle(chosen)
    return chosen


def stream(url: str, sessions: list[tuple[str, list[str]]], concurrent: int, request_lines: int) -> list[str]:
    """Interleave the sessions' lines (``concurrent`` open at once) into text/plain POSTs; close each session
    after its last line. Returns the window ids in close order."""
    import httpx

    closed: list[str] = []
    pending = list(reversed(sessions))
    open_now: list[tuple[str, list[str]]] = []
    body: list[str] = []
    ending: list[str] = []
    with httpx.Client(base_url=url, timeout=120) as client:

        def flush() -> None:
            if body:
                while True:
                    answer = client.post("/logs", content="\n".join(body), headers={"Content-Type": "text/plain"})
                    if answer.status_code != 429:
                        break
                    time.sleep(float(answer.headers.get("Retry-After", "1")))  # back-pressure, as a shipper does
                answer.raise_for_status()
                rejected = answer.json()["rejected"]
                if rejected:
                    raise RuntimeError(f"lines rejected: {rejected[:3]}")
                body.clear()
            for key in ending:
                answer = client.post(f"/sequences/{key}/close")
                if answer.status_code != 404:  # 404: closed already, at max_session_lines (128, as trained)
                    answer.raise_for_status()
                closed.append(key)
            ending.clear()

        while pending or open_now:
            while pending and len(open_now) < concurrent:
                key, lines = pending.pop()
                open_now.append((key, list(reversed(lines))))
            still: list[tuple[str, list[str]]] = []
            for key, lines in open_now:
                body.append(lines.pop())
                if lines:
                    still.append((key, lines))
                else:
                    ending.append(key)
            open_now = still
            if len(body) >= request_lines or ending:
                flush()
        flush()
    return closed


def verdicts(url: str, keys: list[str], timeout_s: float) -> dict[str, dict[str, Any]]:
    """Every window's verdict, polled until none is pending."""
    import httpx

    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url, timeout=30) as client:
        while len(found) < len(keys) and time.monotonic() < deadline:
            for key in keys:
                if key not in found:
                    answer = client.get(f"/sequences/{key}/verdict").json()
                    if answer.get("status") not in (None, "pending"):
                        found[key] = answer
            if len(found) < len(keys):
                time.sleep(2.0)
    return found


def figures(labels: dict[str, int], found: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from training.metrics import project_to_prevalence

    tp = fp = fn = tn = 0
    for key, label in labels.items():
        flagged = found[key]["status"] == "anomalous"
        tp += flagged and label == 1
        fp += flagged and label == 0
        fn += not flagged and label == 1
        tn += not flagged and label == 0
    recall = tp / (tp + fn) if tp + fn else 0.0
    fpr = fp / (fp + tn) if fp + tn else None
    precision = tp / (tp + fp) if tp + fp else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    projected = project_to_prevalence(recall, fpr, HDFS_PREVALENCE)
    reasons = Counter(f"{'anomalous' if labels[k] else 'normal'}:{v.get('reason') or '-'}" for k, v in found.items())
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn, "fpr": fpr, "recall": recall, "precision": precision, "f1": f1,
            "projected_f1": projected.get("f1"), "projected_precision": projected.get("precision"),
            "reasons": dict(sorted(reasons.items()))}  # fmt: skip


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], "first_run")
    parser.add_argument("--checkpoint", help="checkpoint to serve (default checkpoints/default)")
    parser.add_argument("--normal", type=int, help="normal test sessions (default all 971)")
    parser.add_argument("--anomalous", type=int, default=1000, help="anomalous test sessions (of 3368)")
    parser.add_argument("--sample-seed", type=int, default=7, help="seed of the sample and the streaming order")
    parser.add_argument("--concurrent", type=int, default=32, help="sessions open at once (interleaved)")
    parser.add_argument("--request-lines", type=int, default=200, help="lines per POST at most")
    parser.add_argument("--warmup-s", type=float, help="LOGLLM_NOVELTY_WARMUP_S (default: the service's, 3600)")
    parser.add_argument("--explain-top-k", type=int, default=0, help="LOGLLM_EXPLAIN_TOP_K (verdicts unchanged)")
    parser.add_argument("--timeout-s", type=float, default=7200, help="give up waiting for verdicts after this")
    args = parser.parse_args()
    import json

    checkpoint = resolve_checkpoint(args.checkpoint)
    seed = int(json.loads((checkpoint / "manifest.json").read_text())["training"].get("seed", 42))
    if args.quick:
        args.normal, args.anomalous = 20, 20
    forms = raw_forms(args.data / "HDFS" / "HDFS_templates.csv")
    chosen = held_out(args.data, seed, args.normal, args.anomalous, args.sample_seed)
    labels: dict[str, int] = {}
    sessions: list[tuple[str, list[str]]] = []
    for number, sequence in enumerate(chosen):
        block = f"blk_{7_000_000_000 + number}"
        key = f"session:default:{block}"
        labels[key] = sequence.label
        sessions.append((key, [forms[m].replace("{blk}", block) for m in sequence.messages]))
    settings: dict[str, Any] = {"explain_top_k": args.explain_top_k}
    if args.warmup_s is not None:
        settings["novelty_warmup_s"] = args.warmup_s
    info = machine(with_torch=True)
    print(machine_line(info))
    print(f"{len(sessions)} held-out sessions ({sum(labels.values())} anomalous), "
          f"{sum(len(s[1]) for s in sessions)} raw lines; service settings {settings}")  # fmt: skip
    with ServiceProcess(checkpoint, settings) as service:
        started = time.perf_counter()
        keys = stream(service.url, sessions, args.concurrent, args.request_lines)
        found = verdicts(service.url, keys, args.timeout_s)
        elapsed = time.perf_counter() - started
        log = service.log_path.read_text(errors="replace")
        reading = [line.split(": ", 1)[-1] for line in log.splitlines() if "reading logs:" in line]
    missing = len(keys) - len(found)
    if missing:
        raise SystemExit(f"{missing} windows got no verdict within {args.timeout_s:.0f} s")
    result = figures(labels, found)
    print("\n".join(reading))
    print(table(["metric", "value"], [[k, v] for k, v in result.items() if k != "reasons"]))
    print("reasons:", result["reasons"])
    print(f"{len(keys)} windows in {elapsed:.0f} s ({len(keys) / elapsed:.2f} windows/s)")
    write_result(result_name(args), {"settings": settings, "sessions": len(keys), "anomalous": sum(labels.values()),
                                     "seconds": elapsed, "reading": reading, **result}, info)  # fmt: skip


if __name__ == "__main__":
    main()
