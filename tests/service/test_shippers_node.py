"""The Node.js shippers themselves, pointed at a live service as their READMEs say: winston-loki (JSON and
protobuf+snappy), pino-loki and the OpenTelemetry JS SDK's OTLP/HTTP exporter send HDFS_2k; the service accepts
every line, gives verdicts, and the model reads each HDFS message as the system wrote it (no
` {"level":"info"}`, no `level=info`, no pino JSON). Then each one's answer to a 429, as docs/shippers.md's
retry table reports it. ship.js (tests/shippers/node) drives the libraries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.service.live_app import live_app
from tests.service.shippers import (
    HDFS_SOURCES,
    finish,
    hdfs_lines,
    hdfs_windows,
    hold_the_queue,
    ingested,
    node,
    release,
    run_node,
    scored_messages,
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
        assert scored_messages(app, expected) == sorted(m for window in expected for m in window)
        assert app.log.count("/v1/logs" if shipper == "otel" else "/loki/api/v1/push", 401) == 0


# --- 429 and re-sends: what docs/shippers.md's retry table says, as run here ---------------------------------

HELD = json.dumps(
    {"hdfs": {"log_format": "hdfs", "json_message_field": "msg", "window_mode": "fixed", "window_size": 1000}}
)  # one fixed window: the lines, once stored, do not fill the one-window ready queue again
HELD_OPTIONS = {"sources": HELD, "max_ready_queue": 1, "partitions": 1, "idle_timeout_s": 3600}


def lines_file(tmp_path: Path, shared_data: Path, count: int = 50) -> tuple[Path, list[str]]:
    lines = hdfs_lines(shared_data, count)
    path = tmp_path / "lines.log"
    path.write_text("\n".join(lines) + "\n")
    return path, lines


@pytest.mark.parametrize(
    ("shipper", "options", "path", "wait_s"),
    [
        ("otel", {}, "/v1/logs", 1.0),  # honours Retry-After (1 s here), up to 5 retries within its export timeout
        ("winston-loki", {"json": True, "retryMs": 300}, "/loki/api/v1/push", 0.3),  # its fixed 60 s, shortened
    ],
)
def test_a_429_is_retried_and_every_line_arrives(
    redis_url: str,
    tmp_path: Path,
    shared_data: Path,
    shipper: str,
    options: dict[str, object],
    path: str,
    wait_s: float,
) -> None:
    node()
    file, lines = lines_file(tmp_path, shared_data)
    with live_app(redis_url, tmp_path, **HELD_OPTIONS) as app:
        hold_the_queue(app)
        process = run_node(shipper, app, file, **options)
        wait_for("a 429 to the shipper", lambda: app.log.count(path, 429) >= 1)
        release(app)
        summary = finish(process)
        assert summary["undelivered"] in (0, None), summary
        wait_for("every line", lambda: ingested(app) >= len(lines) + 1)  # the filler line too
        assert ingested(app) == len(lines) + 1
        assert app.log.retry_gap(path, 429) >= wait_s * 0.9  # it waited before sending again


def test_pino_loki_drops_a_batch_answered_429(redis_url: str, tmp_path: Path, shared_data: Path) -> None:
    node()
    file, lines = lines_file(tmp_path, shared_data)
    with live_app(redis_url, tmp_path, **HELD_OPTIONS) as app:
        hold_the_queue(app)
        summary = finish(run_node("pino-loki", app, file))  # it exits once it has pushed everything it had
        assert app.log.count("/loki/api/v1/push", 429) >= 1
        assert any("Got error when trying to send log to loki" in e for e in summary["errors"]), summary
        release(app)
        assert app.metric("logllm_lines_ingested_total", format="loki_json") == 0  # nothing it sent was stored
        assert app.log.count("/loki/api/v1/push", 204) == 0


def test_winston_loki_resends_a_partly_rejected_batch_which_is_stored_once(
    redis_url: str, tmp_path: Path, shared_data: Path
) -> None:
    node()
    lines = [*hdfs_lines(shared_data, 5), "not an hdfs line"]
    file = tmp_path / "lines.log"
    file.write_text("\n".join(lines) + "\n")
    with live_app(redis_url, tmp_path, sources=HDFS_SOURCES) as app:
        # it re-sends the whole batch after each 400 (every 60 s; 300 ms here) until it gives up waiting
        summary = finish(run_node("winston-loki", app, file, json=True, retryMs=300, waitMs=3000))
        assert summary["undelivered"] == len(lines), summary
        sends = app.log.count("/loki/api/v1/push", 400)
        assert sends >= 3
        assert app.metric("logllm_lines_ingested_total", format="loki_json") == 5
        assert app.metric("logllm_lines_deduplicated_total", format="loki_json") == 5 * (sends - 1)
        assert app.metric("logllm_lines_rejected_total", reason="bad_format", format="loki_json") == sends
