"""The Node.js shippers themselves, pointed at a live service as their READMEs say: winston-loki (JSON and
protobuf+snappy), pino-loki and the OpenTelemetry JS SDK's OTLP/HTTP exporter send HDFS_2k; the service accepts
every line, gives verdicts, and the model reads each HDFS message as the system wrote it (no
` {"level":"info"}`, no `level=info`, no pino JSON). Then each one's answer to a 429, as docs/shippers.md's
retry table reports it. ship.js (tests/shippers/node) drives the libraries."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.service.live_app import live_app
from tests.service.shippers import (
    HDFS_SOURCES,
    finish,
    hdfs_lines,
    hdfs_windows,
    ingested,
    node,
    run_node,
    scored_windows,
    wait_for,
)

TOKEN = "shipper-s3cret"

SHIPPERS = [
    ("winston-loki", {"json": True}, "loki_json"),  # default line: message + ' {"level":"info"}', level as metadata
    ("winston-loki", {"messageFormat": True}, "loki_protobuf"),  # protobuf carries no metadata: format the line
    ("pino-loki", {}, "loki_json"),  # the line is pino's JSON object: --json-message-field msg
    ("otel", {}, "otlp_json"),  # log.level as a record attribute
]


@pytest.mark.slow
@pytest.mark.parametrize(("shipper", "options", "fmt"), SHIPPERS, ids=[f"{s[0]}-{s[2]}" for s in SHIPPERS])
def test_the_shipper_delivers_hdfs_2k_and_the_model_reads_the_messages_as_written(
    redis_url: str, tmp_path: Path, shared_data: Path, shipper: str, options: dict[str, object], fmt: str
) -> None:
    node()
    lines = hdfs_lines(shared_data)
    lines_file = tmp_path / "lines.log"
    lines_file.write_text("\n".join(lines) + "\n")
    settings = {"sources": HDFS_SOURCES, "auth_token": TOKEN, "normal_lines_retention_s": 3600}
    with live_app(redis_url, tmp_path, **settings) as app:
        summary = finish(run_node(shipper, app, lines_file, token=TOKEN, **options))
        assert summary["errors"] == [] and summary["sent"] == len(lines), summary
        wait_for("every line", lambda: ingested(app) >= len(lines))
        assert app.metric("logllm_lines_ingested_total", format=fmt) == len(lines)
        expected = hdfs_windows(lines)
        assert scored_windows(app, expected) == expected
        assert app.log.count("/v1/logs" if shipper == "otel" else "/loki/api/v1/push", 401) == 0
