"""Re-sent Loki entries and OTLP records are stored once (service/intake/dedup.py), over HTTP against a real
Redis: counted in logllm_lines_deduplicated_total, across replicas, never at the cost of a distinct entry, and
never for an entry whose store was refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import redis

from tests.service.live_app import LiveApp, live_app

NS = 1_733_400_000_000_000_000


def push(app: LiveApp, streams: list[tuple[dict[str, str], list[list[Any]]]]) -> httpx.Response:
    body = {"streams": [{"stream": labels, "values": values} for labels, values in streams]}
    return httpx.post(f"{app.url}/loki/api/v1/push", json=body)


def counts(app: LiveApp, fmt: str = "loki_json") -> tuple[float, float]:
    """(lines ingested, lines deduplicated) of one format."""
    return (
        app.metric("logllm_lines_ingested_total", format=fmt),
        app.metric("logllm_lines_deduplicated_total", format=fmt),
    )


ENTRIES = [({"job": "api"}, [[str(NS + i), f"request blk_{i} served"] for i in range(3)])]


def test_a_resent_push_is_answered_as_stored_and_counted_not_stored(redis_url: str, tmp_path: Path) -> None:
    with live_app(redis_url, tmp_path) as app:
        assert push(app, ENTRIES).status_code == 204
        assert counts(app) == (3, 0)
        for _ in range(3):  # winston-loki re-sends a batch every 60 s
            assert push(app, ENTRIES).status_code == 204
        assert counts(app) == (3, 9)
        verdicts = app.verdicts(lines=3)
        assert sum(v["n_lines"] for v in verdicts.values()) == 3
        assert len(app.scored_messages()) == 3


def test_entries_that_differ_in_anything_are_all_stored(redis_url: str, tmp_path: Path) -> None:
    line = "request blk_1 served"
    with live_app(redis_url, tmp_path) as app:
        streams: list[tuple[dict[str, str], list[list[Any]]]] = [
            ({"job": "api"}, [[str(NS), line], [str(NS), "request blk_1 failed"], [str(NS + 1), line]]),
            ({"job": "api", "pod": "b"}, [[str(NS), line]]),  # another stream
            ({"job": "api"}, [[str(NS), line, {"level": "warn"}]]),  # other metadata
        ]
        assert push(app, streams).status_code == 204
        assert counts(app) == (5, 0)
        # the same line twice in one request with one timestamp is one entry, as in Loki
        assert push(app, [({"job": "web"}, [[str(NS), line], [str(NS), line]])]).status_code == 204
        assert counts(app) == (6, 1)


def test_a_partly_rejected_batch_sent_again_stores_nothing_twice(redis_url: str, tmp_path: Path) -> None:
    batch = [({"job": "api"}, [[str(NS), "ok blk_1"], [str(NS + 1), "no session here"], [str(NS + 2), "ok blk_2"]])]
    with live_app(redis_url, tmp_path) as app:
        for sent in range(1, 5):
            response = push(app, batch)
            assert response.status_code == 400, response.text
            assert response.json()["field"] == "streams[0].values[1]"
            assert "1 of 3 entries rejected, the other 2 stored" in response.json()["message"]
            assert counts(app) == (2, 2 * (sent - 1))
            assert app.metric("logllm_lines_rejected_total", reason="no_session_id", format="loki_json") == sent


def test_replicas_on_one_redis_share_what_was_stored(redis_url: str, tmp_path: Path) -> None:
    with live_app(redis_url, tmp_path) as first, live_app(redis_url, tmp_path) as second:
        assert push(first, ENTRIES).status_code == 204
        assert push(second, ENTRIES).status_code == 204
        assert (counts(first), counts(second)) == ((3, 0), (0, 3))


def test_an_entry_whose_store_was_refused_is_stored_when_sent_again(redis_url: str, tmp_path: Path) -> None:
    options = {"session_label": "sid", "max_open_windows": 1, "partitions": 1, "idle_timeout_s": 3600}
    with live_app(redis_url, tmp_path, **options) as app:
        assert push(app, [({"job": "a", "sid": "one"}, [[str(NS), "first"]])]).status_code == 204
        refused = push(app, [({"job": "a", "sid": "two"}, [[str(NS + 1), "second"]])])
        assert refused.status_code == 429, refused.text
        closed = httpx.post(f"{app.url}/sequences/{quote('session:a:one', safe='')}/close")
        assert closed.status_code == 200, closed.text
        app.verdicts(lines=1)
        assert push(app, [({"job": "a", "sid": "two"}, [[str(NS + 1), "second"]])]).status_code == 204
        assert counts(app) == (2, 0)


def test_otlp_records_sent_again_are_stored_once_unless_they_carry_no_time(redis_url: str, tmp_path: Path) -> None:
    timed = {"timeUnixNano": str(NS), "traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "body": {"stringValue": "a blk_1"}}
    observed = {"observedTimeUnixNano": str(NS), "body": {"stringValue": "b blk_1"}}
    untimed = {"body": {"stringValue": "c blk_1"}}  # nothing tells two of these apart: each is stored
    body = {"resourceLogs": [{"scopeLogs": [{"logRecords": [timed, observed, untimed]}]}]}
    with live_app(redis_url, tmp_path) as app:
        for _ in range(2):
            response = httpx.post(f"{app.url}/v1/logs", json=body)
            assert response.status_code == 200 and "partialSuccess" not in response.json(), response.text
        assert counts(app, "otlp_json") == (4, 2)
        other_span = {**timed, "spanId": "00f067aa0ba902b7"}
        body["resourceLogs"][0]["scopeLogs"][0]["logRecords"] = [other_span]  # type: ignore[index]
        assert httpx.post(f"{app.url}/v1/logs", json=body).status_code == 200
        assert counts(app, "otlp_json") == (5, 2)


def test_what_is_remembered_expires_within_the_window(redis_url: str, tmp_path: Path) -> None:
    with live_app(redis_url, tmp_path, entry_dedup_window_s=90) as app:
        assert push(app, ENTRIES).status_code == 204
    with redis.Redis.from_url(redis_url) as client:
        keys = list(client.scan_iter("*:dedup:*"))
        assert keys
        assert all(0 < client.pttl(key) <= 90_000 for key in keys)
        assert sum(client.scard(key) for key in keys) == 3


def test_a_window_of_zero_turns_it_off(redis_url: str, tmp_path: Path) -> None:
    with live_app(redis_url, tmp_path, entry_dedup_window_s=0) as app:
        assert push(app, ENTRIES).status_code == 204
        assert push(app, ENTRIES).status_code == 204
        assert counts(app) == (6, 0)
