"""rsyslog (``omfwd`` over TCP and UDP) and syslog-ng (``network()``, ``syslog()``) tail HDFS_2k's file and ship
it to the syslog listeners, configured as their own docs say: every line accepted, scored as written, and a full
ready queue makes the TCP shippers wait rather than lose lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.service.live_app import LiveApp, live_app
from tests.service.syslog_shippers import (
    FIRST,
    HeldScorer,
    hdfs_2k,
    held,
    log_file,
    metric,
    rsyslog,
    syslog_ng,
    wait_accepted,
    wait_for,
)
from tests.service.test_intake_syslog import HDFS_SOURCES, LISTEN, address, assert_model_read, queue_full

TCP_OCTETS = 'protocol="tcp" tcp_framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format"'


def rsyslog_config(file: Path, port: int, forward: str, tag: str = "hdfs") -> str:
    """imfile reads the file from its start; omfwd forwards each line (rsyslog.com: imfile, omfwd)."""
    return f"""
global(workDirectory="{{work}}")
module(load="imfile")
input(type="imfile" file="{file}" tag="{tag}" ruleset="ship")
ruleset(name="ship") {{
  action(type="omfwd" target="127.0.0.1" port="{port}" {forward})
}}
"""


def test_rsyslog_omfwd_tcp_octet_counted_rfc5424(redis_url: str, tmp_path: Path, shared_data: Path) -> None:
    lines = hdfs_2k(shared_data)
    with live_app(redis_url, tmp_path, syslog_tcp=LISTEN, sources=HDFS_SOURCES) as app:
        _, port = address(app, "syslog_tcp")
        with rsyslog(tmp_path, rsyslog_config(log_file(tmp_path, lines), port, TCP_OCTETS)):
            wait_accepted(app, "syslog_tcp", len(lines))
        assert_model_read(app, lines)


def test_rsyslog_omfwd_udp_traditional_format(redis_url: str, tmp_path: Path, shared_data: Path) -> None:
    """omfwd's default template on UDP is RFC 3164 (RSYSLOG_TraditionalForwardFormat): the tag must end in ':'
    there, as rsyslog's docs write it, or the tag runs into the message."""
    lines = hdfs_2k(shared_data, 500)
    with live_app(redis_url, tmp_path, syslog_udp=LISTEN, sources=HDFS_SOURCES) as app:
        _, port = address(app, "syslog_udp")
        with rsyslog(tmp_path, rsyslog_config(log_file(tmp_path, lines), port, 'protocol="udp"', tag="hdfs:")):
            wait_accepted(app, "syslog_udp", len(lines))
        assert_model_read(app, lines)


def syslog_ng_config(file: Path, port: int, destination: str) -> str:
    """A file() source (no-parse: each line is the message, program hdfs) into one network destination."""
    return f"""@version: 3.38
options {{ keep-hostname(yes); }};
source s_file {{ file("{file}" follow-freq(0.1) flags(no-parse) program-override("hdfs")); }};
destination d_logllm {{ {destination}("127.0.0.1" port({port}) transport("tcp")); }};
log {{ source(s_file); destination(d_logllm); flags(flow-control); }};
"""


HELD = held(HDFS_SOURCES)


@pytest.mark.parametrize("shipper", ["rsyslog", "syslog-ng"])
def test_tcp_shippers_wait_while_the_queue_is_full(
    redis_url: str, tmp_path: Path, shared_data: Path, shipper: str
) -> None:
    """The file grows while the ready queue is at its cap: the listener stops reading, the shipper waits, and
    once the model scores again every line arrives."""
    lines = hdfs_2k(shared_data)
    path = log_file(tmp_path, lines[:FIRST])
    scorer = HeldScorer()
    with live_app(redis_url, tmp_path, scorer=scorer, syslog_tcp=LISTEN, **HELD) as app:
        _, port = address(app, "syslog_tcp")
        if shipper == "rsyslog":
            running = rsyslog(tmp_path, rsyslog_config(path, port, TCP_OCTETS))
        else:
            running = syslog_ng(tmp_path, syslog_ng_config(path, port, "syslog"))
        with running:
            try:
                wait_accepted(app, "syslog_tcp", FIRST)
                wait_for(lambda: queue_full(app), 30, "the ready queue at its cap")
                with path.open("a", encoding="utf-8") as more:
                    more.writelines(f"{line}\n" for line in lines[FIRST:])
                paused = {"transport": "syslog_tcp", "reason": "queue_full"}
                wait_for(lambda: metric(app, "logllm_syslog_tcp_paused_total", **paused) > 0, 30, "a pause")
                assert metric(app, "logllm_lines_ingested_total", format="syslog_tcp") < 2000
            finally:
                scorer.open.set()
            wait_accepted(app, "syslog_tcp", 2000)
        assert_model_read(app, lines)


def test_rsyslog_udp_lines_refused_are_dropped_and_counted(redis_url: str, tmp_path: Path, shared_data: Path) -> None:
    lines = hdfs_2k(shared_data, 1000)
    path = log_file(tmp_path, lines[:FIRST])
    scorer = HeldScorer()
    with live_app(redis_url, tmp_path, scorer=scorer, syslog_udp=LISTEN, **HELD) as app:
        _, port = address(app, "syslog_udp")
        with rsyslog(tmp_path, rsyslog_config(path, port, 'protocol="udp"', tag="hdfs:")):
            try:
                wait_accepted(app, "syslog_udp", FIRST)
                wait_for(lambda: queue_full(app), 30, "the ready queue at its cap")
                with path.open("a", encoding="utf-8") as more:
                    more.writelines(f"{line}\n" for line in lines[FIRST:])
                dropped = {"reason": "queue_full"}
                wait_for(lambda: metric(app, "logllm_syslog_udp_dropped_total", **dropped) > 0, 30, "drops counted")
            finally:
                scorer.open.set()
        assert metric(app, "logllm_lines_ingested_total", format="syslog_udp") == FIRST


def ship_with_syslog_ng(app: LiveApp, tmp_path: Path, lines: list[str], destination: str) -> None:
    _, port = address(app, "syslog_tcp")
    with syslog_ng(tmp_path, syslog_ng_config(log_file(tmp_path, lines), port, destination)):
        wait_accepted(app, "syslog_tcp", len(lines))


def test_syslog_ng_network_rfc3164_newline_framed(redis_url: str, tmp_path: Path, shared_data: Path) -> None:
    lines = hdfs_2k(shared_data)
    with live_app(redis_url, tmp_path, syslog_tcp=LISTEN, sources=HDFS_SOURCES) as app:
        ship_with_syslog_ng(app, tmp_path, lines, "network")
        assert_model_read(app, lines)


def test_syslog_ng_syslog_rfc5424_octet_counted(redis_url: str, tmp_path: Path, shared_data: Path) -> None:
    lines = hdfs_2k(shared_data)
    with live_app(redis_url, tmp_path, syslog_tcp=LISTEN, sources=HDFS_SOURCES) as app:
        ship_with_syslog_ng(app, tmp_path, lines, "syslog")
        assert_model_read(app, lines)
