"""POST /loki/api/v1/push on the live app: python-logging-loki (PyPI) pushing JSON, a protobuf+snappy push built
from Loki's schema, labels giving source and session, structured metadata carried, bad bodies refused."""

from __future__ import annotations

import ast
import json
import logging
import re
from pathlib import Path

import cramjam
import httpx
import logging_loki
import pytest

from model.preprocess import preprocess
from service.intake.loki import parse_labels
from service.intake.message import logfmt
from service.intake.proto import push_pb2
from tests.service.live_app import live_app

PROTOBUF = {"content-type": "application/x-protobuf"}


def push_body(streams: list[tuple[str, list[tuple[int, str, dict[str, str]]]]]) -> bytes:
    """A PushRequest from the schema, snappy-compressed (block format) as Promtail sends it."""
    request = push_pb2.PushRequest()
    for labels, entries in streams:
        stream = request.streams.add(labels=labels)
        for ns, line, metadata in entries:
            entry = stream.entries.add(line=line)
            entry.timestamp.FromNanoseconds(ns)
            for name, value in metadata.items():
                entry.structuredMetadata.add(name=name, value=value)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def test_the_committed_push_pb2_matches_push_proto(tmp_path: Path) -> None:
    """push_pb2.py is generated from push.proto and committed; regenerate it and compare the descriptors."""
    from grpc_tools import protoc

    proto_dir = Path(push_pb2.__file__).parent
    well_known = Path(protoc.__file__).parent / "_proto"  # google/protobuf/timestamp.proto, as `python -m` adds
    args = ["protoc", f"-I{proto_dir}", f"-I{well_known}", f"--python_out={tmp_path}", str(proto_dir / "push.proto")]
    assert protoc.main(args) == 0
    generated = (tmp_path / "push_pb2.py").read_text()
    serialized = ast.literal_eval(re.search(r"AddSerializedFile\((b'.*?')\)", generated, re.S)[1])  # type: ignore[index]
    assert serialized == push_pb2.DESCRIPTOR.serialized_pb


def test_label_text_parses_as_prometheus_writes_it() -> None:
    assert parse_labels('{service_name="web", job="a\\"b", x_y="c\\\\d\\n"}') == {
        "service_name": "web",
        "job": 'a"b',
        "x_y": "c\\d\n",
    }
    assert parse_labels("{}") == {}
    for bad in ("service_name=web", '{a="b" c="d"}', '{a="unterminated}', '{1a="x"}'):
        assert parse_labels(bad) is None, bad
    assert logfmt([("trace_id", "abc"), ("user", 'say "hi" now')]) == 'trace_id=abc user="say \\"hi\\" now"'


def test_python_logging_loki_ships_records_that_get_verdicts(redis_url: str, tmp_path: Path) -> None:
    with live_app(redis_url, tmp_path, session_label="session") as app:
        handler = logging_loki.LokiHandler(
            url=f"{app.url}/loki/api/v1/push", tags={"service_name": "checkout"}, version="1"
        )
        logger = logging.getLogger("test-loki-client")
        logger.propagate = False
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        failures: list[logging.LogRecord] = []
        handler.handleError = failures.append  # type: ignore[method-assign]  # the handler's own error hook
        try:
            for i in range(3):
                logger.info("cart %d saved", i, extra={"tags": {"session": "order-1"}})
            logger.error("payment error for card", extra={"tags": {"session": "order-2"}})
            logger.info("replica sync for blk_42")  # no session label: the session pattern finds it
        finally:
            logger.removeHandler(handler)
            handler.close()
        assert failures == []  # every push answered 204 (the client raises on anything else)
        verdicts = app.verdicts(lines=5)
        assert sorted((v["n_lines"], v["status"]) for v in verdicts.values()) == [
            (1, "anomalous"),
            (1, "normal"),
            (3, "normal"),
        ]
        assert app.scored_messages() == sorted(
            [
                [preprocess(f"cart {i} saved") for i in range(3)],
                [preprocess("payment error for card")],
                [preprocess("replica sync for blk_42")],
            ]
        )
        assert 'logllm_lines_ingested_total{format="loki_json"} 5.0' in app.metrics()


