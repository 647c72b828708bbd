"""The verdict stream (plain XREAD), GET /anomalies/stream (SSE, Last-Event-ID), the chart counts, /ui headers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import redis
from fastapi.testclient import TestClient

from tests.service.delivery_helpers import make_app, plant, wait_for

__all__ = ["make_app"]  # fixture
MakeApp = Callable[..., TestClient]
STREAM = "logllm:{delivery}:verdicts"


def sse_events(client: TestClient, count: int, **headers: str) -> list[dict[str, Any]]:
    """The first ``count`` events of /anomalies/stream, as {id, event, data}."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with client.stream("GET", "/anomalies/stream", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith(("id:", "event:", "data:")):
                name, value = line.split(":", 1)
                current[name] = json.loads(value) if name == "data" else value.strip()
            elif not line and current:
                events.append(current)
                current = {}
                if len(events) == count:
                    break
    return events


def test_verdicts_go_to_a_stream_any_client_can_xread(make_app: MakeApp, redis_url: str) -> None:
    app = make_app()
    bad = plant(app, "blk_1", ["disk error on blk_1"])
    good = plant(app, "blk_2", ["all fine on blk_2"])
    with redis.Redis.from_url(redis_url, decode_responses=True) as r:
        entries = wait_for(lambda: len(found := r.xrange(STREAM)) >= 2 and found, what="two stream entries")
    by_id = {fields["id"]: fields for _, fields in entries}
    assert by_id[bad]["label"] == "anomalous" and float(by_id[bad]["score"]) == 0.9
    assert by_id[good]["label"] == "normal"
    assert by_id[bad]["model_version"] == "keyword-test"


def test_sse_replays_anomalies_after_last_event_id(make_app: MakeApp) -> None:
    app = make_app()
    first = plant(app, "blk_1", ["disk error on blk_1"])
    plant(app, "blk_2", ["all fine on blk_2"])  # normal: filtered out
    second = plant(app, "blk_3", ["write error on blk_3"])
    stream = app.app.state.delivery.stream  # type: ignore[attr-defined]
    wait_for(lambda: len(app.portal.call(stream.read, "0", 10, None)) == 3, what="3 verdicts")  # type: ignore[union-attr]

    events = sse_events(app, 2, **{"Last-Event-ID": "0-0"})
    assert [e["data"]["id"] for e in events] == [first, second]
    assert all(e["event"] == "verdict" and e["data"]["label"] == "anomalous" for e in events)
    resumed = sse_events(app, 1, **{"Last-Event-ID": events[0]["id"]})
    assert [e["data"]["id"] for e in resumed] == [second]


def test_bad_stream_parameters_get_a_4xx_naming_the_field(make_app: MakeApp) -> None:
    app = make_app()
    response = app.get("/anomalies/stream", headers={"Last-Event-ID": "yesterday"})
    assert response.status_code == 400
    assert response.json()["field"] == "Last-Event-ID"
    response = app.get("/anomalies/stream", params={"min_score": 2})
    assert response.status_code == 422
    assert response.json()["field"] == "query.min_score"
    response = app.get("/anomalies/stream", params={"since": 10, "until": 5})
    assert response.status_code == 400 and response.json()["field"] == "since"


def test_chart_counts_verdicts_per_minute_by_label(make_app: MakeApp) -> None:
    app = make_app()
    plant(app, "blk_1", ["disk error on blk_1"])
    plant(app, "blk_2", ["all fine on blk_2"])
    plant(app, "blk_3", ["all fine on blk_3"])

    def counts() -> dict[str, int]:
        body = app.get("/verdicts/per-minute", params={"minutes": 5}).json()
        return {label: sum(per_minute) for label, per_minute in body["counts"].items()}

    assert wait_for(lambda: counts() == {"anomalous": 1, "normal": 2}, what="the counts")


def test_page_files_carry_a_strict_content_security_policy(make_app: MakeApp) -> None:
    app = make_app(auth_token="secret")
    for path in ("/ui/", "/ui/app.js", "/ui/app.css"):
        response = app.get(path)
        assert response.status_code == 200, path  # the files hold no data; the data routes need the token
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert '<script src="/ui/app.js"' in app.get("/ui/").text
    assert app.get("/ui/../settings.py").status_code == 404
    assert app.get("/verdicts/per-minute").status_code == 401
    assert app.get("/anomalies/stream").status_code == 401
