"""A webhook target that answers with a redirect: the push is not sent where the redirect points, each try is
a failure that says so (in the log and in the dead letter), and the push ends as a dead letter."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.service.delivery_helpers import Receiver, make_app, plant, receiver, wait_for

__all__ = ["make_app", "receiver"]  # fixtures


@pytest.fixture
def redirecting(receiver: Receiver) -> Iterator[str]:
    """A real HTTP server that answers every POST with 308 to the receiver."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(308)
            self.send_header("Location", receiver.url)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/old-hook"
    server.shutdown()
    server.server_close()


def test_a_redirecting_webhook_is_not_followed_and_says_where_it_pointed(
    make_app: Callable[..., TestClient], receiver: Receiver, redirecting: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="service.delivery.worker")
    app = make_app(webhooks=[{"url": redirecting}], webhook_max_attempts=2, webhook_backoff_s=0.1)
    plant(app, "blk_7", ["disk error on blk_7"])
    delivery = app.app.state.delivery  # type: ignore[attr-defined]
    dead = wait_for(lambda: app.portal.call(delivery.outbox.dead), what="the dead letter")  # type: ignore[union-attr]
    assert dead[0]["attempts"] == "2"
    assert dead[0]["last_error"].startswith(f"HTTP 308 redirect to {receiver.url!r}: pushes do not follow redirects")
    logged = [r.getMessage() for r in caplog.records if "redirect to" in r.getMessage()]
    assert len(logged) == 2 and "set the target's url to the address it redirects to" in logged[0]
    assert receiver.requests == []  # both tries went to the configured url only