@pytest.mark.parametrize(
    ("to_model", "batch_messages"),
    [
        ("", ["step one", "step two"]),  # the default: metadata stays out of the model's input
        ("trace_id", ["step one trace_id=4bf92f35", "step two"]),
        ("*", ["step one sid=run-1 trace_id=4bf92f35", 'step two note="two words"']),  # the line as before
    ],
)
def test_protobuf_snappy_push_labels_pick_windowing_and_metadata_is_kept(
    redis_url: str, tmp_path: Path, to_model: str, batch_messages: list[str]
) -> None:
    sources = json.dumps({"web": {"window_mode": "fixed", "window_size": 2, "window_step": 2}})
    options = {"sources": sources, "session_label": "sid", "metadata_to_model": to_model}
    with live_app(redis_url, tmp_path, normal_lines_retention_s=3600, **options) as app:
        body = push_body(
            [
                ('{service_name="web", env="prod"}', [(10**18 + i, f"GET /item/{i}", {}) for i in range(4)]),
                ('{job="batch"}', [(10**18, "step one", {"sid": "run-1", "trace_id": "4bf92f35"})]),
                ('{job="batch", sid="run-1"}', [(10**18 + 1, "step two", {"note": "two words"})]),
            ]
        )
        response = httpx.post(f"{app.url}/loki/api/v1/push", content=body, headers=PROTOBUF)
        assert (response.status_code, response.content) == (204, b""), response.text
        verdicts = app.verdicts(lines=6)
        assert sorted(v["n_lines"] for v in verdicts.values()) == [2, 2, 2]
        assert app.scored_messages() == sorted(
            [
                [preprocess("GET /item/0"), preprocess("GET /item/1")],
                [preprocess("GET /item/2"), preprocess("GET /item/3")],
                [preprocess(m) for m in batch_messages],
            ]
        )
        # the record keeps the metadata whatever the model read
        kept = app.record_lines("session:batch:run-1")
        assert [raw for raw, _ in kept] == ["step one sid=run-1 trace_id=4bf92f35", 'step two note="two words"']
        assert [content for _, content in kept] == batch_messages
        assert 'logllm_lines_ingested_total{format="loki_protobuf"} 6.0' in app.metrics()


def test_a_metadata_key_of_source_label_names_the_source(redis_url: str, tmp_path: Path) -> None:
    with live_app(redis_url, tmp_path, source_label="service_name", session_label="sid") as app:
        entry = ["1", "hello", {"service_name": "api", "sid": "s1"}]
        body = {"streams": [{"stream": {"env": "prod"}, "values": [entry]}]}
        assert httpx.post(f"{app.url}/loki/api/v1/push", json=body).status_code == 204
        assert list(app.verdicts(lines=1)) == ["session:api:s1"]


def test_entries_that_cannot_be_windowed_are_rejected_and_the_rest_stored(redis_url: str, tmp_path: Path) -> None:
    with live_app(redis_url, tmp_path, session_label="sid") as app:
        body = {
            "streams": [
                {"stream": {"job": "a"}, "values": [["1", "ok for blk_1"], ["2", "no id here"]]},
                {"stream": {"job": "a", "sid": "has space"}, "values": [["3", "bad session"]]},
                {"stream": {"job": "a"}, "values": [["4", "again blk_1", {"k": "v"}]]},
            ]
        }
        response = httpx.post(f"{app.url}/loki/api/v1/push", json=body)
        assert response.status_code == 400, response.text
        error = response.json()
        assert (error["reason"], error["field"]) == ("entries_rejected", "streams[0].values[1]")
        assert "streams[1].values[0]: invalid_session" in error["message"]
        assert "2 of 4 entries rejected, the other 2 stored" in error["message"]
        verdicts = app.verdicts(lines=2)
        assert [v["n_lines"] for v in verdicts.values()] == [2]
        assert app.scored_messages() == [[preprocess("ok for blk_1"), preprocess("again blk_1")]]


@pytest.mark.parametrize(
    ("content", "headers", "status", "reason"),
    [
        (b"not snappy at all", PROTOBUF, 400, "bad_snappy"),
        (bytes(cramjam.snappy.compress_raw(b"\x0a\xff\xff\xff")), PROTOBUF, 400, "bad_protobuf"),
        (b'{"streams": [', {"content-type": "application/json"}, 400, "bad_json"),
        (b'{"streams": [{"values": [["1"]]}]}', {"content-type": "application/json"}, 400, "invalid_push"),
        (b"\x80\x80\x80\x40", PROTOBUF, 413, "body_too_large"),  # header declares 128 MiB decoded
        (b"{}", {"content-type": "text/plain"}, 415, "unsupported_media_type"),
        (b"{}", {"content-type": "application/json", "content-encoding": "snappy"}, 415, "unsupported_encoding"),
    ],
)
def test_bad_pushes_are_refused_naming_what_failed(
    redis_url: str, tmp_path: Path, content: bytes, headers: dict[str, str], status: int, reason: str
) -> None:
    with live_app(redis_url, tmp_path, max_body_bytes=2**20) as app:
        response = httpx.post(f"{app.url}/loki/api/v1/push", content=content, headers=headers)
        assert (response.status_code, response.json()["reason"]) == (status, reason), response.text
        assert response.json()["message"]
