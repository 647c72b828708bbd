"""A line's ``timestamp`` field, as sent, goes with the line: into the buffered element, the record's lines
(`GET /sequences/{id}`) and the feedback export (`GET /feedback`, `logllm feedback export`), over HTTP against a
real Redis. Lines sent without one are stored byte for byte as before."""

# ruff: noqa: F811  (the fixture make_client comes from test_app.py and is used as an argument)
from __future__ import annotations

import json
from pathlib import Path

import redis

from service.windows.line_codec import decode_element, encode_line
from tests.service.test_app import MakeClient, make_client, scored  # noqa: F401
from tests.service.test_intake_otlp import otlp_json
from tests.service.test_records import record
from training.data_generic import load_generic

HDFS = "081109 203807 222 WARN dfs.DataNode: write error on block blk_42 from /10.250.19.102"
CONTENT = HDFS.split(": ", 1)[1]


def test_json_and_ndjson_timestamps_reach_the_record_and_the_export(make_client: MakeClient, tmp_path: Path) -> None:
    client = make_client(log_format="hdfs")
    lines = [
        {"message": HDFS.replace("write error", "open"), "timestamp": "2024-05-01T10:00:00.123Z"},
        {"message": HDFS, "timestamp": 1714557600.5},
        {"message": HDFS.replace("write error", "close"), "timestamp": 1714557601},  # an int stays an int
        {"message": HDFS.replace("write error", "read")},  # none sent: none shown
    ]
    assert client.post("/logs", json={"lines": lines[:2]}).json()["accepted"] == 2
    ndjson = "\n".join(json.dumps(line) for line in lines[2:])
    sent = client.post("/logs", content=ndjson, headers={"Content-Type": "application/x-ndjson"})
    assert sent.json()["accepted"] == 2, sent.text
    window_id = client.post("/sequences/blk_42/close").json()["id"]
    assert scored(client, window_id)["status"] == "anomalous"

    rec = record(client, window_id)
    assert [x.get("timestamp") for x in rec["lines"]] == ["2024-05-01T10:00:00.123Z", 1714557600.5, 1714557601, None]
    assert rec["lines"][1]["raw"] == HDFS and rec["lines"][1]["content"] == CONTENT
    assert "timestamp" not in rec["lines"][3]

    assert client.post(f"/sequences/{window_id}/feedback", json={"label": "anomalous"}).status_code == 200
    export = [json.loads(row) for row in client.get("/feedback").text.splitlines()]
    assert [row.get("timestamp") for row in export] == ["2024-05-01T10:00:00.123Z", 1714557600.5, 1714557601, None]
    assert export[1] == {"sequence_id": window_id, "message": CONTENT, "label": "anomalous", "timestamp": 1714557600.5}
    (tmp_path / "feedback.jsonl").write_text("".join(json.dumps(row) + "\n" for row in export))
    (sequence,) = load_generic(tmp_path / "feedback.jsonl")  # training reads it as it is
    assert (sequence.label, len(sequence.messages)) == (1, 4)


def test_a_loki_entry_keeps_its_nanosecond_timestamp(make_client: MakeClient) -> None:
    client = make_client()
    push = {"streams": [{"stream": {"service_name": "web"}, "values": [["1714557600123456789", "disk error blk_9"]]}]}
    assert client.post("/loki/api/v1/push", json=push).status_code == 204
    window_id = client.post("/sequences/session:web:blk_9/close").json()["id"]
    scored(client, window_id)
    assert record(client, window_id)["lines"][0]["timestamp"] == "1714557600123456789"


def test_an_otlp_record_keeps_its_time_and_one_without_a_time_gets_none(make_client: MakeClient) -> None:
    """OTLP's time_unix_nano (else observed_time_unix_nano); 0 in both means not known, so none is kept."""
    client = make_client()
    records = [
        {"timeUnixNano": "1700000000000000001", "body": {"stringValue": "open blk_3"}},
        {"observedTimeUnixNano": "1700000000000000002", "body": {"stringValue": "read blk_3"}},
        {"body": {"stringValue": "disk error blk_3"}},
    ]
    assert client.post("/v1/logs", json=otlp_json(records)).status_code == 200
    window_id = client.post("/sequences/session:api:blk_3/close").json()["id"]
    scored(client, window_id)
    stamps = [x.get("timestamp") for x in record(client, window_id)["lines"]]
    assert stamps == ["1700000000000000001", "1700000000000000002", None]


def test_a_line_without_a_timestamp_is_stored_as_before(make_client: MakeClient, redis_url: str) -> None:
    """No byte more for lines sent without one: the element is the bare content (raw format) as it always was."""
    client = make_client()
    assert client.post("/logs", json={"lines": [{"message": "plain blk_5"}]}).status_code == 200
    with redis.Redis.from_url(redis_url) as r:
        (key,) = r.keys("*:lines:session:default:blk_5")
        assert r.lrange(key, 0, -1) == [b"plain blk_5"]
    assert encode_line("plain", "plain") == "plain"
    element = encode_line("plain", "plain", "2024-05-01")
    assert isinstance(element, bytes) and decode_element(element) == ("plain", "plain", "2024-05-01")
