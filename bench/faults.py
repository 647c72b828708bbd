"""Faults under load: is any acknowledged line lost, any window scored twice, any queue entry stuck?

Each scenario starts a fresh ``logllm serve`` (``bench.scorers:RecordingScorer`` as the scorer: instant, and it
records every window it scores) and runs concurrent clients that send N lines of known content, each line tagged
with a unique word, resending a request until it gets a 200 (as a log shipper does). Meanwhile the scenario's fault
happens:
- ``service-kill``: the service is SIGKILLed and restarted K times (its embedded Redis dies with it);
- ``redis-kill``: the embedded redis-server is SIGKILLed (the service's supervisor restarts it);
- ``external-redis-restart``: the service uses an external Redis (``--redis-url``), which is restarted K times;
- ``partitions-change``: half-way, the service is stopped and started with another ``--partitions``.
Then the queue is drained, every session is closed explicitly, drained again, and every verdict is read.

Columns: lines sent; acknowledged with 200; in verdicts (sum of n_lines over verdicts read through the API);
in open windows at the end (their lines were scored only after the final explicit close); lost (acknowledged,
never scored); windows scored twice (the same lines handed to the scorer again, e.g. after a kill before the ack);
entries stuck (ready-queue depth after the drain, plus windows whose verdict stayed pending).

    python -m bench.faults --lines 2000 --clients 4 --kills 2
"""

from __future__ import annotations

import json
import os
import signal
import string
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import ServiceProcess, base_parser, machine, machine_line, result_name, table, write_result
from service.windows.embedded_redis import PID_FILE, EmbeddedRedis, free_port

SCENARIOS = ("service-kill", "redis-kill", "external-redis-restart", "partitions-change")
DRAIN_TIMEOUT_S = 60.0


def tag(number: int) -> str:
    """A line's number as letters: the model's preprocessing masks digits, letters reach the scorer intact."""
    letters = ""
    number += 26**3  # at least four letters, so a tag is never a common word
    while number:
        number, digit = divmod(number, 26)
        letters = string.ascii_lowercase[digit] + letters
    return letters


@dataclass
class Load:
    """The lines of one scenario and what the clients saw."""

    lines: int
    clients: int
    sessions_per_client: int
    batch: int
    rate: float  # lines/s over all clients, so the faults land while lines are flowing
    acked: set[str] = field(default_factory=set)
    errors: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def session(self, client: int, i: int) -> str:
        return f"blk_{client * 1000 + i % self.sessions_per_client}"

    def client_lines(self, client: int) -> list[tuple[str, str]]:
        """(tag, message) of this client's lines; tags are unique over the scenario."""
        mine = range(client, self.lines, self.clients)
        return [(tag(n), f"{self.session(client, i)} fault bench line {tag(n)}") for i, n in enumerate(mine)]

    def sessions(self) -> list[str]:
        return sorted({self.session(c, i) for c in range(self.clients) for i in range(self.sessions_per_client)})

    def run_client(self, url: str, client: int, deadline: float) -> None:
        pending = self.client_lines(client)
        interval = self.batch * self.clients / self.rate
        with httpx.Client(base_url=url, timeout=10) as http:
            for start in range(0, len(pending), self.batch):
                time.sleep(interval)
                chunk = pending[start : start + self.batch]
                body = {"lines": [{"message": message} for _, message in chunk]}
                while time.monotonic() < deadline:
                    try:
                        response = http.post("/logs", json=body)
                        if response.status_code == 200:
                            with self.lock:
                                self.acked.update(t for t, _ in chunk)
                            break
                        reason = f"{response.status_code}"
                    except httpx.HTTPError as exc:
                        reason = type(exc).__name__
                    with self.lock:
                        self.errors[reason] += 1
                    time.sleep(0.2)


