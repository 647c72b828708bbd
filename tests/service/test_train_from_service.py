"""``logllm train --from-service URL --source S --unlabeled --register`` against a live service (uvicorn, real Redis,
the model router on tiny backbones): it trains on the source's kept normal windows read as the service reads the
source, registers the checkpoint, and the source's next window is scored by it. Bad input gets a clear error.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from model.checkpoint import Manifest
from tests.service.live_app import LiveApp, live_app
from tests.service.test_models import wait_for
from tests.training.test_trainer import run_cli

TOKEN = "s3cret"
LINE = "<13>Jan  1 00:00:{s:02d} host app[{pid}]: request {n} served in {ms} ms"


def serve(redis_url: str, tmp_path: Path, tiny_models: dict[str, Path], **overrides: Any) -> Any:
    options: dict[str, Any] = {
        "checkpoint": tiny_models["default"], "models": "{}", "models_poll_s": 0.05, "keep_normal_sample": 40,
        "auth_token": TOKEN, "device": "cpu", "quantize": "none", "torch_threads": 1, "novelty": "off",
        "window_mode": "fixed", "window_size": 3, "window_step": 3, "log_format": "rfc3164",
        "sources": json.dumps({"quiet": {"window_size": 3}}), **overrides,
    }  # fmt: skip
    return live_app(redis_url, tmp_path, real_model=True, **options)


def send_windows(app: LiveApp, source: str, windows: int, start: int = 0) -> list[str]:
    """``windows`` full windows of 3 syslog lines of the source; their ids."""
    closed: list[str] = []
    for w in range(start, start + windows):
        lines = [{"message": LINE.format(s=i, pid=100 + w, n=3 * w + i, ms=w + i), "source": source} for i in range(3)]
        answer = httpx.post(f"{app.url}/logs", json={"lines": lines}, headers=app.headers)
        assert answer.status_code == 200, answer.text
        closed += answer.json()["closed"]
    return closed


def verdict(app: LiveApp, window_id: str) -> dict[str, Any]:
    return wait_for(  # type: ignore[no-any-return]
        lambda: (
            (v := httpx.get(f"{app.url}/sequences/{window_id}/verdict", headers=app.headers).json())["status"]
            != "pending"
            and v
        ),
        window_id,
    )


def encoder_and_decoder(tiny_models: dict[str, Path]) -> list[str]:
    root = tiny_models["default"].parent  # tests/conftest.py's tiny_models: root/encoder, root/decoder
    return ["--encoder", str(root / "encoder"), "--decoder", str(root / "decoder"), "--quantize", "none"]


@pytest.mark.slow
def test_train_from_service_registers_a_model_that_then_scores_the_source(
    redis_url: str, tmp_path: Path, tiny_models: dict[str, Path]
) -> None:
    with serve(redis_url, tmp_path, tiny_models) as app:
        ids = send_windows(app, "web", 14)
        assert verdict(app, ids[-1])["model_version"] == Manifest.read(tiny_models["default"]).version
        sample = f"{app.url}/sources/web/training-sample"
        wait_for(lambda: httpx.get(sample, headers=app.headers).headers["x-logllm-sample-windows"] == "14", "sample")

        out = tmp_path / "web-model"
        argv = ["train", "--from-service", app.url, "--source", "web", "--unlabeled", "--register", "--recipe",
                "smoke", "--output", str(out), "--token", TOKEN, *encoder_and_decoder(tiny_models)]  # fmt: skip
        assert run_cli(*argv) == 0
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["reading"] == {"log_format": "rfc3164", "window_mode": "fixed", "window_size": 3,
                                       "window_step": 3}  # fmt: skip
        assert manifest["training"]["from_service"] == {"url": app.url, "source": "web", "sample_windows": 14,
                                                        "labeled_normal": 0, "labeled_anomalous": 0}  # fmt: skip
        assert manifest["training"]["unlabeled"] and manifest["training"]["stage1_samples"] == 4  # the smoke recipe
        kept = [json.loads(x) for x in (out / "training-sample.jsonl").read_text().splitlines()]
        first = kept[0]["lines"][0]
        assert (first["raw"], first["content"]) == (LINE.format(s=0, pid=100, n=0, ms=0), "request 0 served in 0 ms")

        new = send_windows(app, "web", 1, start=20)
        assert verdict(app, new[0])["model_version"] == manifest["version"]  # the source's own model decides
        record = httpx.get(f"{app.url}/sequences/{new[0]}", headers=app.headers).json()
        assert record["model_version"] == manifest["version"]
        other = send_windows(app, "quiet", 1)
        assert verdict(app, other[0])["model_version"] == Manifest.read(tiny_models["default"]).version
        web = next(s for s in httpx.get(f"{app.url}/sources", headers=app.headers).json()["items"]
                   if s["source"] == "web")  # fmt: skip
        assert web["model"] == "web"


def closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.slow
def test_train_from_service_names_what_is_wrong(redis_url: str, tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    base = ["train", "--source", "web", "--unlabeled", "--recipe", "smoke", "--output", str(tmp_path / "out"),
            *encoder_and_decoder(tiny_models)]  # fmt: skip
    url = closed_port()
    with pytest.raises(SystemExit, match=f"the service at {url} is unreachable: ConnectError"):
        run_cli(*base, "--from-service", url, "--token", TOKEN)
    with pytest.raises(SystemExit, match="--from-service trains on windows judged normal: add --unlabeled"):
        run_cli(*[a for a in base if a != "--unlabeled"], "--from-service", url)
    with pytest.raises(SystemExit, match="--register hands a model trained --from-service to that service"):
        run_cli(*base, "--register")
    with serve(redis_url, tmp_path, tiny_models) as app:
        send_windows(app, "web", 2)
        with pytest.raises(SystemExit, match="wants its token: give --token"):
            run_cli(*base, "--from-service", app.url)
        with pytest.raises(SystemExit, match=r"has never seen source 'nope' \(sources: quiet, web\)"):
            run_cli(*[a if a != "web" else "nope" for a in base], "--from-service", app.url, "--token", TOKEN)
        with pytest.raises(SystemExit, match=r"holds 0 normal windows of source 'quiet' .*--keep-normal-sample N"):
            run_cli(*[a if a != "web" else "quiet" for a in base], "--from-service", app.url, "--token", TOKEN)
    assert not (tmp_path / "out" / "manifest.json").exists()
