"""Messages as the system wrote them (service/intake/message.py): the message field of JSON lines
(--json-message-field, per source too), metadata kept in the record but out of the model's input unless
--metadata-to-model names it, against build_batch and over HTTP with a real Redis."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from model.preprocess import preprocess
from service.intake.batch import Batch, build_batch
from service.intake.message import without_metadata_copy
from service.settings import ServiceSettings
from service.windows.line_codec import decode_line
from tests.service.live_app import live_app

HDFS = "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_42 terminating"
HDFS_CONTENT = HDFS.split(": ", 1)[1]


def stored(
    settings: ServiceSettings, lines: list[str], metadata: dict[int, list[tuple[str, str]]] | None = None
) -> tuple[list[tuple[str, str]], Batch]:
    """(raw, content) of each stored line, and the batch."""
    batch = build_batch([(i, line, "s1", None, None) for i, line in enumerate(lines)], settings, metadata=metadata)
    return [decode_line(element) for items in batch.groups.values() for _, element in items], batch


def test_the_first_json_field_present_is_the_message_and_the_line_stays_in_the_record(tmp_path: Path) -> None:
    settings = ServiceSettings(checkpoint=tmp_path, json_message_field="msg,message,log")
    pino = '{"level":30,"time":1733400000000,"pid":7,"hostname":"h","msg":"disk full on /var"}'
    winston = '{"level":"info","message":"user 42 logged in","service":"api"}'
    both = '{"message":"second","msg":"first"}'
    lines = [pino, winston, both, "plain text line", '["a list"]', '{"msg": 3}', "{not json"]
    kept, batch = stored(settings, lines)
    assert batch.accepted == len(lines)
    assert kept == [
        (pino, "disk full on /var"),
        (winston, "user 42 logged in"),
        (both, "first"),  # the order of the setting, not of the object
        ("plain text line", "plain text line"),
        ('["a list"]', '["a list"]'),  # not an object: the line as it is
        ('{"msg": 3}', '{"msg": 3}'),  # the field is not a string
        ("{not json", "{not json"),
    ]


def test_a_docker_log_field_holding_an_hdfs_line_is_parsed_by_the_sources_format(tmp_path: Path) -> None:
    sources = json.dumps({"dn": {"log_format": "hdfs", "json_message_field": "log"}})
    settings = ServiceSettings(checkpoint=tmp_path, sources=sources)
    docker = json.dumps({"log": HDFS + "\n", "stream": "stdout", "time": "2024-12-05T10:00:00.1Z"})
    batch = build_batch([(0, docker, None, "dn", None), (1, docker, None, "other", None)], settings)
    by_source = {w.log_format: [decode_line(e) for _, e in items] for w, items in batch.groups.items()}
    assert by_source["hdfs"] == [(docker, HDFS_CONTENT)]
    assert by_source["raw"] == [(docker, docker)]  # the global setting is off: the line as it is


def test_a_blank_message_field_is_rejected_alone(tmp_path: Path) -> None:
    settings = ServiceSettings(checkpoint=tmp_path, json_message_field="msg")
    _, batch = stored(settings, ['{"msg": "  "}', '{"msg": "ok"}'])
    assert (batch.accepted, [(r.index, r.reason) for r in batch.rejected]) == (1, [(0, "empty")])


def test_metadata_to_model_appends_the_chosen_fields_of_json_lines_and_of_metadata(tmp_path: Path) -> None:
    line = '{"msg":"started","level":"info","pid":7}'
    metadata = {0: [("level", "info"), ("note", "two words")], 1: [("level", "warn")]}
    cases = {
        "": ["started", "x"],
        "level": ["started level=info level=info", "x level=warn"],
        "*": ['started level=info pid=7 level=info note="two words"', "x level=warn"],
    }
    for keys, contents in cases.items():
        settings = ServiceSettings(checkpoint=tmp_path, json_message_field="msg", metadata_to_model=keys)
        kept, _ = stored(settings, [line, "x"], metadata)
        assert [content for _, content in kept] == contents, keys
        assert [raw for raw, _ in kept] == [f'{line} level=info note="two words"', "x level=warn"]


def test_lines_without_a_rule_are_stored_exactly_as_before(tmp_path: Path) -> None:
    kept, _ = stored(ServiceSettings(checkpoint=tmp_path), ['{"msg":"a"}', "b"])
    assert kept == [('{"msg":"a"}', '{"msg":"a"}'), ("b", "b")]


def test_pino_lines_over_ndjson_reach_the_model_as_their_msg(redis_url: str, tmp_path: Path) -> None:
    sources = json.dumps({"dn": {"log_format": "hdfs", "json_message_field": "msg"}})
    with live_app(redis_url, tmp_path, sources=sources, normal_lines_retention_s=3600) as app:
        pino = json.dumps({"level": 30, "time": 1, "msg": HDFS})
        body = json.dumps({"message": pino, "source": "dn"}) + "\n"
        response = httpx.post(f"{app.url}/logs", content=body, headers={"content-type": "application/x-ndjson"})
        assert response.json()["accepted"] == 1, response.text
        app.verdicts(lines=1)
        assert app.scored_messages() == [[preprocess(HDFS_CONTENT)]]
        assert app.record_lines("session:dn:blk_42") == [(pino, HDFS_CONTENT)]


@pytest.mark.parametrize(("to_model", "content"), [("", "job blk_7 done"), ("level", "job blk_7 done level=info")])
def test_otlp_attributes_stay_in_the_record_out_of_the_model(
    redis_url: str, tmp_path: Path, to_model: str, content: str
) -> None:
    record = {
        "timeUnixNano": "1733400000000000000",
        "body": {"stringValue": "job blk_7 done"},
        "attributes": [{"key": "level", "value": {"stringValue": "info"}}],
    }
    body = {"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]}
    with live_app(redis_url, tmp_path, normal_lines_retention_s=3600, metadata_to_model=to_model) as app:
        assert httpx.post(f"{app.url}/v1/logs", json=body).status_code == 200
        (window_id,) = app.verdicts(lines=1)
        assert app.record_lines(window_id) == [("job blk_7 done level=info", content)]
        assert app.scored_messages() == [[preprocess(content)]]


def test_a_trailing_json_copy_of_the_metadata_is_left_out_as_winston_loki_sends_it() -> None:
    meta = [("level", "info"), ("pid", "7")]
    assert without_metadata_copy('user 42 logged in {"level":"info","pid":7}', meta) == "user 42 logged in"
    assert without_metadata_copy('a {b} {"level":"info","pid":7}', meta) == "a {b}"
    for kept in ('x {"level":"warn","pid":7}', 'x {"level":"info"}', "x {not json}", '{"level":"info","pid":7}'):
        assert without_metadata_copy(kept, meta) == kept
