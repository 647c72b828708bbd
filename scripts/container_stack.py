"""The compose stack checked as an operator would use it (scripts/ci_checks.d/containers.sh runs it after `up`).

1. Every container healthy, and the proxy's /health/ready answers.
2. HDFS fixture lines replayed through the published port (each round renames the block ids, so every round is new
   sessions), every session closed and every verdict read back: each window scored exactly once across the workers
   (their verdict counters add up to the number of windows) and each verdict counts exactly the lines accepted.
3. Prometheus's /api/v1/targets: every api replica, every worker and Prometheus itself up.
4. A stream interrupted: sessions sent, half of them closed (queued for the workers) and the rest left open, then
   `compose restart api worker`; after it, every session accepted before the restart has its verdict, with every
   line, and new sessions sent after the restart do too.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
HDFS = (REPO / "tests" / "fixtures" / "hdfs" / "HDFS.log").read_text().splitlines()
BLOCK = re.compile(r"blk_(-?\d+)")
VERDICT = re.compile(r'^logllm_verdicts_total\{label="[^"]*"\} ([0-9.e+]+)$', re.M)


def say(message: str) -> None:
    print(f"containers: {message}", flush=True)


class Stack:
    def __init__(self, compose: list[str], url: str, prometheus: str) -> None:
        self.compose = compose
        self.url = url
        self.prometheus = prometheus
        self.http = httpx.Client(timeout=30)

    def run(self, *args: str) -> str:
        return subprocess.run([*self.compose, *args], check=True, capture_output=True, text=True, cwd=REPO).stdout

    def containers(self, service: str) -> list[str]:
        return self.run("ps", "-q", service).split()

    def wait_healthy(self, services: list[str], timeout_s: float) -> float:
        """Every container of ``services`` healthy (or running, without a healthcheck); seconds waited."""
        started = time.monotonic()
        while True:
            states = {}
            for service in services:
                for cid in self.containers(service):
                    states[f"{service}/{cid[:12]}"] = subprocess.run(
                        [
                            "docker",
                            "inspect",
                            "--format",
                            "{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}",
                            cid,
                        ],
                        check=True,
                        capture_output=True,
                        text=True,
                    ).stdout.strip()
            if states and all(state in ("healthy", "running") for state in states.values()):
                return time.monotonic() - started
            if any(state in ("unhealthy", "exited", "dead") for state in states.values()):
                raise SystemExit(f"containers: FAILED: {states}")
            if time.monotonic() - started > timeout_s:
                raise SystemExit(f"containers: FAILED: not healthy within {timeout_s:.0f} s: {states}")
            time.sleep(2)

    def wait_ready(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self.http.get(f"{self.url}/health/ready").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise SystemExit(f"containers: FAILED: {self.url}/health/ready not 200 within {timeout_s:.0f} s")

    def send(self, lines: list[str]) -> None:
        """One POST of text lines through the proxy; every line must be accepted."""
        response = self.http.post(
            f"{self.url}/logs", content="\n".join(lines) + "\n", headers={"Content-Type": "text/plain"}
        )
        body = response.json()
        if response.status_code != 200 or body["rejected"] or body["accepted"] != len(lines):
            raise SystemExit(f"containers: FAILED: POST /logs {response.status_code}: {str(body)[:300]}")

    def close(self, session: str) -> None:
        """Close a session's window; 404 when the idle sweep closed it first."""
        response = self.http.post(f"{self.url}/sequences/{session}/close")
        if response.status_code not in (200, 404):
            raise SystemExit(f"containers: FAILED: close {session}: {response.status_code} {response.text[:200]}")

    def verdicts(self, sessions: dict[str, int], timeout_s: float) -> dict[str, dict[str, Any]]:
        """Every session's verdict, polled until none is pending; each must count the lines sent for it."""
        found: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout_s
        while len(found) < len(sessions):
            for session in sessions.keys() - found.keys():
                response = self.http.get(f"{self.url}/sequences/session:default:{session}/verdict")
                if response.status_code == 200 and response.json()["status"] not in ("pending",):
                    found[session] = response.json()
            if time.monotonic() > deadline:
                missing = sorted(sessions.keys() - found.keys())
                raise SystemExit(f"containers: FAILED: {len(missing)} verdicts missing, e.g. {missing[:3]}")
            time.sleep(1)
        wrong = {
            s: (v["status"], v.get("n_lines"), sessions[s])
            for s, v in found.items()
            if v["status"] not in ("normal", "anomalous") or v.get("n_lines") != sessions[s]
        }
        if wrong:
            raise SystemExit(f"containers: FAILED: verdicts (status, lines, sent): {dict(list(wrong.items())[:5])}")
        return found

    def worker_verdicts(self) -> list[int]:
        """Each worker's logllm_verdicts_total (all labels), read inside its container."""
        code = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8001/metrics').read().decode())"
        counts = []
        for cid in self.containers("worker"):
            text = subprocess.run(
                ["docker", "exec", cid, "python", "-c", code], check=True, capture_output=True, text=True
            ).stdout
            counts.append(round(sum(float(v) for v in VERDICT.findall(text))))
        return counts

    def targets(self, expected: int, timeout_s: float = 120) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                active = self.http.get(f"{self.prometheus}/api/v1/targets").json()["data"]["activeTargets"]
            except (httpx.HTTPError, KeyError, ValueError):
                active = []
            if len(active) == expected and all(t["health"] == "up" for t in active):
                return active
            if time.monotonic() > deadline:
                seen = [
                    (t["labels"].get("role", t["labels"].get("job")), t["health"], t.get("lastError")) for t in active
                ]
                raise SystemExit(f"containers: FAILED: Prometheus targets, {expected} expected up: {seen}")
            time.sleep(3)


