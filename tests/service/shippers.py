"""What the tests of real shippers share (tests/service/test_shippers_*.py): where the shippers are, the lines
they send, a service that answers 429 until told otherwise, and waiting for what the service counted.

scripts/ci_packages.d/shippers.sh installs them: the npm libraries in tests/shippers/node (`npm ci`), syslog-ng
with its http() module unpacked under /opt/logllm-shippers (it conflicts with rsyslog as a Debian package).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from model.log_formats import parse_line
from model.preprocess import preprocess
from model.windows import group_sessions
from tests.binaries import missing_binary
from tests.service.live_app import LiveApp

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "tests" / "shippers" / "node"
SHIPPERS_DIR = Path(os.environ.get("HTTP_SHIPPERS_DIR", "/opt/logllm-shippers"))
HDFS_SOURCES = json.dumps({"hdfs": {"log_format": "hdfs", "json_message_field": "msg"}})


def node() -> str:
    """node, with tests/shippers/node's packages installed (npm ci)."""
    found = shutil.which("node")
    if found is None:
        missing_binary("node not installed (Node.js 20; see scripts/ci_packages.d/shippers.sh)")
    if not (NODE_DIR / "node_modules" / "winston-loki").is_dir():
        missing_binary(f"npm packages not installed: run `npm ci` in {NODE_DIR}")
    return found


def syslog_ng() -> tuple[str, dict[str, str], Path]:
    """(binary, environment, module path) of syslog-ng with its http() module: the unpacked one, else PATH's."""
    unpacked = SHIPPERS_DIR / "syslog-ng"
    binary = unpacked / "usr" / "sbin" / "syslog-ng"
    modules = next(iter(sorted((unpacked / "usr" / "lib" / "syslog-ng").glob("3.*"))), None)
    if binary.is_file() and modules is not None and (modules / "libhttp.so").is_file():
        env = {**os.environ, "LD_LIBRARY_PATH": str(unpacked / "usr" / "lib" / "syslog-ng")}
        return str(binary), env, modules
    found = shutil.which("syslog-ng")
    system_modules = next(iter(sorted(Path("/usr/lib/syslog-ng").glob("3.*/libhttp.so"))), None)
    if found is None or system_modules is None:
        missing_binary(f"syslog-ng with its http() module not found under {unpacked} or on PATH (shippers.sh)")
    return found, dict(os.environ), system_modules.parent


def hdfs_lines(shared_data: Path, count: int = 2000) -> list[str]:
    lines = (shared_data / "HDFS" / "HDFS_2k.log").read_text().splitlines()
    return [line for line in lines if line.strip()][:count]


def hdfs_windows(lines: list[str]) -> list[list[str]]:
    """What the model should read of these lines, one sorted list per block session: each line's HDFS content,
    preprocessed (what a window of the hdfs source holds, the system's message and nothing a shipper added)."""
    contents = [parse_line(line, "hdfs").content for line in lines]
    sessions = group_sessions((content, preprocess(content)) for content in contents)
    return sorted(sorted(messages) for messages in sessions.values())


def scored_messages(app: LiveApp, expected: list[list[str]]) -> list[str]:
    """Every message the model read, sorted, once it read as many as ``expected`` holds; a few verdicts are read
    back by id (all of them: one GET per window). Messages, not windows: on a busy machine a session's lines may
    arrive further apart than the idle timeout and land in two windows."""
    total = sum(len(window) for window in expected)
    wait_for(f"{total} lines scored", lambda: sum(len(w) for w in app.scored_messages()) >= total)
    verdicts = lambda: sum(app.metric("logllm_verdicts_total", label=x) for x in ("normal", "anomalous"))  # noqa: E731
    wait_for("every verdict", lambda: verdicts() >= len(app.scored_messages()))
    for window_id in app.verdict_ids()[:5]:
        response = httpx.get(f"{app.url}/sequences/{quote(window_id, safe='')}/verdict", headers=app.headers)
        assert response.status_code == 200 and response.json()["status"] in ("normal", "anomalous"), response.text
    return sorted(message for window in app.scored_messages() for message in window)


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def ingested(app: LiveApp) -> float:
    """Lines accepted, all formats."""
    return sum(
        float(line.split()[-1])
        for line in app.metrics().splitlines()
        if line.startswith("logllm_lines_ingested_total{")
    )


def hold_the_queue(app: LiveApp) -> None:
    """From now on the service answers 429: scoring waits on the scorer's gate and one closed window fills the
    ready queue (start the app with max_ready_queue=1, partitions=1). ``release`` opens the gate."""
    app.scorer.gate.clear()
    text = {"content-type": "text/plain", **app.headers}
    response = httpx.post(f"{app.url}/logs?source=filler", content="filler blk_0", headers=text)
    assert response.status_code == 200, response.text
    closed = httpx.post(f"{app.url}/sequences/{quote('session:filler:blk_0', safe='')}/close", headers=app.headers)
    assert closed.status_code == 200, closed.text
    probe = httpx.post(f"{app.url}/logs?source=probe", content="probe blk_1", headers=text)
    assert probe.status_code == 429, probe.text
    app.log.clear()  # what follows is the shipper's


def release(app: LiveApp) -> None:
    app.scorer.gate.set()


def run_node(shipper: str, app: LiveApp, lines_file: Path, **options: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [node(), str(NODE_DIR / "ship.js"), shipper, app.url, str(lines_file), json.dumps(options)],
        cwd=NODE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 60.0) -> dict[str, Any]:
    """The shipper's summary line (ship.js), once it exits."""
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"the shipper did not finish in {timeout} s: {out} {err}") from None
    assert process.returncode == 0, (out, err)
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]
