"""POST /logs with application/x-ndjson on the live app: one line object per line; a bad line is rejected
alone with its index, the others are windowed and scored."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import httpx

from model.preprocess import preprocess
from tests.service.live_app import live_app

NDJSON = {"content-type": "application/x-ndjson"}


def test_ndjson_lines_are_windowed_and_bad_lines_rejected_alone(redis_url: str, tmp_path: Path) -> None:
    rows = [
        json.dumps({"message": "open file blk_7"}),
        "",  # blank lines are skipped but counted, so indexes are line numbers
        "{not json",
        json.dumps({"message": "disk error", "session_id": "job-9"}),
        json.dumps({"message": 5}),
        json.dumps(["a list"]),
        json.dumps({"message": "close file blk_7", "timestamp": 3.5, "extra": "ignored"}),
        json.dumps({"message": "a line with no session id"}),
    ]
    body = ("\r\n".join(rows) + "\n").encode()
    with live_app(redis_url, tmp_path) as app:
        response = httpx.post(
            f"{app.url}/logs", content=gzip.compress(body), headers={**NDJSON, "content-encoding": "gzip"}
        )
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["accepted"] == 3
        assert [(r["index"], r["reason"]) for r in answer["rejected"]] == [
            (2, "bad_json"),
            (4, "invalid_field"),
            (5, "invalid_field"),
            (7, "no_session_id"),
        ]
        assert "message" in answer["rejected"][1]["message"]
        verdicts = app.verdicts(lines=3)
        assert sorted((v["n_lines"], v["status"]) for v in verdicts.values()) == [(1, "anomalous"), (2, "normal")]
        assert app.scored_messages() == sorted(
            [[preprocess("disk error")], [preprocess("open file blk_7"), preprocess("close file blk_7")]]
        )
        metrics = app.metrics()
        assert 'logllm_lines_ingested_total{format="ndjson"} 3.0' in metrics
        assert 'logllm_lines_rejected_total{format="ndjson",reason="bad_json"} 1.0' in metrics


def test_an_ndjson_body_of_blank_lines_is_400(redis_url: str, tmp_path: Path) -> None:
    with live_app(redis_url, tmp_path) as app:
        response = httpx.post(f"{app.url}/logs", content=b"\n \n", headers=NDJSON)
        assert (response.status_code, response.json()["reason"]) == (400, "empty_body")
