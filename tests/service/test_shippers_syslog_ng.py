"""syslog-ng's http() destination, configured as its documentation says, reads HDFS_2k from a file and POSTs it
to /logs as text and as NDJSON with Basic auth (the token as its password); the service accepts every line and
the model reads each HDFS message as written. On a 429 it waits time-reopen() and sends the batch again.
(network()/syslog() to the syslog listener: tests/service/test_intake_syslog*.py.)"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.service.live_app import LiveApp, live_app
from tests.service.shippers import (
    HDFS_SOURCES,
    hdfs_lines,
    hdfs_windows,
    hold_the_queue,
    ingested,
    release,
    scored_messages,
    syslog_ng,
    wait_for,
)

TOKEN = "syslog-ng-s3cret"
CONFIG = """@version: 3.38
options {{ stats-freq(0); }};
source s_lines {{ file("{input}" flags(no-parse) follow-freq(0.1)); }};
destination d_logllm {{
  http(
    url("{url}/logs?source=hdfs")
    method("POST")
    user("syslog-ng")
    password("{token}")
    {body}
    batch-lines(500)
    batch-timeout(200)
    time-reopen({reopen})
  );
}};
log {{ source(s_lines); destination(d_logllm); }};
"""
BODIES = {
    "text": 'headers("Content-Type: text/plain")\n    body("${MESSAGE}")',
    "ndjson": 'headers("Content-Type: application/x-ndjson")\n    body("$(format-json message=${MESSAGE})")',
}


@contextmanager
def running_syslog_ng(app: LiveApp, tmp_path: Path, lines: list[str], body: str, reopen: int = 1) -> Iterator[None]:
    binary, env, modules = syslog_ng()
    source = tmp_path / "input.log"
    source.write_text("\n".join(lines) + "\n")
    config = tmp_path / "syslog-ng.conf"
    config.write_text(CONFIG.format(input=source, url=app.url, token=TOKEN, body=BODIES[body], reopen=reopen))
    process = subprocess.Popen(
        [binary, "-F", "-e", "--no-caps", f"--cfgfile={config}", f"--module-path={modules}",
         f"--persist-file={tmp_path / 'persist'}", f"--pidfile={tmp_path / 'pid'}", f"--control={tmp_path / 'ctl'}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        yield
        assert process.poll() is None, process.communicate()[0]
    finally:
        process.terminate()
        process.communicate(timeout=30)


@pytest.mark.slow
@pytest.mark.parametrize("body", list(BODIES))
def test_syslog_ng_http_delivers_hdfs_2k_and_the_model_reads_the_messages_as_written(
    redis_url: str, tmp_path: Path, shared_data: Path, body: str
) -> None:
    lines = hdfs_lines(shared_data)
    settings = {"sources": HDFS_SOURCES, "auth_token": TOKEN}
    with live_app(redis_url, tmp_path, **settings) as app, running_syslog_ng(app, tmp_path, lines, body):
        wait_for("every line", lambda: ingested(app) >= len(lines))
        assert app.metric("logllm_lines_ingested_total", format=body) == len(lines)
        expected = hdfs_windows(lines)
        assert scored_messages(app, expected) == sorted(m for window in expected for m in window)
        assert app.log.count("/logs", 401) == 0


def test_syslog_ng_http_sends_a_batch_again_after_time_reopen_on_429(
    redis_url: str, tmp_path: Path, shared_data: Path
) -> None:
    lines = hdfs_lines(shared_data, 50)
    options = {"sources": HDFS_SOURCES, "auth_token": TOKEN, "max_ready_queue": 1, "partitions": 1}
    options["idle_timeout_s"] = 3600  # the stored lines' windows stay open: the one-window queue stays free
    with live_app(redis_url, tmp_path, **options) as app:
        hold_the_queue(app)
        with running_syslog_ng(app, tmp_path, lines, "text", reopen=1):
            wait_for("a 429 to syslog-ng", lambda: app.log.count("/logs", 429) >= 1)
            release(app)
            wait_for("every line", lambda: ingested(app) >= len(lines) + 1)  # the filler line too
        assert app.metric("logllm_lines_ingested_total", format="text") == len(lines) + 1
        assert app.log.retry_gap("/logs", 429) >= 0.9  # time-reopen(1)


def test_syslog_ng_http_drops_a_batch_answered_400(redis_url: str, tmp_path: Path, shared_data: Path) -> None:
    line = hdfs_lines(shared_data, 1)[0]
    with live_app(redis_url, tmp_path, sources=HDFS_SOURCES, auth_token=TOKEN) as app:
        with running_syslog_ng(app, tmp_path, ["   "], "text"):  # a blank body: 400 empty_body
            wait_for("a 400 to syslog-ng", lambda: app.log.count("/logs", 400) >= 1)
            with (tmp_path / "input.log").open("a") as source:  # a later line: sent only if the batch was dropped
                source.write(line + "\n")
            wait_for("the later line", lambda: ingested(app) >= 1)
        assert app.metric("logllm_lines_ingested_total", format="text") == 1
        assert app.log.count("/logs", 400) == 1  # not sent again


def test_syslog_ng_http_sends_a_batch_answered_413_again_and_again(
    redis_url: str, tmp_path: Path, shared_data: Path
) -> None:
    lines = hdfs_lines(shared_data, 50)  # one batch of about 6 kB: 413 with max_body_bytes 2,000
    options = {"sources": HDFS_SOURCES, "auth_token": TOKEN, "max_body_bytes": 2000}
    with live_app(redis_url, tmp_path, **options) as app, running_syslog_ng(app, tmp_path, lines, "text"):
        wait_for("the batch sent 3 times", lambda: app.log.count("/logs", 413) >= 3)
        assert ingested(app) == 0  # it stays stuck on that batch: keep batches under max_body_bytes
