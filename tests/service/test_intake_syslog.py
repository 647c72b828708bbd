"""The syslog listeners on the live app, fed by util-linux ``logger`` (RFC 5424 over TCP with octet counting,
and over UDP), and by hand for framing, TLS and bad frames: accepted counts, verdicts, what the model read."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from model.log_formats import content_parser
from model.preprocess import preprocess
from model.windows import session_finder
from tests.binaries import missing_binary
from tests.service.live_app import LiveApp, live_app
from tests.service.syslog_shippers import (
    FIRST,
    HeldScorer,
    hdfs_2k,
    held,
    log_file,
    logger_binary,
    metric,
    wait_accepted,
    wait_for,
)

HDFS_SOURCES = json.dumps({"hdfs": {"log_format": "hdfs"}})
LISTEN = "127.0.0.1:0"


def expected_messages(lines: Sequence[str]) -> Counter[str]:
    """What the model must read: each line's HDFS content, preprocessed, once per block session it names."""
    content, find = content_parser("hdfs"), session_finder(r"blk_-?\d+")
    expected: Counter[str] = Counter()
    for line in lines:
        text = content(line)
        expected[preprocess(text)] += len(find(text))
    return expected


def assert_model_read(app: LiveApp, lines: Sequence[str]) -> None:
    """Once every accepted line was scored: the model read each line's message exactly as the system wrote it."""
    expected = expected_messages(lines)
    total = sum(expected.values())
    wait_for(lambda: sum(map(len, app.scored_messages())) >= total, 60, f"{total} lines scored")
    read = Counter(m for window in app.scored_messages() for m in window)
    assert read == expected, (list((read - expected).items())[:3], list((expected - read).items())[:3])


def address(app: LiveApp, transport: str) -> tuple[str, int]:
    host, port = app.app.state.syslog.addresses[transport]
    return host, port


def run_logger(app: LiveApp, path: Path, *options: str) -> None:
    host, port = address(app, "syslog_udp" if "-d" in options else "syslog_tcp")
    # --size: logger cuts messages at 1 KiB by default, and HDFS_2k has longer lines
    args = [logger_binary(), "--rfc5424", "--size", "65536", "-t", "hdfs", "-n", host, "-P", str(port), *options]
    subprocess.run([*args, "-f", str(path)], check=True, timeout=60)


def test_logger_rfc5424_over_tcp_with_octet_counting(redis_url: str, tmp_path: Path, shared_data: Path) -> None:
    lines = hdfs_2k(shared_data)
    with live_app(redis_url, tmp_path, syslog_tcp=LISTEN, sources=HDFS_SOURCES) as app:
        run_logger(app, log_file(tmp_path, lines), "-T", "--octet-count")
        wait_accepted(app, "syslog_tcp", len(lines))
        assert_model_read(app, lines)
        assert metric(app, "logllm_lines_rejected_total", reason="bad_format", format="syslog_tcp") == 0


def test_logger_rfc5424_over_udp(redis_url: str, tmp_path: Path, shared_data: Path) -> None:
    lines = hdfs_2k(shared_data, 500)
    with live_app(redis_url, tmp_path, syslog_udp=LISTEN, sources=HDFS_SOURCES) as app:
        run_logger(app, log_file(tmp_path, lines), "-d")
        wait_accepted(app, "syslog_udp", len(lines))
        assert_model_read(app, lines)


def queue_full(app: LiveApp) -> bool:
    return metric(app, "logllm_ready_queue_depth") >= 2


HELD = held(HDFS_SOURCES)


def test_tcp_stops_reading_while_the_queue_is_full_and_loses_nothing(
    redis_url: str, tmp_path: Path, shared_data: Path
) -> None:
    lines = hdfs_2k(shared_data)
    first, second = log_file(tmp_path / "a", lines[:FIRST]), log_file(tmp_path / "b", lines[FIRST:])
    scorer = HeldScorer()
    with live_app(redis_url, tmp_path, scorer=scorer, syslog_tcp=LISTEN, **HELD) as app:
        try:
            run_logger(app, first, "-T", "--octet-count")
            wait_accepted(app, "syslog_tcp", FIRST)
            wait_for(lambda: queue_full(app), 30, "the ready queue at its cap")  # windows close on idle
            run_logger(app, second, "-T", "--octet-count")  # logger's writes end in the kernel's buffers
            paused = ("logllm_syslog_tcp_paused_total", {"transport": "syslog_tcp", "reason": "queue_full"})
            wait_for(lambda: metric(app, paused[0], **paused[1]) > 0, 30, "the listener to stop reading")
            assert metric(app, "logllm_lines_ingested_total", format="syslog_tcp") < 2000
        finally:
            scorer.open.set()
        wait_accepted(app, "syslog_tcp", 2000)
        assert_model_read(app, lines)


def test_udp_drops_what_the_store_refuses_and_counts_it(redis_url: str, tmp_path: Path, shared_data: Path) -> None:
    lines = hdfs_2k(shared_data, 1000)
    scorer = HeldScorer()
    with live_app(redis_url, tmp_path, scorer=scorer, syslog_udp=LISTEN, **HELD) as app:
        try:
            run_logger(app, log_file(tmp_path / "a", lines[:FIRST]), "-d")
            wait_accepted(app, "syslog_udp", FIRST)
            wait_for(lambda: queue_full(app), 30, "the ready queue at its cap")
            run_logger(app, log_file(tmp_path / "b", lines[FIRST:]), "-d")  # exits 0: UDP reports success
            dropped = ("logllm_syslog_udp_dropped_total", {"reason": "queue_full"})
            wait_for(lambda: metric(app, dropped[0], **dropped[1]) > 0, 30, "dropped datagrams counted")
        finally:
            scorer.open.set()
        assert metric(app, "logllm_lines_ingested_total", format="syslog_udp") == FIRST
        assert metric(app, dropped[0], **dropped[1]) <= len(lines) - FIRST


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    openssl = shutil.which("openssl") or missing_binary("openssl not installed")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def octet(message: str) -> bytes:
    data = message.encode()
    return f"{len(data)} ".encode() + data