def sessions_of(rounds: range) -> tuple[list[str], Counter[str]]:
    """The fixture's lines once per round, block ids renamed per round: new sessions, real lines."""
    lines: list[str] = []
    for r in rounds:
        lines += [BLOCK.sub(lambda m, r=r: f"blk_{m.group(1)}{r:04d}", line) for line in HDFS]
    counts = Counter(m for line in lines for m in {m.group(0) for m in BLOCK.finditer(line)})  # once per session
    return lines, counts


def replay(stack: Stack, rounds: range, close: bool = True) -> Counter[str]:
    lines, counts = sessions_of(rounds)
    for start in range(0, len(lines), 200):
        stack.send(lines[start : start + 200])
    if close:
        for session in counts:
            stack.close(session)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compose", required=True, help="the compose command, e.g. 'docker compose'")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--api", type=int, default=2, help="api replicas (docker-compose.yml's default)")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--rounds", type=int, default=1, help="fixture replays per phase (40 lines, 133 sessions each)")
    parser.add_argument("--verdict-timeout-s", type=float, default=600)
    args = parser.parse_args()
    stack = Stack(shlex.split(args.compose), args.url, args.prometheus)

    waited = stack.wait_healthy(["redis", "api", "worker", "proxy", "prometheus"], timeout_s=900)
    stack.wait_ready()
    workers = stack.containers("worker")
    if len(workers) != args.workers:
        raise SystemExit(f"containers: FAILED: {len(workers)} workers, {args.workers} expected")
    say(f"stack healthy after {waited:.0f} s more: {len(stack.containers('api'))} api, {len(workers)} workers")

    started = time.monotonic()
    first = replay(stack, range(args.rounds))
    stack.verdicts(first, args.verdict_timeout_s)
    per_worker = stack.worker_verdicts()
    say(
        f"{len(HDFS) * args.rounds} lines, {len(first)} windows: every verdict read back in "
        f"{time.monotonic() - started:.0f} s; verdicts written per worker {per_worker}"
    )
    if sum(per_worker) != len(first):
        raise SystemExit(f"containers: FAILED: workers wrote {sum(per_worker)} verdicts for {len(first)} windows")

    active = stack.targets(expected=args.api + args.workers + 1)
    roles = Counter(t["labels"].get("role", t["labels"]["job"]) for t in active)
    say(f"Prometheus targets all up: {dict(roles)}")

    # A stream interrupted: half of its sessions closed (queued or being scored), half still open, then a restart.
    before, before_counts = sessions_of(range(100, 100 + args.rounds))
    for start in range(0, len(before), 200):
        stack.send(before[start : start + 200])
    closed_first = list(before_counts)[::2]
    for session in closed_first:
        stack.close(session)
    restart_at = time.monotonic()
    stack.run("restart", "api", "worker")
    stack.wait_healthy(["api", "worker", "proxy"], timeout_s=900)
    stack.wait_ready()
    say(
        f"api and worker restarted in {time.monotonic() - restart_at:.0f} s ({len(before)} lines accepted before,"
        f" {len(closed_first)} of {len(before_counts)} sessions closed)"
    )
    after = replay(stack, range(200, 200 + args.rounds), close=False)
    for session in before_counts.keys() | after.keys():
        stack.close(session)
    stack.verdicts(before_counts + after, args.verdict_timeout_s)
    say(
        f"after the restart: all {len(before_counts)} sessions accepted before it and {len(after)} sent after it"
        " have their verdicts, every line counted"
    )


if __name__ == "__main__":
    sys.exit(main())
