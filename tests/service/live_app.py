"""The service under uvicorn on a loopback port, for tests whose client is a real HTTP library nobody here
wrote (OpenTelemetry's exporter, python-logging-loki), with a recording scorer in place of the model.

Verdicts are read back by id through GET /sequences/{id}/verdict; the ids are found by listing the verdict
keys in Redis, so these tests hold whichever window-id scheme the store writes.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import redis
import uvicorn

from service.app import WARMUP_SEQUENCE, create_app
from service.settings import ServiceSettings


class RecordingScorer:
    """Anomalous iff a message says 'error'; keeps every sequence it scored (the warm-up excluded)."""

    threshold = 0.5
    version = "recording-test"

    def __init__(self) -> None:
        self.scored: list[list[str]] = []
        self.lock = threading.Lock()
        self.gate = threading.Event()  # cleared by a test: scoring waits, closed windows stay queued (-> 429)
        self.gate.set()

    def score(self, sequences: Sequence[Sequence[str]]) -> list[float]:
        self.gate.wait()
        with self.lock:
            self.scored.extend(list(s) for s in sequences if [list(s)] != WARMUP_SEQUENCE)
        return [0.9 if any("error" in m.lower() for m in s) else 0.1 for s in sequences]


class StatusLog:
    """ASGI middleware that notes (path, status) of every answer, so a test sees what a shipper was told."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.answers: list[tuple[str, int]] = []
        self.times: list[float] = []  # time.monotonic() of each answer

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def noting(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.times.append(time.monotonic())
                self.answers.append((scope["path"], message["status"]))
            await send(message)

        await self.app(scope, receive, noting)

    def clear(self) -> None:
        self.answers.clear()
        self.times.clear()

    def count(self, path: str, status: int) -> int:
        return sum(1 for answer in list(self.answers) if answer == (path, status))

    def retry_gap(self, path: str, status: int) -> float:
        """Seconds from the first ``status`` answer on ``path`` to the next request there was answered."""
        answers, times = list(self.answers), list(self.times)
        first = answers.index((path, status))
        later = next(i for i in range(first + 1, len(answers)) if answers[i][0] == path)
        return times[later] - times[first]


@dataclass
class LiveApp:
    url: str
    scorer: RecordingScorer
    redis_url: str
    log: StatusLog
    headers: dict[str, str] = field(default_factory=dict)  # the bearer token when the app has one
    app: Any = None  # the FastAPI app (app.state: the syslog listeners' addresses)

    def verdict_ids(self) -> list[str]:
        with redis.Redis.from_url(self.redis_url) as client:
            return sorted(k.decode().split(":verdict:", 1)[1] for k in client.scan_iter("*:verdict:*"))

    def verdicts(self, lines: int, timeout: float = 15.0) -> dict[str, dict[str, Any]]:
        """Every verdict, once the scored windows hold ``lines`` lines in all (windows close on idle)."""
        deadline = time.monotonic() + timeout
        found: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            found = {}
            for window_id in self.verdict_ids():
                response = httpx.get(f"{self.url}/sequences/{quote(window_id, safe='')}/verdict", headers=self.headers)
                assert response.status_code == 200, response.text
                found[window_id] = response.json()
            done = [v for v in found.values() if v["status"] != "pending"]
            if len(done) == len(found) and sum(v["n_lines"] for v in done) >= lines:
                return found
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for verdicts over {lines} lines; have {found}")

    def scored_messages(self) -> list[list[str]]:
        with self.scorer.lock:
            return sorted(self.scorer.scored)

    def record_lines(self, window_id: str) -> list[tuple[str, str]]:
        """(raw, content) of a scored window's lines, from its record (normal windows keep lines only with
        normal_lines_retention_s)."""
        response = httpx.get(f"{self.url}/sequences/{quote(window_id, safe='')}", headers=self.headers)
        assert response.status_code == 200, response.text
        return [(x["raw"], x["content"]) for x in response.json()["lines"]]

    def metric(self, name: str, **labels: str) -> float:
        """One sample of /metrics (0 when absent); the client writes labels sorted by name."""
        wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
        for line in self.metrics().splitlines():
            if line.startswith(wanted + " "):
                return float(line.split()[-1])
        return 0.0

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics").text


@contextmanager
def live_app(
    redis_url: str, tmp_path: Path, scorer: RecordingScorer | None = None, real_model: bool = False, **overrides: Any
) -> Iterator[LiveApp]:
    """The app on a socket bound to port 0 (no race for a free port), ready, windows closing after 0.3 s idle;
    ``real_model``: the checkpoint (or ``--models``) scores, not the recording scorer."""
    options: dict[str, Any] = {
        "redis_url": redis_url,
        "checkpoint": tmp_path,
        "sweep_interval_s": 0.05,
        "max_batch_wait_ms": 5,
        "idle_timeout_s": 0.3,
        **overrides,
    }
    scorer = scorer or RecordingScorer()
    app = create_app(ServiceSettings(**options), scorer=None if real_model else scorer)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    log = StatusLog(app)
    server = uvicorn.Server(uvicorn.Config(log, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not (server.started and httpx.get(f"{url}/health/ready").status_code == 200):
            assert thread.is_alive() and time.monotonic() < deadline, "the service did not become ready"
            time.sleep(0.02)
        token = options.get("auth_token")
        yield LiveApp(url, scorer, redis_url, log, {"Authorization": f"Bearer {token}"} if token else {}, app)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
