"""Models per source: the mapping, the registry in Redis, and two live workers that follow it without a restart.

The checkpoints are real, on tiny backbones (conftest.py's ``tiny_models``): ``default`` never calls a window
anomalous (threshold 1), ``web`` and ``web2`` always do (threshold 0), so a verdict shows which model decided it.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from model.checkpoint import Manifest
from service.app import create_app
from service.scoring.models import ModelsError, ModelsSetting, Registration, best_match, scan_directory
from service.settings import ServiceSettings

MakeApp = Callable[..., TestClient]


def version(path: Path) -> str:
    return Manifest.read(path).version


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return found


# --- the mapping ------------------------------------------------------------------------------------------------


def test_an_exact_name_wins_then_the_glob_with_most_literal_characters() -> None:
    patterns = ["web-*", "web-api-*", "*", "db"]
    assert best_match("db", patterns) == "db"
    assert best_match("web-api-7", patterns) == "web-api-*"
    assert best_match("web-ui", patterns) == "web-*"
    assert best_match("cache", patterns) == "*"
    assert best_match("cache", ["web-*"]) is None


def test_bad_models_settings_name_the_pattern_or_path(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    with pytest.raises(ModelsError, match=r"web: checkpoint /nowhere/x not found"):
        ModelsSetting.parse('{"web": "/nowhere/x"}')
    with pytest.raises(ModelsError, match="not JSON"):
        ModelsSetting.parse('{"web": ')
    with pytest.raises(ModelsError, match="source pattern: source 'a:b'"):
        ModelsSetting.parse(json.dumps({"a:b": str(tiny_models["web"])}))
    with pytest.raises(ModelsError, match=f"{tmp_path / 'missing'} is neither a JSON object nor a directory"):
        ModelsSetting.parse(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="models\n.*web: checkpoint /nowhere/x not found"):
        ServiceSettings(models='{"web": "/nowhere/x"}')
    parsed = ModelsSetting.parse(json.dumps({"web-*": str(tiny_models["web"])}))
    assert parsed.mapping["web-*"].checkpoint == str(tiny_models["web"].resolve()) and parsed.enabled
    assert not ModelsSetting.parse("").enabled and ModelsSetting.parse("{}").enabled


def test_a_models_directory_maps_each_subdirectory_to_its_source(tmp_path: Path) -> None:
    (tmp_path / "hdfs").mkdir()
    (tmp_path / "web-*").mkdir()
    (tmp_path / "bad:name").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    found = scan_directory(tmp_path)
    assert sorted(found) == ["hdfs", "web-*"]
    assert found["hdfs"] == Registration(str(tmp_path / "hdfs"), "directory", "missing")


# --- two live workers -------------------------------------------------------------------------------------------


@pytest.fixture
def make_app(redis_url: str, tiny_models: dict[str, Path]) -> Iterator[MakeApp]:
    clients: list[TestClient] = []

    def make(ready: bool = True, **overrides: Any) -> TestClient:
        options: dict[str, Any] = {
            "redis_url": redis_url,
            "checkpoint": tiny_models["default"],
            "models": "{}",
            "models_poll_s": 0.05,
            "sweep_interval_s": 0.05,
            "max_batch_wait_ms": 5,
            "device": "cpu",
            "quantize": "none",
            "torch_threads": 1,
            "novelty": "off",
            **overrides,
        }
        client = TestClient(create_app(ServiceSettings(**options)))
        client.__enter__()
        clients.append(client)
        if ready:
            wait_for(lambda: client.get("/health/ready").status_code == 200, "ready")
        return client

    yield make
    for client in reversed(clients):
        client.__exit__(None, None, None)


def send_and_score(api: TestClient, source: str, session: str, messages: list[str] | None = None) -> dict[str, Any]:
    texts = messages or [f"{session} step {i}" for i in range(3)]
    lines = [{"message": text, "source": source, "session_id": session} for text in texts]
    assert api.post("/logs", json={"lines": lines}).status_code == 200
    window = f"session:{source}:{session}"
    assert api.post(f"/sequences/{window}/close").status_code == 200
    return wait_for(  # type: ignore[no-any-return]
        lambda: (v := api.get(f"/sequences/{window}/verdict").json())["status"] != "pending" and v, f"{window} scored"
    )


def served(worker: TestClient, api: TestClient, name: str) -> Callable[[], dict[str, Any] | None]:
    """The report of the worker whose consumer is ``name``."""
    return lambda: api.get("/models").json()["workers"].get(name)


@pytest.mark.slow
def test_two_workers_pick_up_a_registration_a_replacement_a_bad_checkpoint_and_a_removal(
    make_app: MakeApp, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    api = make_app(role="all", consumer="w1")
    worker = make_app(role="worker", consumer="w2", ready=False)
    wait_for(lambda: worker.get("/health/ready").status_code == 200, "worker ready")
    assert send_and_score(api, "web", "s0")["model_version"] == version(tiny_models["default"])

    answer = api.post("/models", json={"source": "web", "checkpoint": str(tiny_models["web"])})
    assert answer.status_code == 202, answer.text
    generation = answer.json()["generation"]
    for name in ("w1", "w2"):
        report = wait_for(lambda n=name: (r := served(worker, api, n)()) and r["generation"] >= generation and r, name)
        assert report["models"]["web"]["version"] == version(tiny_models["web"])
    for i in range(4):  # both workers score: whichever takes a window, the web model decides it
        found = send_and_score(api, "web", f"s{i + 1}")
        web = (found["status"], found["model_version"], found["threshold"])
        assert web == ("anomalous", version(tiny_models["web"]), 0.0)
    other = send_and_score(api, "db", "s1")
    assert (other["status"], other["model_version"]) == ("normal", version(tiny_models["default"]))
    record = api.get("/sequences/session:web:s1").json()
    assert record["model_version"] == version(tiny_models["web"])

    broken = tmp_path / "broken"
    shutil.copytree(tiny_models["web2"], broken)
    (broken / "decoder_lora" / "adapter_model.safetensors").write_bytes(b"not safetensors")
    generation = api.post("/models", json={"source": "web", "checkpoint": str(broken)}).json()["generation"]
    for name in ("w1", "w2"):
        report = wait_for(lambda n=name: (r := served(worker, api, n)()) and r["generation"] >= generation and r, name)
        assert str(broken) in report["errors"]["web"] and "failed to load" in report["errors"]["web"]
        assert report["models"]["web"]["version"] == version(tiny_models["web"])  # the old one keeps serving
    assert send_and_score(api, "web", "s9")["model_version"] == version(tiny_models["web"])

    generation = api.post("/models", json={"source": "web*", "checkpoint": str(tiny_models["web2"])}).json()
    assert generation["source"] == "web*"  # a glob over sources seen (web, db)
    assert api.delete("/models/web").status_code == 200
    last = api.get("/models").json()["generation"]
    for name in ("w1", "w2"):
        report = wait_for(lambda n=name: (r := served(worker, api, n)()) and r["generation"] >= last and r, name)
        assert set(report["models"]) == {"web*"} and report["errors"] == {}
    assert send_and_score(api, "web", "s10")["model_version"] == version(tiny_models["web2"])


@pytest.mark.slow
def test_post_models_refuses_bad_input_by_name(make_app: MakeApp, tiny_models: dict[str, Path], tmp_path: Path) -> None:
    api = make_app(role="api", auth_token="t0ken")
    auth = {"Authorization": "Bearer t0ken"}
    assert api.post("/models", json={"source": "web", "checkpoint": str(tiny_models["web"])}).status_code == 401

    def post(**body: Any) -> Any:
        return api.post("/models", json=body, headers=auth)

    missing = post(source="web", checkpoint=str(tmp_path / "nope"))
    assert (missing.status_code, missing.json()["field"]) == (422, "checkpoint")
    assert f"checkpoint {tmp_path / 'nope'} does not exist" in missing.json()["message"]
    partial = tmp_path / "partial"
    shutil.copytree(tiny_models["web"], partial)
    (partial / "encoder_lora" / "adapter_model.safetensors").unlink()
    answer = post(source="web", checkpoint=str(partial))
    assert answer.status_code == 422 and "encoder_lora/adapter_model.safetensors missing" in answer.json()["message"]
    bad = post(source="a b", checkpoint=str(tiny_models["web"]))
    assert (bad.status_code, bad.json()["field"]) == (422, "source")
    glob = post(source="nothing-*", checkpoint=str(tiny_models["web"]))
    assert glob.status_code == 422 and "source glob 'nothing-*' matches no source seen" in glob.json()["message"]
    assert post(source="nothing-*", checkpoint=str(tiny_models["web"]), allow_unmatched=True).status_code == 202
    assert api.delete("/models/unknown", headers=auth).status_code == 404
    listed = api.get("/models", headers=auth).json()
    assert listed["models"]["nothing-*"]["origin"] == "api" and listed["unmatched_globs"] == ["nothing-*"]


@pytest.mark.slow
def test_without_models_post_models_says_how_to_enable_it(make_app: MakeApp, tiny_models: dict[str, Path]) -> None:
    api = make_app(role="api", models="")
    answer = api.post("/models", json={"source": "web", "checkpoint": str(tiny_models["web"])})
    assert answer.status_code == 409 and "--models" in answer.json()["message"]


@pytest.mark.slow
def test_a_watched_directory_registers_and_removes_models(
    make_app: MakeApp, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    directory = tmp_path / "models"
    directory.mkdir()
    api = make_app(role="all", consumer="w1", models=str(directory))
    shutil.copytree(tiny_models["web"], directory / "web")
    report = wait_for(lambda: (r := served(api, api, "w1")()) and "web" in r["models"] and r, "web registered")
    assert report["models"]["web"]["origin"] == "directory"
    assert send_and_score(api, "web", "s1")["model_version"] == version(tiny_models["web"])
    removal = api.delete("/models/web")
    assert removal.status_code == 409 and "watched models directory" in removal.json()["message"]
    shutil.rmtree(directory / "web")
    wait_for(lambda: (r := served(api, api, "w1")()) and not r["models"], "web removed")
    assert send_and_score(api, "web", "s2")["model_version"] == version(tiny_models["default"])


@pytest.mark.slow
def test_the_novelty_rule_reads_the_vocabulary_of_the_model_that_scored_the_window(
    make_app: MakeApp, tiny_models: dict[str, Path]
) -> None:
    api = make_app(role="all", consumer="w1", novelty="annotate", novelty_warmup_s=0)
    api.post("/models", json={"source": "web", "checkpoint": str(tiny_models["web"])})
    wait_for(lambda: (r := served(api, api, "w1")()) and "web" in r["models"], "web registered")
    web = send_and_score(api, "web", "s1", ["x y", "x y", "a b"])  # web's vocabulary knows x y, not a b
    db = send_and_score(api, "db", "s1", ["x y", "x y", "a b"])  # the default's knows a b, not x y
    assert web["model_version"] == version(tiny_models["web"]) and web["novelty"]["novel"] == ["a b"]
    assert db["model_version"] == version(tiny_models["default"]) and db["novelty"]["novel"] == ["x y"]


# --- the router alone -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_batch_in_flight_finishes_on_the_models_it_started_with(tiny_models: dict[str, Path]) -> None:
    from service.scoring.model_router import load_router

    router = load_router(ServiceSettings(checkpoint=tiny_models["default"], models="{}", device="cpu"), spare_cores=0)
    web = Registration(str(tiny_models["web"]), "api", "1")
    router.apply(1, {"web": web})
    old = router.table
    applied = threading.Event()
    with router._busy:  # what route() holds for a batch
        thread = threading.Thread(target=lambda: (router.apply(2, {"web": Registration(web.checkpoint, "api", "2")}),
                                                  applied.set()))  # fmt: skip
        thread.start()
        wait_for(lambda: len(router.pool._models) == 3, "the replacement loaded")  # default, web, its replacement
        assert router.table is old and not applied.is_set()  # not swapped under the batch
        assert old.served["web"].model.adapter in old.served["web"].model.base.adapters  # not released either
    thread.join(60)
    assert applied.is_set() and router.table.generation == 2
    assert old.served["web"].model.released and len(router.pool._models) == 2