def test_tls_frames_fields_and_bad_frames(redis_url: str, tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    """RFC 5425 over TLS: the hostname names the source, the procid the session (per source in --sources); a
    frame over the size limit is refused alone, a line without a header is kept whole, the connection goes on."""
    cert, key = certificate
    sources = json.dumps({"web": {"syslog_session_field": "procid", "window_mode": "session"}})
    options = {
        "syslog_tls": LISTEN, "syslog_tls_cert": cert, "syslog_tls_key": key, "syslog_max_message_bytes": 512,
        "syslog_source_field": "hostname", "sources": sources,
    }  # fmt: skip
    with live_app(redis_url, tmp_path, **options) as app:
        context = ssl.create_default_context(cafile=str(cert))
        raw = socket.create_connection(address(app, "syslog_tls"))
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(
                octet("<13>1 2026-12-05T20:00:00Z web app 4711 - - user login in checkout")
                + octet("<13>1 2026-12-05T20:00:00Z web app 4711 - - " + "x" * 600)
                + octet("<13>Dec  5 20:00:01 web app[4711]: cart saved")
                + octet("no header at all for blk_77")
                + octet("<13>1 2026-12-05T20:00:00Z bad:host app - - - lost to its source name")
            )
        wait_accepted(app, "syslog_tls", 3)
        wait_for(lambda: sum(map(len, app.scored_messages())) >= 3, 30, "3 lines scored")
        assert app.scored_messages() == [
            [preprocess("no header at all for blk_77")],
            [preprocess("user login in checkout"), preprocess("cart saved")],
        ]
        ids = ["session:default:blk_77", "session:web:4711"]
        wait_for(lambda: sorted(app.verdict_ids()) == ids, 30, f"verdicts of {ids}")
        rejected = "logllm_lines_rejected_total"
        assert metric(app, rejected, reason="too_large", format="syslog_tls") == 1
        assert metric(app, rejected, reason="invalid_source", format="syslog_tls") == 1


def test_logger_header_times_reach_the_record_and_the_export(redis_url: str, tmp_path: Path) -> None:
    """The syslog header's time goes with the line, as a JSON line's ``timestamp`` does: ``logger --rfc5424``'s
    RFC 3339 stamp as sent; ``logger --rfc3164``'s ``Mmm dd hh:mm:ss`` with its year and no zone (logger writes
    local time; TZ=UTC here, so it can be checked against the clock)."""
    block = "blk_-4242"
    lines = [f"081109 20361{i} 148 INFO dfs.DataNode: write error {i} on block {block}" for i in range(3)]
    env = {**os.environ, "TZ": "UTC"}
    # windows close only when told (not on idle between the two logger runs): all three lines in one window
    with live_app(redis_url, tmp_path, syslog_tcp=LISTEN, sources=HDFS_SOURCES, idle_timeout_s=3600) as app:
        host, port = address(app, "syslog_tcp")
        base = [logger_binary(), "--size", "65536", "-t", "hdfs", "-n", host, "-P", str(port), "-T"]
        before = datetime.now(UTC).replace(microsecond=0)
        subprocess.run([*base, "--rfc5424", "--octet-count", "-f", str(log_file(tmp_path / "a", lines[:2]))],
                       check=True, timeout=60, env=env)  # fmt: skip
        wait_accepted(app, "syslog_tcp", 2)  # in this order
        subprocess.run([*base, "--rfc3164", "-f", str(log_file(tmp_path / "b", lines[2:]))], check=True, timeout=60,
                       env=env)  # fmt: skip
        wait_accepted(app, "syslog_tcp", 3)
        after = datetime.now(UTC)
        closed = httpx.post(f"{app.url}/sequences/{quote(f'session:hdfs:{block}', safe='')}/close")
        assert closed.status_code == 200, closed.text
        window_id = closed.json()["id"]
        wait_for(lambda: window_id in app.verdict_ids(), 30, "the window scored")
        response = httpx.get(f"{app.url}/sequences/{quote(window_id, safe='')}")
        stamps = [line.get("timestamp") for line in response.json()["lines"]]
        assert len(stamps) == 3 and all(isinstance(s, str) for s in stamps), stamps
        for stamp in stamps[:2]:  # RFC 3339 with logger's microseconds and zone, as sent
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d\d:\d\d", stamp), stamp
            assert before <= datetime.fromisoformat(stamp) <= after
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", stamps[2]), stamps[2]  # no zone: RFC 3164 has none
        assert before <= datetime.fromisoformat(stamps[2]).replace(tzinfo=UTC) <= after

        sent = httpx.post(f"{app.url}/sequences/{quote(window_id, safe='')}/feedback", json={"label": "anomalous"})
        assert sent.status_code == 200, sent.text
        export = [json.loads(row) for row in httpx.get(f"{app.url}/feedback").text.splitlines()]
        assert [row["timestamp"] for row in export] == stamps
        assert [row["message"] for row in export] == [line.split(": ", 1)[1] for line in lines]
