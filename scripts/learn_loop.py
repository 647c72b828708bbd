"""The loop of #31 measured end to end: a new system's logs in, its own model out, served, on raw lines.

For each of Apache, Hadoop, OpenStack and Spark (Loghub samples, systems the shipped HDFS model never saw), all four
at once, each on its own clock, through one live ``logllm serve`` (embedded Redis, ``--models '{}'``):

1. stream the first ``--first-lines`` lines of the system's log into source S (its warm-up: templates of windows
   that come out normal are learned, nothing is flagged for novelty);
2. train S's own model and register it: ``logllm train --from-service URL --source S --unlabeled --register`` on
   the windows the service kept (``--keep-normal-sample``; ``--train-from file``: the first part as a file,
   offline, then ``POST /models``), the own-logs recipe of docs/training.md on the shipped tiny backbones;
   "serving" is when a worker reports the model loaded (``GET /models``);
3. stream the rest of the log with faults injected, each inside one fixed window (``with_faults``):
   ``foreign``: 3 consecutive lines of another of the four systems, put in the middle of the window;
   ``burst``: the system's own rarest error/warning line of the first part (its rarest line if it has none)
   10 times in a row, in place of 10 of the window's lines;
   ``drop``: a step left out of a sequence: the template pair (A, B) of the first part where B most reliably
   follows A within 3 lines (A seen at least 5 times) gives the step B, removed after an A in the window (the
   window takes the next line instead).

Then the policies of item 5, side by side on copies of each source (``S-flag``, ``S-unless_normal``,
``S-annotate`` with their own ``novelty`` in ``--sources``, and ``S-before``, which never gets its own model), each
with the same warm-up, model and faults as S: clean windows flagged against faults caught, per policy, over the
four systems together (``--no-policies`` skips them).

Writes bench/results/<--name>.json (default learn_loop.json). Load averages are taken at every step: the machine
is shared, and training is CPU-bound (2026-12-06, load 13-20 on two cores: 31-45 minutes to each own model; the
recipe alone takes about 2 minutes on a quiet machine).

    .venv/bin/python scripts/learn_loop.py                      # all four systems, through the service
    .venv/bin/python scripts/learn_loop.py --train-from file    # the same, trained offline from the file
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import DEFAULT_DATA, ServiceProcess, machine, table, write_result  # noqa: E402
from model.preprocess import preprocess  # noqa: E402

# The fast recipe of docs/training.md ("Train on your own logs"), the shipped tiny backbones.
# own-logs (training/settings.py) is the same, and the default of --from-service; written out for the file path.
RECIPE = ["--unlabeled", "--seed", "42", "--stage1-samples", "96", "--max-train-samples", "256", "--stage2-epochs",
          "1", "--stage3-epochs", "1", "--lr", "5e-4", "--batch-size", "8", "--micro-batch-size", "4"]  # fmt: skip
FOREIGN_LINES = 3
BURST_LINES = 10
STEP_WITHIN = 3  # B follows A within this many lines
ERROR_LEVEL = re.compile(r"\b(?:error|ERROR|WARN|WARNING)\b")
KINDS = ("foreign", "burst", "drop")
POLICIES = ("flag", "unless_normal", "annotate")  # the main source S runs the service's default for own models


@dataclass(frozen=True)
class System:
    source: str  # the source name the lines are sent under
    folder: str  # in the shared data directory: <folder>/<folder>_2k.log
    window: int  # fixed windows of this many lines, step the same
    foreign_from: str  # the system whose lines are the foreign fault


# Fixed windows of 20 (the baseline) for all four: each system's recurring cycles (Apache's child
# init/ok/error triples, Spark's assign/run/finish of a task, OpenStack's request lines between image-cache
# passes, Hadoop's allocator and lease renewals) repeat several times within 20 lines, so a clean window looks
# like the others; a fault of 1-10 lines leaves at least half of its window normal context; and 1,200 lines make
# 60 training windows, 800 make 40 to score.
SYSTEMS = (
    System("apache", "Apache", 20, "hadoop"),
    System("hadoop", "Hadoop", 20, "openstack"),
    System("openstack", "OpenStack", 20, "spark"),
    System("spark", "Spark", 20, "apache"),
)


@dataclass
class Window:
    start: int  # index of its first line in the source's numbering (the fixed window id's number)
    kind: str  # clean, or the fault it holds
    lines: list[str]


@dataclass
class Step:
    name: str
    seconds: float
    load: tuple[float, float, float]


@dataclass
class Outcome:
    """What the service decided on the windows of one source's rest."""

    clean: int = 0
    clean_flagged: int = 0
    faults: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    caught: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    reasons: Counter[str] = field(default_factory=Counter)  # reasons of flagged clean windows
    missed: list[dict[str, Any]] = field(default_factory=list)

    def add(self, window: Window, verdict: dict[str, Any]) -> None:
        flagged = verdict.get("status") == "anomalous"
        if window.kind == "clean":
            self.clean += 1
            self.clean_flagged += flagged
            if flagged:
                self.reasons[str(verdict.get("reason"))] += 1
            return
        self.faults[window.kind] += 1
        self.caught[window.kind] += flagged
        if not flagged:
            self.missed.append({"start": window.start, "kind": window.kind, "score": verdict.get("score"),
                                "threshold": verdict.get("threshold")})  # fmt: skip

    def merge(self, other: Outcome) -> Outcome:
        out = Outcome(self.clean + other.clean, self.clean_flagged + other.clean_flagged)
        for kind in KINDS:
            out.faults[kind] = self.faults[kind] + other.faults[kind]
            out.caught[kind] = self.caught[kind] + other.caught[kind]
        out.reasons = self.reasons + other.reasons
        out.missed = self.missed + other.missed
        return out

    def summary(self) -> dict[str, Any]:
        faults, caught = sum(self.faults.values()), sum(self.caught.values())
        return {
            "clean_windows": self.clean, "clean_flagged": self.clean_flagged,
            "clean_flagged_share": round(self.clean_flagged / self.clean, 4) if self.clean else None,
            "faults": faults, "caught": caught, "caught_share": round(caught / faults, 4) if faults else None,
            "per_kind": {k: f"{self.caught[k]}/{self.faults[k]}" for k in KINDS},
            "flag_reasons": dict(self.reasons), "missed": self.missed,
        }  # fmt: skip


