"""POST /v1/logs on the live app: the OpenTelemetry SDK's OTLP/HTTP exporter shipping Python logging records
(protobuf, gzip), OTLP JSON, partial_success for rejected records, a 429 the exporter retries, bad bodies."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from model.preprocess import preprocess
from tests.service.live_app import live_app

TRACE = "5b8efff798038103d269b633813fc60c"


@contextmanager
def otel_logger(url: str, service: str, compression: Compression) -> Iterator[logging.Logger]:
    """A Python logger whose records the OTel SDK exports to ``url`` (one export per record)."""
    provider = LoggerProvider(resource=Resource.create({"service.name": service}))
    exporter = OTLPLogExporter(endpoint=f"{url}/v1/logs", compression=compression, timeout=10)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = logging.getLogger(f"test-otlp-{service}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = LoggingHandler(logger_provider=provider)
    logger.addHandler(handler)
    try:
        yield logger
    finally:
        logger.removeHandler(handler)
        provider.shutdown()


def test_the_otel_sdk_ships_logging_records_that_get_verdicts(redis_url: str, tmp_path: Path) -> None:
    sources = json.dumps({"checkout": {"window_mode": "session"}})
    with live_app(redis_url, tmp_path, session_attribute="order", sources=sources) as app:
        with otel_logger(app.url, "checkout", Compression.Gzip) as logger:
            for step in ("cart opened", "card charged", "receipt mailed"):
                logger.info(step, extra={"order": "o-1"})
            logger.warning("stock error on shelf", extra={"order": "o-2"})
            logger.info("nightly sweep of blk_5")  # no attribute: the session pattern finds blk_5
        verdicts = app.verdicts(lines=5)
        assert sorted((v["n_lines"], v["status"]) for v in verdicts.values()) == [
            (1, "anomalous"),
            (1, "normal"),
            (3, "normal"),
        ]
        assert app.scored_messages() == sorted(
            [
                [preprocess(m) for m in ("cart opened", "card charged", "receipt mailed")],
                [preprocess("stock error on shelf")],
                [preprocess("nightly sweep of blk_5")],
            ]
        )
        assert 'logllm_lines_ingested_total{format="otlp_protobuf"} 5.0' in app.metrics()


def test_the_exporter_retries_a_429_after_retry_after(
    redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with live_app(redis_url, tmp_path, session_attribute="order", max_open_windows=1, partitions=1) as app:
        with otel_logger(app.url, "shop", Compression.NoCompression) as logger:
            logger.info("first order", extra={"order": "a"})
            # the cap is one open window (one partition: caps hold per partition): 429 until "a" closes on idle
            # (0.3 s); the exporter waits Retry-After
            logger.info("second order", extra={"order": "b"})
        verdicts = app.verdicts(lines=2)
        assert sorted(v["n_lines"] for v in verdicts.values()) == [1, 1]
    assert any("Transient error" in r.getMessage() for r in caplog.records), "the exporter never saw the 429"


def otlp_json(records: list[dict[str, object]], service: str = "api") -> dict[str, object]:
    return {
        "resourceLogs": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                "scopeLogs": [{"scope": {"name": "hand-written"}, "logRecords": records}],
            }
        ]
    }


def test_otlp_json_with_trace_id_sessions_and_partial_success(redis_url: str, tmp_path: Path) -> None:
    records: list[dict[str, object]] = [
        {"timeUnixNano": "1700000000000000000", "traceId": TRACE, "body": {"stringValue": "GET /cart"}},
        {"traceId": TRACE, "body": {"kvlistValue": {"values": [{"key": "msg", "value": {"stringValue": "ok"}}]}}},
        {"body": {"stringValue": "no trace and no pattern match"}},
        {"traceId": TRACE, "body": {"stringValue": ""}},
    ]
    with live_app(redis_url, tmp_path, session_attribute="trace_id") as app:
        response = httpx.post(f"{app.url}/v1/logs", json=otlp_json(records))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        partial = response.json()["partialSuccess"]
        assert partial["rejectedLogRecords"] == "2"
        assert "logRecords[2]: no_session_id" in partial["errorMessage"]
        assert "logRecords[3]: empty" in partial["errorMessage"]
        verdicts = app.verdicts(lines=2)
        assert [v["n_lines"] for v in verdicts.values()] == [2]
        assert any(TRACE in window_id for window_id in verdicts)
        assert app.scored_messages() == [
            [preprocess("GET /cart"), preprocess('{"values":[{"key":"msg","value":{"stringValue":"ok"}}]}')]
        ]


def test_a_protobuf_request_gets_a_protobuf_response(redis_url: str, tmp_path: Path) -> None:
    request = ExportLogsServiceRequest()
    json_format.ParseDict(otlp_json([{"body": {"stringValue": "fine blk_9"}}, {"body": {"stringValue": "x"}}]), request)
    with live_app(redis_url, tmp_path) as app:
        response = httpx.post(
            f"{app.url}/v1/logs",
            content=request.SerializeToString(),
            headers={"content-type": "application/x-protobuf"},
        )
        assert (response.status_code, response.headers["content-type"]) == (200, "application/x-protobuf")
        answer = ExportLogsServiceResponse.FromString(response.content)
        assert answer.partial_success.rejected_log_records == 1
        assert app.verdicts(lines=1)


@pytest.mark.parametrize(
    ("content", "content_type", "status", "reason"),
    [
        (b"\x0a\xff\xff\xff", "application/x-protobuf", 400, "bad_protobuf"),
        (b'{"resourceLogs": [', "application/json", 400, "bad_json"),
        (b'{"resourceLogs": "no"}', "application/json", 400, "bad_json"),
        (
            b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "zz"}]}]}]}',
            "application/json",
            400,
            "bad_json",
        ),
        (b"{}", "text/plain", 415, "unsupported_media_type"),
    ],
)
def test_bad_otlp_bodies_are_refused_naming_what_failed(
    redis_url: str, tmp_path: Path, content: bytes, content_type: str, status: int, reason: str
) -> None:
    with live_app(redis_url, tmp_path) as app:
        response = httpx.post(f"{app.url}/v1/logs", content=content, headers={"content-type": content_type})
        assert (response.status_code, response.json()["reason"]) == (status, reason), response.text
        assert response.json()["message"]
