"""Webhooks end to end: the app, a real Redis and a real HTTP receiver; the outbox survives a restart."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from service.delivery.outbox import backoff_s
from tests.service.delivery_helpers import (
    Receiver,
    make_app,
    metric,
    nothing_left_to_send,
    plant,
    receiver,
    stop,
    wait_for,
)

__all__ = ["make_app", "receiver"]  # fixtures
SECRET = "s3cret-for-tests"
MakeApp = Callable[..., TestClient]


def test_one_signed_delivery_despite_two_failures_and_a_restart(make_app: MakeApp, receiver: Receiver) -> None:
    receiver.fail_first = 2
    hooks = [{"url": receiver.url, "secret": SECRET}]
    first = make_app(webhooks=hooks, webhook_backoff_s=1.0)
    window = plant(first, "blk_7", ["open blk_7", "disk error on blk_7"])
    plant(first, "blk_8", ["open blk_8", "all fine on blk_8"])  # normal: never pushed
    wait_for(lambda: receiver.requests, what="the first try")
    stop(first)  # a service restart between the tries: the retry is in Redis, not in this process
    restarted_at = time.time()
    second = make_app(webhooks=hooks, webhook_backoff_s=1.0)
    wait_for(receiver.accepted, timeout=20, what="the delivery after the restart")
    wait_for(lambda: nothing_left_to_send(second), what="an outbox with nothing left to send, even after every lease")

    assert [r.status for r in receiver.requests] == [500, 500, 200]
    assert receiver.requests[0].at < restarted_at < receiver.requests[-1].at
    assert len({r.headers["X-Logllm-Delivery"] for r in receiver.requests}) == 1  # one job, three tries
    (delivered,) = receiver.accepted()
    timestamp, signature = delivered.headers["X-Logllm-Timestamp"], delivered.headers["X-Logllm-Signature"]
    expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + delivered.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signature, "sha256=" + expected)
    body = json.loads(delivered.body)
    assert body["event"] == "anomaly"
    assert body["record"]["id"] == window
    assert body["record"]["status"] == "anomalous"
    assert body["record"]["score"] == pytest.approx(0.9)
    assert body["url"].endswith("/sequences/" + window.replace(":", "%3A"))
    assert metric(second, "logllm_deliveries_total") == 1
    assert metric(second, "logllm_delivery_retries_total") >= 1  # the try after the restart (first app: 1 more)


def test_after_max_attempts_a_push_goes_to_the_dead_letter(make_app: MakeApp, receiver: Receiver) -> None:
    receiver.fail_first = 1000
    app = make_app(webhooks=[{"url": receiver.url}], webhook_max_attempts=3, webhook_backoff_s=0.1)
    window = plant(app, "blk_9", ["disk error on blk_9"])
    delivery = app.app.state.delivery  # type: ignore[attr-defined]
    dead = wait_for(lambda: app.portal.call(delivery.outbox.dead), what="the dead letter")  # type: ignore[union-attr]
    time.sleep(0.8)
    assert len(receiver.requests) == 3
    assert dead[0]["window"] == window
    assert dead[0]["attempts"] == "3"
    assert dead[0]["last_error"].startswith("HTTP 500")
    assert metric(app, "logllm_delivery_dead_letters_total") == 1
    assert metric(app, "logllm_delivery_retries_total") == 2
    assert metric(app, "logllm_deliveries_total") == 0


def test_filters_pick_the_webhooks_that_want_a_window(make_app: MakeApp, receiver: Receiver) -> None:
    other = receiver.url.replace("/hook", "/other")
    hooks = [{"url": receiver.url, "sources": ["db"]}, {"url": other, "min_score": 0.95}]
    # fixed windows of one line: each line is a window of its source
    app = make_app(webhooks=hooks, window_mode="fixed", window_size=1, window_step=1)
    lines = [{"message": "disk error", "source": "db"}, {"message": "disk error", "source": "web"}]
    assert app.post("/logs", json={"lines": lines}).status_code == 200
    wait_for(receiver.accepted, what="a delivery")  # db: first hook only (score 0.9 < 0.95); web: neither
    time.sleep(1.0)
    assert [r.path for r in receiver.requests] == ["/hook"]
    assert json.loads(receiver.requests[0].body)["record"]["source"] == "db"


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    import random

    rng = random.Random(7)
    delays = [backoff_s(n, 1.0, 8.0, rng) for n in (1, 2, 3, 4, 5, 6)]
    for n, d in zip((1, 2, 3, 4, 5, 6), delays, strict=True):
        full = min(8.0, 2 ** (n - 1))
        assert full / 2 <= d <= full
    assert len(set(delays)) == len(delays)  # jittered


def test_two_replicas_push_each_anomaly_once(make_app: MakeApp, receiver: Receiver) -> None:
    """The outbox is safe with many replicas by idempotence: one job per (target, window) id, and a claim moves the
    job's due time a lease ahead atomically, so two delivery loops on one Redis never send a job twice."""
    hooks = [{"url": receiver.url}]
    replicas = [make_app(webhooks=hooks, consumer=f"replica-{i}") for i in range(2)]
    windows = [plant(replicas[i % 2], f"blk_{i}", [f"open blk_{i}", f"disk error on blk_{i}"]) for i in range(6)]
    wait_for(lambda: len(receiver.accepted()) >= len(windows), timeout=20, what="every anomaly pushed")
    for replica in replicas:  # both loops' reads acked; no job left for either, even after every lease
        wait_for(lambda replica=replica: nothing_left_to_send(replica), what="nothing left to send")
    assert [r.status for r in receiver.requests] == [200] * len(windows)
    assert sorted(json.loads(r.body)["record"]["id"] for r in receiver.requests) == sorted(windows)