# -- the data and the faults -----------------------------------------------------------------------------------------
def read_log(data: Path, folder: str) -> list[str]:
    return (data / folder / f"{folder}_2k.log").read_text(errors="replace").splitlines()


def burst_line(first: Sequence[str]) -> str:
    """The system's rarest error/warning line of the first part (its rarest line when it wrote none)."""
    pool = [line for line in first if ERROR_LEVEL.search(line)] or list(first)
    counts = Counter(preprocess(line) for line in pool)
    rarest = min(counts, key=lambda t: (counts[t], t))
    return next(line for line in pool if preprocess(line) == rarest)


def step_pair(first: Sequence[str]) -> tuple[str, str]:
    """(A, B): the templates of the first part where B most reliably follows A within STEP_WITHIN lines."""
    templates = [preprocess(line) for line in first]
    counts = Counter(templates)
    follows: Counter[tuple[str, str]] = Counter()
    for i, a in enumerate(templates):
        for b in set(templates[i + 1 : i + 1 + STEP_WITHIN]) - {a}:
            follows[(a, b)] += 1
    scored = [(n / counts[a], n, a, b) for (a, b), n in follows.items() if counts[a] >= 5]
    _, _, a, b = max(scored)
    return a, b


def drop_step(lines: Sequence[str], pair: tuple[str, str], size: int) -> list[str] | None:
    """``size`` lines of ``lines[:size + 1]`` with the first B that follows an A (within STEP_WITHIN) removed."""
    templates = [preprocess(line) for line in lines[: size + 1]]
    for i, t in enumerate(templates):
        if t != pair[0]:
            continue
        for j in range(i + 1, min(i + 1 + STEP_WITHIN, len(templates))):
            if templates[j] == pair[1]:
                return [*lines[:j], *lines[j + 1 : size + 1]]
    return None


