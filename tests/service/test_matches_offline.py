"""Verdicts from the live service equal `logllm score` on the same lines: same windows, same scores.

The real checkpoint (untrained projector, real backbones) and a real Redis; HDFS-like sessions in session mode and
BGL lines in fixed-window mode. Scores are batch-independent, so the online batches may differ from the offline ones.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_app import TEXT, scored, wait_for

import logllm_cli
from service.app import create_app
from service.settings import ServiceSettings

pytestmark = pytest.mark.slow
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def offline_scores(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict[str, tuple[int, float]]:
    """window id -> (lines, score), parsed from `logllm score` output."""
    with pytest.raises(SystemExit) as exited:
        logllm_cli.main(["score", *argv])
    assert exited.value.code == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()[1:]]
    return {row[0]: (int(row[1]), float(row[2])) for row in rows}


def online_scores(settings: ServiceSettings, text: str, close: list[str]) -> dict[str, tuple[int, float]]:
    with TestClient(create_app(settings)) as client:
        wait_for(lambda: client.get("/health/ready").status_code == 200, timeout=300, what="model ready")
        assert client.post("/logs", content=text, headers={"Content-Type": TEXT}).json()["rejected"] == []
        closed = [w for key in close if (w := client.post(f"/sequences/{key}/close").json().get("id"))]
        assert closed, "closing should flush at least one window"
        ids = sorted(set(closed) | {f"session:default:{key}" for key in close if ":" not in key})
        found = {w: scored(client, w, timeout=300) for w in ids}
    return {w: (v["n_lines"], v["score"]) for w, v in found.items()}


def test_hdfs_sessions_match_offline_scores(
    untrained_checkpoint: Path, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from model.windows import session_ids

    lines = (FIXTURES / "hdfs" / "HDFS.log").read_text().splitlines()[:12]
    log = tmp_path / "hdfs.log"
    log.write_text("\n".join(lines) + "\n")
    sessions = list(dict.fromkeys(sid for line in lines for sid in session_ids(line)))
    window_ids = [f"session:default:{sid}" for sid in sessions]
    common = ["--checkpoint", str(untrained_checkpoint), "--log-format", "hdfs", "--window-mode", "session"]
    offline = offline_scores(capsys, [str(log), *common])
    settings = ServiceSettings(
        redis_url=redis_url, checkpoint=untrained_checkpoint, device="cpu", log_format="hdfs", window_mode="session"
    )
    online = online_scores(settings, log.read_text(), sessions)
    assert set(online) == set(offline) == set(window_ids)
    for window_id, (n_lines, score) in offline.items():
        assert online[window_id][0] == n_lines
        assert online[window_id][1] == pytest.approx(score, abs=1e-5), window_id


def test_bgl_fixed_windows_match_offline_scores(
    untrained_checkpoint: Path, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = FIXTURES / "bgl" / "BGL.log"
    common = ["--checkpoint", str(untrained_checkpoint), "--log-format", "bgl", "--window-mode", "fixed"]
    sizes = ["--window-size", "10", "--window-step", "10", "--source", "bgl"]
    offline = offline_scores(capsys, [str(log), *common, *sizes])
    settings = ServiceSettings(
        redis_url=redis_url,
        checkpoint=untrained_checkpoint,
        device="cpu",
        log_format="bgl",
        window_mode="fixed",
        window_size=10,
        window_step=10,
    )
    text = log.read_text()
    with TestClient(create_app(settings)) as client:
        wait_for(lambda: client.get("/health/ready").status_code == 200, timeout=300, what="model ready")
        response = client.post("/logs?source=bgl", content=text, headers={"Content-Type": TEXT}).json()
        closed = list(response["closed"])
        tail = client.post("/sequences/fixed:bgl/close")
        if tail.status_code == 200:
            closed.append(tail.json()["id"])
        online = {w: scored(client, w, timeout=300) for w in closed}
    assert set(online) == set(offline)
    for window_id, (n_lines, score) in offline.items():
        assert online[window_id]["n_lines"] == n_lines
        assert online[window_id]["score"] == pytest.approx(score, abs=1e-5), window_id
