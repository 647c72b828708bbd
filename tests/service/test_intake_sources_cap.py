"""The cap on distinct sources (--max-sources): lines of a new source past it are rejected one by one and
counted by reason, the rest of the request is stored, and every replica on the Redis sees one cap."""

# ruff: noqa: F811  (make_client comes from test_app.py and is used as an argument)
from __future__ import annotations

from typing import Any

import redis

from tests.service.test_app import MakeClient, make_client  # noqa: F401


def lines(*sources: str) -> dict[str, Any]:
    return {
        "lines": [{"message": f"{s} line {i}", "session_id": f"{s}-{i}", "source": s} for i, s in enumerate(sources)]
    }


def rejected_metric(text: str) -> float:
    name = 'logllm_lines_rejected_total{format="json",reason="too_many_sources"} '
    found = [line for line in text.splitlines() if line.startswith(name)]
    return float(found[0].split()[-1]) if found else 0.0


def test_new_sources_past_the_cap_are_rejected_line_by_line(make_client: MakeClient, redis_url: str) -> None:
    client = make_client(max_sources=2)
    first = client.post("/logs", json=lines("web", "db", "cache", "web", "cache")).json()
    assert first["accepted"] == 3
    assert [(r["index"], r["reason"]) for r in first["rejected"]] == [(2, "too_many_sources"), (4, "too_many_sources")]
    assert "'cache' is new and 2 sources are in use (--max-sources)" in first["rejected"][0]["message"]
    assert rejected_metric(client.get("/metrics").text) == 2

    # admitted sources keep sending; another replica on the same Redis holds the same cap
    replica = make_client(max_sources=2)
    again = replica.post("/logs", json=lines("db", "queue")).json()
    assert again["accepted"] == 1 and [r["reason"] for r in again["rejected"]] == ["too_many_sources"]
    with redis.Redis.from_url(redis_url) as r:
        assert {m.decode() for m in r.smembers("logllm:sources")} == {"web", "db"}
        stored = {k.decode().split(":verdict:")[0] for k in r.scan_iter("*")}
        assert not any("cache" in k or "queue" in k for k in stored), stored  # nothing of theirs was written


def test_a_request_of_refused_sources_only_stores_nothing(make_client: MakeClient) -> None:
    client = make_client(max_sources=1)
    assert client.post("/logs", json=lines("web")).json()["accepted"] == 1
    text = client.post("/logs?source=other", content=b"one blk_1\ntwo blk_2\n", headers={"Content-Type": "text/plain"})
    assert text.status_code == 200, text.text
    body = text.json()
    assert body["accepted"] == 0 and [r["reason"] for r in body["rejected"]] == ["too_many_sources"] * 2
