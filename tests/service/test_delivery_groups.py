"""Grouped webhooks (service/delivery/groups.py): a storm of anomalies becomes a few calls, on a driven clock.

The apps run for real (Redis, the delivery loop, a real HTTP receiver); only the delivery loop's clock is
frozen and moved by the test, so "not sent before group_wait" is a fact of the schedule, not of a sleep.
Fixed windows of one line: each line is an anomalous window of its source (the keyword scorer flags 'error').
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis
from fastapi.testclient import TestClient

from service.delivery.groups import group_id
from service.delivery.targets import WebhookTarget
from tests.service.delivery_helpers import Receiver, make_app, receiver, wait_for
from tests.service.test_delivery_webhooks import metric

__all__ = ["make_app", "receiver"]  # fixtures
WAIT_S, INTERVAL_S = 5.0, 30.0


class Clock:
    """The delivery loop's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def grouped_app(make_app: Any, receiver: Receiver, clock: Clock, **overrides: Any) -> TestClient:
    hooks = [{"url": receiver.url, "group_wait": WAIT_S, "group_interval": INTERVAL_S}]
    app: TestClient = make_app(webhooks=hooks, window_mode="fixed", window_size=1, window_step=1, **overrides)
    app.app.state.delivery.loop.clock = clock  # type: ignore[attr-defined]
    return app


def storm(app: TestClient, source: str, n: int, start: int = 0) -> None:
    lines = [{"message": f"disk error {start + i}", "source": source} for i in range(n)]
    assert app.post("/logs", json={"lines": lines}).status_code == 200


def group_state(redis_url: str, receiver: Receiver, source: str) -> tuple[int, float | None]:
    """(anomalies waiting in the group of this source and reason 'model', when the group is due)."""
    gid = group_id(WebhookTarget(url=receiver.url).target_id, source, "model")  # type: ignore[arg-type]
    with redis.Redis.from_url(redis_url) as r:
        return int(r.zcard(f"logllm:{{delivery}}:grp:{gid}")), r.zscore("logllm:{delivery}:gdue", gid)


def bodies(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in receiver.accepted()]


def test_a_storm_of_one_source_is_one_call_after_group_wait_then_one_per_interval(
    make_app: Any, receiver: Receiver, redis_url: str
) -> None:
    clock = Clock()
    t0 = clock.now
    app = grouped_app(make_app, receiver, clock)
    storm(app, "db", 100)
    storm(app, "web", 3)
    wait_for(lambda: metric(app, "logllm_verdicts_total") == 103, what="103 verdicts")  # records written
    wait_for(lambda: group_state(redis_url, receiver, "db")[0] == 100, what="100 anomalies in the db group")
    wait_for(lambda: group_state(redis_url, receiver, "web")[0] == 3, what="3 anomalies in the web group")
    assert group_state(redis_url, receiver, "db")[1] == t0 + WAIT_S  # due group_wait after its first anomaly
    assert receiver.requests == []  # the loop's clock has not reached it

    clock.now = t0 + WAIT_S
    wait_for(lambda: len(receiver.accepted()) == 2, what="one call per group")
    by_source = {b["source"]: b for b in bodies(receiver)}
    assert {s: (b["count"], b["reason"], b["event"]) for s, b in by_source.items()} == {
        "db": (100, "model", "anomalies"), "web": (3, "model", "anomalies"),
    }  # fmt: skip
    assert len({a["record"]["id"] for a in by_source["db"]["anomalies"]}) == 100
    assert all(a["record"]["source"] == "db" and a["url"] for a in by_source["db"]["anomalies"])
    wait_for(lambda: group_state(redis_url, receiver, "web") == (0, None), what="the web group emptied")

    clock.now = t0 + WAIT_S + 1  # more of the storm, after the group's call: they wait for group_interval
    storm(app, "db", 10, start=100)
    wait_for(lambda: group_state(redis_url, receiver, "db")[0] == 10, what="10 more in the db group")
    wait_for(lambda: metric(app, "logllm_verdicts_total") == 113, what="113 verdicts")
    assert group_state(redis_url, receiver, "db")[1] == t0 + WAIT_S + INTERVAL_S
    assert len(receiver.requests) == 2

    clock.now = t0 + WAIT_S + INTERVAL_S
    wait_for(lambda: len(receiver.accepted()) == 3, what="the interval's call")
    last = bodies(receiver)[-1]
    assert (last["source"], last["count"]) == ("db", 10)
    earlier = {a["record"]["id"] for a in by_source["db"]["anomalies"]}
    assert {a["record"]["id"] for a in last["anomalies"]}.isdisjoint(earlier)
    assert metric(app, "logllm_deliveries_total") == 3


def test_a_failed_group_is_retried_whole_and_two_replicas_send_it_once(
    make_app: Any, receiver: Receiver, redis_url: str
) -> None:
    receiver.fail_first = 1
    clock = Clock()
    t0 = clock.now
    replicas = [grouped_app(make_app, receiver, clock, consumer=f"replica-{i}") for i in range(2)]
    for i, app in enumerate(replicas):
        storm(app, "db", 6, start=10 * i)
    wait_for(lambda: sum(metric(a, "logllm_verdicts_total") for a in replicas) == 12, what="12 verdicts")
    wait_for(lambda: group_state(redis_url, receiver, "db")[0] == 12, what="12 anomalies in one group")

    clock.now = t0 + WAIT_S
    wait_for(lambda: len(receiver.requests) == 1, what="the first call (answered 500)")
    def retry_due() -> float | None:  # the claim's lease first, then the backoff (at most 2 s in make_app)
        due = group_state(redis_url, receiver, "db")[1]
        return due if due is not None and t0 + WAIT_S < due <= t0 + WAIT_S + 2.0 else None

    retry_at = wait_for(retry_due, what="the retry's time")
    clock.now = retry_at
    wait_for(receiver.accepted, what="the retry")
    assert [r.status for r in receiver.requests] == [500, 200]
    first, second = (json.loads(r.body) for r in receiver.requests)
    ids = [sorted(a["record"]["id"] for a in body["anomalies"]) for body in (first, second)]
    assert ids[0] == ids[1] and len(ids[0]) == 12  # the same group, whole, delivered once
    assert len({r.headers["X-Logllm-Delivery"] for r in receiver.requests}) == 1
    assert group_state(redis_url, receiver, "db") == (0, None)