def with_faults(rest: Sequence[str], first: Sequence[str], foreign: Sequence[str], size: int, offset: int,
                per_kind: int, seed: int) -> list[Window]:  # fmt: skip
    """The rest cut into windows of ``size``, ``per_kind`` faults of each kind spread over them (every fourth
    window from the third on, kinds in turn); a drop that finds no step in its window moves to the next one."""
    rng = random.Random(seed)
    burst, pair = burst_line(first), step_pair(first)
    todo = [kind for _ in range(per_kind) for kind in KINDS]
    windows: list[Window] = []
    pos, postponed = 0, False
    while pos + size + 1 <= len(rest):
        slot = len(windows) >= 2 and (len(windows) - 2) % 4 == 0
        kind = todo[0] if todo and (slot or postponed) else "clean"
        body: list[str] | None = None
        if kind == "foreign":
            at = rng.randrange(len(foreign) - FOREIGN_LINES)
            half = (size - FOREIGN_LINES) // 2
            body = [*rest[pos : pos + half], *foreign[at : at + FOREIGN_LINES],
                    *rest[pos + half : pos + size - FOREIGN_LINES]]  # fmt: skip
            pos += size - FOREIGN_LINES
        elif kind == "burst":
            body = [*rest[pos : pos + 5], *[burst] * BURST_LINES, *rest[pos + 5 : pos + size - BURST_LINES]]
            pos += size - BURST_LINES
        elif kind == "drop":
            body = drop_step(rest[pos:], pair, size)
            postponed = body is None
            pos += size + 1 if body is not None else 0
        if body is None:
            kind, body = "clean", list(rest[pos : pos + size])
            pos += size
        else:
            todo.pop(0)
        windows.append(Window(offset + len(windows) * size, kind, body))
    if todo:
        raise SystemExit(f"not enough lines for the faults: {todo} left over")
    return windows


# -- the service -----------------------------------------------------------------------------------------------------
class Service:
    def __init__(self, process: ServiceProcess) -> None:
        import httpx

        self.process = process
        self.http = httpx.Client(base_url=process.url, timeout=120)

    def send(self, source: str, lines: Sequence[str], chunk: int = 400) -> None:
        for i in range(0, len(lines), chunk):
            body = "\n".join(lines[i : i + chunk]) + "\n"
            answer = self.http.post("/logs", params={"source": source}, content=body.encode(),
                                    headers={"Content-Type": "text/plain"})  # fmt: skip
            answer.raise_for_status()
            rejected = answer.json().get("rejected") or []
            if rejected:
                raise SystemExit(f"{source}: lines rejected: {rejected[:3]}")

    def verdicts(self, ids: Sequence[str], timeout_s: float = 1800.0) -> dict[str, dict[str, Any]]:
        """Each window's verdict, once every one has been scored: asked in order, each pass stops at the first
        still pending (windows are scored about in order), so polling costs the serving process little."""
        found: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout_s
        while len(found) < len(ids):
            for window_id in ids:
                if window_id in found:
                    continue
                answer = self.http.get(f"/sequences/{window_id}/verdict")
                if answer.status_code != 200 or answer.json()["status"] == "pending":
                    break
                found[window_id] = answer.json()
            if len(found) < len(ids):
                if time.monotonic() > deadline:
                    raise SystemExit(f"verdicts missing after {timeout_s:.0f} s: {sorted(set(ids) - set(found))[:5]}")
                time.sleep(0.5)
        return found

    def register(self, source: str, checkpoint: Path) -> str:
        answer = self.http.post("/models", json={"source": source, "checkpoint": str(checkpoint)})
        if answer.status_code != 202:
            raise SystemExit(f"POST /models for {source}: {answer.status_code} {answer.text[:300]}")
        return str(answer.json()["version"])

    def wait_warmed(self, sources: Sequence[str], timeout_s: float = 3600.0) -> None:
        """Until every source is past its novelty warm-up, by the service's own ``warm_up_until`` (``GET /sources``):
        the warm-up starts when a source's first window is scored, which under load is well after its first line
        was sent, so a wait counted from the script's clock let faults through in the warm-up's last seconds."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            items = {i["source"]: i for i in self.http.get("/sources").json()["items"]}
            until = [items.get(s, {}).get("warm_up_until") for s in sources]
            if all(u is not None for u in until):
                left = max(float(u) for u in until if u is not None) + 0.5 - time.time()
                if left <= 0:
                    return
                time.sleep(min(left, 5.0))
            else:
                time.sleep(0.5)
        raise SystemExit(f"{sources} still warming up after {timeout_s:.0f} s")

    def wait_serving(self, sources: Sequence[str], version: str, timeout_s: float = 300.0) -> None:
        """Until a worker reports ``version`` loaded for every source."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            workers = self.http.get("/models").json()["workers"].values()
            if any(all(w.get("models", {}).get(s, {}).get("version") == version for s in sources) for w in workers):
                return
            time.sleep(0.25)
        raise SystemExit(f"{version} not serving {sources} after {timeout_s:.0f} s: {self.http.get('/models').text}")


