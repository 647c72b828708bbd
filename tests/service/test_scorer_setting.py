"""--scorer serves an importable Scorer instead of a checkpoint (what bench/faults.py runs the service with)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.app import create_app
from service.settings import ServiceSettings
from tests.service.test_app import scored, wait_for


def test_the_named_scorer_serves_without_a_checkpoint(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "scored.jsonl"
    monkeypatch.setenv("LOGLLM_BENCH_SCORED_LOG", str(log))
    settings = ServiceSettings(
        redis_url=redis_url, scorer="bench.scorers:RecordingScorer", checkpoint=tmp_path / "absent",
        max_session_lines=2, explain_top_k=0,  # no explanation: its variants would be scored (and logged) too
    )  # fmt: skip
    with TestClient(create_app(settings)) as client:
        wait_for(lambda: client.get("/health/ready").status_code == 200, what="ready")
        assert client.get("/health/ready").json()["model_version"] == "fault-bench"
        lines = [{"message": "blk_1 disk error qwer"}, {"message": "blk_1 retried asdf"}]
        assert client.post("/logs", json={"lines": lines}).json()["closed"] == ["session:default:blk_1"]
        assert scored(client, "session:default:blk_1")["status"] == "anomalous"
    assert [json.loads(text) for text in log.read_text().splitlines()] == [
        ["<*> disk error qwer", "<*> retried asdf"]
    ]


def test_a_scorer_that_is_not_module_colon_name_is_refused() -> None:
    with pytest.raises(ValidationError, match="scorer"):
        ServiceSettings(scorer="bench/scorers.py")