def metric(url: str, name: str) -> float | None:
    try:
        text = httpx.get(f"{url}/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def drain(url: str) -> float | None:
    """Wait until the ready queue is empty; returns its depth at the end (None: the service did not answer)."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    depth = metric(url, "logllm_ready_queue_depth")
    while time.monotonic() < deadline and depth != 0:
        time.sleep(0.3)
        depth = metric(url, "logllm_ready_queue_depth")
    return depth


def session_ids(http: httpx.Client, session: str) -> list[str]:
    """The window ids of a session that the service knows, in order: ``<base>``, ``<base>#1``, ... where base is
    the session id or (new id scheme) ``session:default:<session id>``; whichever the service answers for."""
    for base in (f"session:default:{session}", session):
        found: list[str] = []
        while True:
            window = base if not found else f"{base}#{len(found)}"
            if http.get(f"/sequences/{window.replace('#', '%23')}/verdict").status_code != 200:
                break
            found.append(window)
        if found:
            return found
    return []


def close_all(http: httpx.Client, sessions: list[str]) -> int:
    closed = 0
    for session in sessions:
        for key in (session, f"session:default:{session}"):
            if http.post(f"/sequences/{key}/close").status_code == 200:
                closed += 1
                break
    return closed


def read_scored(path: Path) -> list[frozenset[str]]:
    """The windows the scorer saw, as sets of line tags."""
    if not path.is_file():
        return []
    windows = []
    for text in path.read_text().splitlines():
        windows.append(frozenset(m.rsplit(" ", 1)[-1] for m in json.loads(text)))
    return windows


def run_scenario(name: str, load: Load, kills: int, checkpoint: Path, work: Path) -> dict[str, Any]:
    """One scenario from a fresh service and Redis to the final count."""
    scored_log = work / "scored.jsonl"
    data_dir = work / "redis"
    os.environ["LOGLLM_BENCH_SCORED_LOG"] = str(scored_log)
    settings: dict[str, Any] = {
        "scorer": "bench.scorers:RecordingScorer",
        "redis_data_dir": data_dir,
        "max_session_lines": 8,
        "idle_timeout_s": 3600,  # windows close by size during the run and explicitly at the end
        "reclaim_idle_ms": 2000,
        "partitions": 4,
        "explain_top_k": 0,  # explanations re-score variants, which the recording scorer would count as windows
    }
    external: EmbeddedRedis | None = None
    if name == "external-redis-restart":
        external = EmbeddedRedis(work / "external", port=free_port())
        settings["redis_url"] = external.start()
    service = ServiceProcess(checkpoint, settings, log_path=work / "serve.log")
    service.env["LOGLLM_REDIS_DATA_DIR"] = str(data_dir)
    notes: list[str] = []
    service.start(ready_timeout_s=120)

    def service_kill() -> None:
        service_process = service.process
        assert service_process is not None
        service_process.send_signal(signal.SIGKILL)
        service_process.wait()
        service.process = None
        service.start(ready_timeout_s=120)

    def redis_kill() -> None:
        pid = int((data_dir / PID_FILE).read_text())
        os.kill(pid, signal.SIGKILL)
        notes.append(f"SIGKILLed redis-server {pid}")

    def external_restart() -> None:
        assert external is not None
        external.stop()
        external.start()

    def partitions_change() -> None:
        service.stop()
        service.env["LOGLLM_PARTITIONS"] = "8"
        try:
            service.start(ready_timeout_s=60)
            notes.append("restarted with --partitions 8")
        except RuntimeError as exc:
            refusal = [line for line in str(exc).splitlines() if "partition" in line.lower()]
            notes.append(f"--partitions 8 refused: {(refusal or ['(no message naming partitions)'])[-1][:160]}")
            service.env["LOGLLM_PARTITIONS"] = "4"
            service.start(ready_timeout_s=60)

    fault: Callable[[], None] = {
        "service-kill": service_kill,
        "redis-kill": redis_kill,
        "external-redis-restart": external_restart,
        "partitions-change": partitions_change,
    }[name]
    times = 1 if name == "partitions-change" else kills
    deadline = time.monotonic() + 600
    clients = [
        threading.Thread(target=load.run_client, args=(service.url, c, deadline), daemon=True)
        for c in range(load.clients)
    ]
    started = time.perf_counter()
    for thread in clients:
        thread.start()
    for _ in range(times):
        target = len(load.acked) + load.lines // (times + 1)
        while len(load.acked) < min(target, load.lines * 0.9) and any(t.is_alive() for t in clients):
            time.sleep(0.05)
        fault()
    for thread in clients:
        thread.join()
    sent_seconds = time.perf_counter() - started
    try:
        service.start(ready_timeout_s=60) if service.process is None else None
        depth_before_close = drain(service.url)
        windows_before_close = len(read_scored(scored_log))
        with httpx.Client(base_url=service.url, timeout=10) as http:
            close_all(http, load.sessions())
            depth = drain(service.url)
            ids = [w for s in load.sessions() for w in session_ids(http, s)]
            verdicts = [http.get(f"/sequences/{w.replace('#', '%23')}/verdict").json() for w in ids]
    finally:
        service.stop()
        if external is not None:
            external.stop()
    scored = read_scored(scored_log)
    scored_lines = {t for window in scored for t in window}
    open_at_end = {t for window in scored[windows_before_close:] for t in window} - {
        t for window in scored[:windows_before_close] for t in window
    }
    counts = Counter(scored)
    pending = sum(1 for v in verdicts if v.get("status") == "pending")
    return {
        "scenario": name,
        "faults": times,
        "lines_sent": load.lines,
        "acked_200": len(load.acked),
        "in_verdicts": sum(int(v.get("n_lines") or 0) for v in verdicts),
        "in_open_windows": len(open_at_end & load.acked),
        "lost": len(load.acked - scored_lines),
        "scored_twice": sum(1 for n in counts.values() if n > 1),
        "stuck": int(depth or 0) + pending if depth is not None else None,
        "queue_before_close": depth_before_close,
        "client_errors": dict(load.errors),
        "seconds": round(sent_seconds, 1),
        "notes": notes,
    }


def main() -> None:
    parser = base_parser(__doc__.split("\n\n")[0], "faults")
    parser.add_argument("--lines", type=int, default=2000, help="lines per scenario")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients")
    parser.add_argument("--sessions", type=int, default=25, help="sessions per client")
    parser.add_argument("--batch", type=int, default=20, help="lines per request")
    parser.add_argument("--rate", type=float, default=200.0, help="lines/s sent by all clients together")
    parser.add_argument("--kills", type=int, default=2, help="K: service kills / Redis kills / restarts")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, help="run only these (repeatable)")
    args = parser.parse_args()
    if args.quick:
        args.lines, args.kills, args.sessions = 400, 1, 5
    info = machine()
    print(machine_line(info))
    rows = []
    checkpoint = Path(tempfile.mkdtemp(prefix="logllm-faults-checkpoint-"))  # unused: the scorer replaces it
    for name in args.scenario or SCENARIOS:
        load = Load(args.lines, args.clients, args.sessions, args.batch, args.rate)
        with tempfile.TemporaryDirectory(prefix=f"logllm-faults-{name}-") as work:
            row = run_scenario(name, load, args.kills, checkpoint, Path(work))
        print(f"  {name}: {json.dumps(row)}", flush=True)
        rows.append(row)
    headers = ["scenario", "faults", "sent", "acked 200", "in verdicts", "in open windows", "lost", "scored twice",
               "stuck"]  # fmt: skip
    keys = ["scenario", "faults", "lines_sent", "acked_200", "in_verdicts", "in_open_windows", "lost", "scored_twice",
            "stuck"]  # fmt: skip
    print(table(headers, [[row[k] for k in keys] for row in rows]))
    for row in rows:
        for note in row["notes"]:
            print(f"{row['scenario']}: {note}")
    write_result(result_name(args), {"settings": vars(args) | {"data": str(args.data)}, "rows": rows}, info)


if __name__ == "__main__":
    main()