def window_ids(source: str, windows: Sequence[Window]) -> list[str]:
    return [f"fixed:{source}:{w.start}" for w in windows]


def first_windows(lines: Sequence[str], size: int) -> list[Window]:
    return [Window(i, "clean", list(lines[i : i + size])) for i in range(0, len(lines) - size + 1, size)]


def stream(service: Service, source: str, windows: Sequence[Window]) -> dict[str, dict[str, Any]]:
    service.send(source, [line for w in windows for line in w.lines])
    return service.verdicts(window_ids(source, windows))


def judge(source: str, windows: Sequence[Window], verdicts: dict[str, dict[str, Any]]) -> Outcome:
    outcome = Outcome()
    for window, window_id in zip(windows, window_ids(source, windows), strict=True):
        outcome.add(window, verdicts[window_id])
    return outcome


# -- training --------------------------------------------------------------------------------------------------------
TRAINING: list[subprocess.Popen[bytes]] = []  # stopped with the script


def train(system: System, first: Sequence[str], work: Path, args: argparse.Namespace,
          url: str) -> tuple[Path, str, bool]:  # fmt: skip
    """``--train-from service`` (the default): ``logllm train --from-service URL --source S --unlabeled --register``,
    on the windows the service kept of S (``--keep-normal-sample``); ``file``: the offline path, the first part as
    a file (the lines exactly as streamed) and ``--dataset text``, registered by the script. ``--reuse``: a
    checkpoint an earlier run left in the work directory is taken as it is (no training time)."""
    output = work / "models" / system.source
    log = work / f"{system.source}-train.log"
    if args.reuse and (output / "manifest.json").is_file():
        return output, _threshold_line(log), True
    common = ["--output", str(output), "--torch-threads", str(args.torch_threads), *RECIPE]
    if args.train_from == "service":
        command = [sys.executable, "-m", "logllm_cli", "train", "--from-service", url, "--source", system.source,
                   "--register", *common]  # fmt: skip
    else:
        data = work / f"{system.source}-first.log"
        data.write_text("\n".join(first) + "\n")
        command = [sys.executable, "-m", "logllm_cli", "train", "--dataset", "text", "--data", str(data),
                   "--log-format", "raw", "--window-mode", "fixed", "--window-size", str(system.window),
                   "--window-step", str(system.window), *common]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        TRAINING.append(process)
        if process.wait() != 0:
            raise SystemExit(f"training {system.source} failed ({process.returncode}); see {log}")
    return output, _threshold_line(log), False


def _threshold_line(log: Path) -> str:
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    return next((line for line in lines if line.startswith("threshold")), "")


# -- the run ---------------------------------------------------------------------------------------------------------
def load() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


