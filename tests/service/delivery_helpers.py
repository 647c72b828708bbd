"""What the delivery tests share: a real HTTP receiver, a keyword scorer, apps on the test Redis, binaries."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.delivery.worker import GROUP
from service.settings import ServiceSettings
from service.windows.store import _text
from tests.service.test_app import KeywordScorer
from tests.service.test_app import wait_for as app_wait_for


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """test_app's wait_for with a longer default: a push goes through the outbox first."""
    return app_wait_for(predicate, timeout, what)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    at: float
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    """A real HTTP server answering ``fail_first`` requests with 500, then 200; keeps every request."""

    fail_first: int = 0
    requests: list[Received] = field(default_factory=list)
    url: str = ""

    def accepted(self) -> list[Received]:
        return [r for r in self.requests if r.status == 200]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                status = 500 if len(state.requests) < state.fail_first else 200
                state.requests.append(Received(time.time(), self.path, dict(self.headers), body, status))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def make_app(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """Started apps (lifespan run) on the flushed test Redis with fast sweeps and retries; ``stop`` them or
    they stop at teardown."""
    clients: list[TestClient] = []

    def make(scorer: KeywordScorer | None = None, **overrides: Any) -> TestClient:
        options: dict[str, Any] = {
            "redis_url": redis_url, "checkpoint": tmp_path, "sweep_interval_s": 0.05, "max_batch_wait_ms": 5,
            "webhook_backoff_s": 0.2, "webhook_backoff_max_s": 2.0, "consumer": "delivery-test", **overrides,
        }  # fmt: skip
        for name in ("webhooks",):
            if name in options and not isinstance(options[name], str):
                options[name] = json.dumps(options[name])
        client = TestClient(create_app(ServiceSettings(**options), scorer=scorer or KeywordScorer()))
        client.__enter__()
        clients.append(client)
        wait_for(lambda: client.get("/health/ready").status_code == 200, what="ready")
        return client

    yield make
    for client in reversed(clients):
        stop(client)


def stop(client: TestClient) -> None:
    """Run the app's shutdown (idempotent), as a service restart does."""
    if getattr(client, "_stopped", False):
        return
    client.__exit__(None, None, None)
    client._stopped = True  # type: ignore[attr-defined]


def plant(client: TestClient, session: str, messages: Sequence[str], source: str | None = None) -> str:
    """POST the lines of one session, close it; the closed window's id."""
    lines = [{"message": m, "session_id": session} | ({"source": source} if source else {}) for m in messages]
    response = client.post("/logs", json={"lines": lines})
    assert response.status_code == 200, response.text
    key = f"session:{source or 'default'}:{session}"
    closed = client.post(f"/sequences/{key}/close")
    if closed.status_code == 404:  # the store still keys sessions by bare id (before the ids.py switch)
        closed = client.post(f"/sequences/{session}/close")
    assert closed.status_code == 200, closed.text
    return str(closed.json()["id"])


def nothing_left_to_send(client: TestClient) -> bool:
    """No push can ever be sent again, whatever time it is: every verdict the delivery group will see was read and
    acked, the outbox holds no job, and a claim with the clock an hour ahead (every lease run out) finds none.

    Tests that check "no duplicate" wait for this instead of sleeping: a duplicate needs a job left in the outbox
    (a re-published verdict finds its job done and is not enqueued again), so once it holds none the receiver's
    count is final.
    """
    delivery = client.app.state.delivery  # type: ignore[attr-defined]

    async def check() -> bool:
        redis = delivery.stream.redis
        if await delivery.outbox.pending():
            return False
        if await redis.exists(delivery.stream.key):
            last = (await redis.xinfo_stream(delivery.stream.key))["last-generated-id"]
            groups = {_text(g["name"]): g for g in await redis.xinfo_groups(delivery.stream.key)}
            group = groups.get(GROUP)
            if group is None or group["pending"] or _text(group["last-delivered-id"]) != _text(last):
                return False
        return not await delivery.outbox.claim(time.time() + 3600, 1.0, 100)

    return bool(client.portal.call(check))  # type: ignore[union-attr]


def metric(client: TestClient, name: str) -> float:
    """The sum of one metric's samples in /metrics (0 when absent)."""
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total
