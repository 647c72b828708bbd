"""Records keep each line as shipped beside its content, over HTTP against a real Redis: `GET /sequences/{id}`
shows both, explanations carry the raw text, the scorer and the feedback export still get the content, and
records written before raw lines were kept read as they did."""

# ruff: noqa: F811  (the fixture make_client comes from test_app.py and is used as an argument)
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import redis

from tests.service.test_app import KeywordScorer, MakeClient, make_client, scored  # noqa: F401
from tests.service.test_records import explained, record
from training.data_generic import load_generic

HDFS = [
    "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_42 terminating",
    "081109 203807 222 WARN dfs.DataNode: write error on block blk_42 from /10.250.19.102",
    "081109 204005 35 INFO dfs.FSNamesystem: BLOCK* NameSystem.addStoredBlock: blk_42 added to 10.251.73.220:50010",
]
CONTENT = [line.split(": ", 1)[1] for line in HDFS]  # what the hdfs format cuts out


def test_an_hdfs_line_comes_back_with_its_raw_text_and_its_content(make_client: MakeClient, tmp_path: Path) -> None:
    keyword = KeywordScorer()
    client = make_client(scorer=keyword, log_format="hdfs")
    assert client.post("/logs", json={"lines": [{"message": m} for m in HDFS]}).json()["accepted"] == 3
    window_id = client.post("/sequences/blk_42/close").json()["id"]
    assert scored(client, window_id)["status"] == "anomalous"
    assert all("081109" not in m for m in keyword.scored[0])  # the model read the content only, as before

    rec = explained(client, window_id)
    assert [(x["raw"], x["content"], x["line"]) for x in rec["lines"]] == list(zip(HDFS, CONTENT, CONTENT, strict=True))
    assert rec["lines"][1]["message"].startswith("write error on block")
    top = rec["explanation"][0]
    assert (top["line"], top["raw"]) == (CONTENT[1], HDFS[1])

    assert client.post(f"/sequences/{window_id}/feedback", json={"label": "anomalous"}).status_code == 200
    export = client.get("/feedback").text
    assert [json.loads(row)["message"] for row in export.splitlines()] == CONTENT  # training reads the content
    (tmp_path / "feedback.jsonl").write_text(export)
    (sequence,) = load_generic(tmp_path / "feedback.jsonl")
    assert (sequence.sequence_id, sequence.label, len(sequence.messages)) == (window_id, 1, 3)

    schema = client.get("/openapi.json").json()["components"]["schemas"]["RecordLine"]
    assert {"raw", "content", "line", "message"} <= set(schema["properties"])


def test_sliding_fixed_windows_show_raw_lines_of_the_overlap(make_client: MakeClient) -> None:
    client = make_client(window_mode="fixed", window_size=2, window_step=1, log_format="hdfs")
    response = client.post("/logs?source=dn", json={"lines": [{"message": m} for m in HDFS]})
    assert response.json()["closed"] == ["fixed:dn:0", "fixed:dn:1"]
    assert scored(client, "fixed:dn:1")["status"] == "anomalous"  # line 1 ("write error") is in both windows
    assert [x["raw"] for x in record(client, "fixed:dn:1")["lines"]] == HDFS[1:3]
    assert [x["content"] for x in record(client, "fixed:dn:0")["lines"]] == CONTENT[0:2]


def test_records_written_before_raw_lines_were_kept_still_read(make_client: MakeClient, redis_url: str) -> None:
    client = make_client()
    lines = ["open file 1", "disk error on block 3"]
    client.post("/logs", json={"lines": [{"message": m, "session_id": "old"} for m in lines]})
    window_id = client.post("/sequences/old/close").json()["id"]
    scored(client, window_id)
    explained(client, window_id)  # the explanation follows the verdict: rewrite it once it has landed
    with redis.Redis.from_url(redis_url) as r:
        (lines_key,) = r.keys(f"*rec:lines:{window_id}")
        (rec_key,) = [k for k in r.keys(f"*rec:{window_id}") if b"rec:lines:" not in k]
        explanation = json.loads(r.hget(rec_key, "explanation") or "[]")
        r.hset(rec_key, "explanation", json.dumps([{k: v for k, v in c.items() if k != "raw"} for c in explanation]))
        r.delete(lines_key)
        r.rpush(lines_key, *lines)  # content-only elements, as the store wrote them before
    rec = record(client, window_id)
    assert [(x["raw"], x["content"], x["line"]) for x in rec["lines"]] == [(m, m, m) for m in lines]
    assert rec["explanation"][0]["line"] == "disk error on block 3" and "raw" not in rec["explanation"][0]
    assert "fixed_key" not in rec and rec["session_key"] == "session:default:old"  # absent fields stay absent


def test_a_raw_format_source_stores_the_content_alone(make_client: MakeClient, redis_url: str) -> None:
    client = make_client()  # log_format raw: the content is the line
    line = "081109 203615 148 INFO plain text blk_5 kept as it came"
    assert client.post("/logs", json={"lines": [{"message": line}]}).json()["accepted"] == 1
    with redis.Redis.from_url(redis_url) as r:
        (key,) = r.keys("*:lines:session:default:blk_5")
        assert r.lrange(key, 0, -1) == [line.encode()]  # not one byte beside the content


def test_failed_and_kept_normal_windows_keep_raw_lines_too(make_client: MakeClient) -> None:
    class FailsOnDisk(KeywordScorer):
        def score(self, sequences: Any) -> list[float]:
            if any("disk" in m for s in sequences for m in s):
                raise RuntimeError("tensor shape mismatch")
            return super().score(sequences)

    client = make_client(
        scorer=FailsOnDisk(), log_format="hdfs", normal_lines_retention_s=60, reclaim_idle_ms=50, max_deliveries=2
    )
    failing = HDFS[0].replace("terminating", "disk full").replace("blk_42", "blk_43")
    client.post("/logs", json={"lines": [{"message": HDFS[0]}, {"message": failing}]})
    normal = client.post("/sequences/blk_42/close").json()["id"]
    failed = client.post("/sequences/blk_43/close").json()["id"]
    assert scored(client, normal)["status"] == "normal" and scored(client, failed)["status"] == "failed"
    assert [(x["raw"], x["content"]) for x in record(client, normal)["lines"]] == [(HDFS[0], CONTENT[0])]
    assert [(x["raw"], x["content"]) for x in record(client, failed)["lines"]] == [(failing, failing.split(": ", 1)[1])]