def run_system(service: Service, system: System, logs: dict[str, list[str]], args: argparse.Namespace,
               work: Path) -> dict[str, Any]:  # fmt: skip
    lines = logs[system.source]
    first, rest = lines[: args.first_lines], lines[args.first_lines :]
    steps: list[Step] = []
    t0 = time.monotonic()
    mark = t0

    def step(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        steps.append(Step(name, round(now - mark, 1), load()))
        print(f"  {system.source}: {name} {now - mark:.1f} s (at {now - t0:.1f} s, load {load()[0]})", flush=True)
        mark = now

    warmup = first_windows(first, system.window)
    warm_verdicts = stream(service, system.source, warmup)
    step("first part streamed and scored")
    checkpoint, summary, reused = train(system, first, work, args, service.process.url)
    step("trained" if not reused else "trained (reused: no training time)")
    if args.train_from == "service" and not reused:  # logllm train --register posted it and waited for the workers
        version = json.loads((checkpoint / "manifest.json").read_text())["version"]
    else:
        version = service.register(system.source, checkpoint)
    service.wait_serving([system.source], version)
    step("registered and serving")
    serving_s = time.monotonic() - t0
    service.wait_warmed([system.source])  # the source must be out of its warm-up before the faults come
    windows = with_faults(rest, first, logs[system.foreign_from], system.window, len(first), args.per_kind, args.seed)
    after = judge(system.source, windows, stream(service, system.source, windows))
    step("rest streamed and scored")
    own = sum(v.get("model_version") == version for v in warm_verdicts.values())
    return {
        "source": system.source, "window": system.window, "first_lines": len(first), "rest_lines": len(rest),
        "checkpoint": str(checkpoint), "version": version, "training": summary, "reused_checkpoint": reused,
        "seconds_to_own_model": round(serving_s, 1), "steps": [asdict(s) for s in steps],
        "warmup_flagged_by_default_model": sum(v["status"] == "anomalous" for v in warm_verdicts.values()),
        "warmup_windows": len(warm_verdicts), "warmup_scored_by_own": own,
        "burst_line": burst_line(first), "drop_step": list(step_pair(first)),
        "windows": windows, "after": after,
    }  # fmt: skip


def run_policies(service: Service, results: Sequence[dict[str, Any]], logs: dict[str, list[str]],
                 args: argparse.Namespace) -> dict[str, dict[str, Outcome]]:  # fmt: skip
    """The copies of each source: the same warm-up, model and faulted rest, judged by each policy; ``before`` keeps
    the default model (the state before the loop)."""
    copies = {r["source"]: {p: f"{r['source']}-{p}" for p in (*POLICIES, "before")} for r in results}
    warm: dict[str, list[Window]] = {}
    for result in results:
        first = logs[result["source"]][: args.first_lines]
        warm[result["source"]] = first_windows(first, result["window"])
        for name in copies[result["source"]].values():
            service.send(name, [line for w in warm[result["source"]] for line in w.lines])
    for result in results:
        for name in copies[result["source"]].values():
            service.verdicts(window_ids(name, warm[result["source"]]))
    for result in results:
        owned = [copies[result["source"]][p] for p in POLICIES]
        for name in owned:
            service.register(name, Path(result["checkpoint"]))
        service.wait_serving(owned, result["version"])
    service.wait_warmed([name for names in copies.values() for name in names.values()])
    out: dict[str, dict[str, Outcome]] = {}
    for result in results:
        for name in copies[result["source"]].values():
            service.send(name, [line for w in result["windows"] for line in w.lines])
    for result in results:
        for policy, name in copies[result["source"]].items():
            verdicts = service.verdicts(window_ids(name, result["windows"]))
            out.setdefault(policy, {})[result["source"]] = judge(name, result["windows"], verdicts)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared data directory (shared/data)")
    parser.add_argument("--systems", default=",".join(s.source for s in SYSTEMS), help="comma-separated sources")
    parser.add_argument("--first-lines", type=int, default=1200, help="lines streamed before the model is trained")
    parser.add_argument("--per-kind", type=int, default=3, help="faults of each kind per system")
    parser.add_argument("--warmup-s", type=float, default=300.0,
                        help="--novelty-warmup-s of the service: longer than scoring the first part takes")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch threads of each training (one per system)")
    parser.add_argument("--train-from", choices=("service", "file"), default="service",
                        help="service: logllm train --from-service (the service keeps a sample); file: the first part"
                        " as a file, offline")  # fmt: skip
    parser.add_argument("--reuse", action="store_true", help="take the checkpoints an earlier run left in --work")
    parser.add_argument("--no-policies", action="store_true", help="skip the policy comparison (item 5)")
    parser.add_argument("--seed", type=int, default=42, help="seeds where the foreign lines come from")
    parser.add_argument("--name", default="learn_loop", help="result file bench/results/<name>.json")
    parser.add_argument("--work", type=Path, default=None, help="working directory (default: a new temporary one)")
    args = parser.parse_args()
    chosen = [s for s in SYSTEMS if s.source in args.systems.split(",")]
    if not chosen or any(args.first_lines % s.window for s in chosen):  # the rest's windows must start where cut
        parser.error(f"--systems names none of {[s.source for s in SYSTEMS]}, or --first-lines {args.first_lines} is"
                     " not a multiple of every window size")  # fmt: skip
    logs = {s.source: read_log(args.data, s.folder) for s in SYSTEMS}
    work = args.work or Path(tempfile.mkdtemp(prefix="logllm-learn-loop-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"seed {args.seed}; work {work}; load {load()}", flush=True)
    windowing = {s.source: {"window_size": s.window, "window_step": s.window} for s in SYSTEMS}
    sources = {f"{s.source}-{p}" if p else s.source: {**windowing[s.source], **({"novelty": p} if p in POLICIES
               else {})} for s in SYSTEMS for p in ("", *POLICIES, "before")}  # fmt: skip
    settings = {
        "checkpoint": REPO / "checkpoints" / "default", "models": "{}", "window_mode": "fixed", "log_format": "raw",
        "novelty_warmup_s": args.warmup_s, "sources": json.dumps(sources), "models_poll_s": 0.5,
        "redis_data_dir": work / "redis", "keep_normal_sample": args.first_lines,  # room for every warm-up window
    }  # fmt: skip
    process = ServiceProcess(REPO / "checkpoints" / "default", settings, log_path=work / "serve.log")
    started = time.monotonic()
    process.start()
    print(f"service ready in {time.monotonic() - started:.1f} s, load {load()}", flush=True)
    service = Service(process)
    def stop(*_: object) -> None:  # SIGTERM: the trainings and the service go too (threads may be mid-wait)
        for training in TRAINING:
            training.kill()
        process.stop()
        os._exit(143)

    signal.signal(signal.SIGTERM, stop)
    try:
        with ThreadPoolExecutor(len(chosen)) as pool:  # the systems at once, each on its own clock
            results = list(pool.map(lambda system: run_system(service, system, logs, args, work), chosen))
        policies = {} if args.no_policies else run_policies(service, results, logs, args)
    finally:
        for training in TRAINING:
            training.kill()
        process.stop()
    return report(results, policies, args)


def report(results: Sequence[dict[str, Any]], policies: dict[str, dict[str, Outcome]],
           args: argparse.Namespace) -> int:  # fmt: skip
    rows = []
    for r in results:
        before = policies.get("before", {}).get(r["source"])
        after: Outcome = r["after"]
        b, a = (before.summary() if before else {}), after.summary()
        rows.append([r["source"], r["seconds_to_own_model"], r["steps"][1]["load"][0],
                     f"{b.get('clean_flagged', '-')}/{b.get('clean_windows', '-')}",
                     f"{a['clean_flagged']}/{a['clean_windows']}", f"{b.get('caught', '-')}/{b.get('faults', '-')}",
                     f"{a['caught']}/{a['faults']}"])  # fmt: skip
    total = Outcome()
    for r in results:
        total = total.merge(r["after"])
    print(table(["system", "s to own model", "load (1m) after training", "clean flagged before", "after",
                 "faults caught before", "after"], rows))  # fmt: skip
    policy_rows = []
    policy_out: dict[str, Any] = {}
    for policy, per_source in policies.items():
        merged = Outcome()
        for outcome in per_source.values():
            merged = merged.merge(outcome)
        s = merged.summary()
        policy_out[policy] = {"all": s, "per_source": {k: v.summary() for k, v in per_source.items()}}
        policy_rows.append([policy, f"{s['clean_flagged']}/{s['clean_windows']}", s["clean_flagged_share"],
                            f"{s['caught']}/{s['faults']}", s["caught_share"],
                            " ".join(f"{k} {v}" for k, v in s["per_kind"].items())])  # fmt: skip
    if policy_rows:
        print(table(["policy", "clean flagged", "share", "faults caught", "share", "per kind"], policy_rows))
    t = total.summary()
    print(f"all four, the service's default: {t['clean_flagged']}/{t['clean_windows']} clean windows flagged,"
          f" {t['caught']}/{t['faults']} faults caught; own model serving after at most"
          f" {max(r['seconds_to_own_model'] for r in results):.0f} s")  # fmt: skip
    payload = {
        "command": " ".join(["python scripts/learn_loop.py", *sys.argv[1:]]), "seed": args.seed,
        "first_lines": args.first_lines, "faults_per_kind": args.per_kind, "train_from": args.train_from,
        "warmup_s": args.warmup_s, "torch_threads": args.torch_threads, "recipe": RECIPE,
        "systems": [{k: v for k, v in r.items() if k not in ("windows", "after")} | {"after": r["after"].summary()}
                    for r in results],
        "all": t, "policies": policy_out,
    }  # fmt: skip
    write_result(args.name, payload, machine())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
