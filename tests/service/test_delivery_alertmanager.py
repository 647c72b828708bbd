"""Anomalies as alerts in a real Alertmanager (Debian prometheus-alertmanager), read back through its API."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.binaries import require_binary
from tests.service.delivery_helpers import free_port, make_app, metric, nothing_left_to_send, plant, wait_for

__all__ = ["make_app"]  # fixture
CONFIG = """
route:
  receiver: discard
receivers:
  - name: discard
"""


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    binary = require_binary("prometheus-alertmanager", "alertmanager")
    (tmp_path / "am.yml").write_text(CONFIG)
    port = free_port()
    process = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'am.yml'}", f"--storage.path={tmp_path / 'am-data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, process.stderr.read().decode()[-2000:] if process.stderr else "exited"
        try:
            return httpx.get(url + "/-/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, timeout=30, what="Alertmanager to start")
    yield url
    process.terminate()
    process.wait(timeout=10)


def test_an_anomaly_becomes_an_alert_that_resolves(make_app: Callable[..., TestClient], alertmanager: str) -> None:
    app = make_app(alertmanager_url=alertmanager, alert_resolve_s=600, public_url="http://logllm.example:8000")
    window = plant(app, "blk_42", ["open blk_42", "checksum error on blk_42"])
    plant(app, "blk_43", ["open blk_43", "closed blk_43"])  # normal: no alert
    sent_at = time.time()

    def alerts() -> list[dict[str, object]]:
        found = httpx.get(alertmanager + "/api/v2/alerts", params={"filter": 'alertname="LogAnomaly"'}, timeout=5)
        found.raise_for_status()
        return list(found.json())

    (alert,) = wait_for(alerts, timeout=20, what="the alert in Alertmanager")
    wait_for(lambda: nothing_left_to_send(app), what="an outbox with nothing left to send, even after every lease")
    assert len(alerts()) == 1
    assert metric(app, "logllm_deliveries_total") == 1  # one push: Alertmanager would merge a second one
    assert alert["labels"] == {"alertname": "LogAnomaly", "source": "default", "window": window}
    annotations = alert["annotations"]
    assert isinstance(annotations, dict)
    assert float(annotations["score"]) == pytest.approx(0.9)
    assert annotations["record_url"] == "http://logllm.example:8000/sequences/" + window.replace(":", "%3A")
    assert "top_lines" in annotations
    ends = datetime.fromisoformat(str(alert["endsAt"]).replace("Z", "+00:00")).timestamp()
    assert sent_at + 590 < ends < sent_at + 620  # endsAt set: the alert resolves by itself
    assert isinstance(alert["status"], dict) and alert["status"]["state"] == "active"
