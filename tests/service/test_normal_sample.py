"""``--keep-normal-sample``: each source's bounded reservoir of normal windows, lines as shipped, in real Redis; the
token-guarded ``GET /sources/{source}/training-sample`` that serves it with the source's labeled windows; and
``GET /sources`` naming the command that trains a model for a source the model does not know.
"""

# ruff: noqa: F811  (the fixture make_client comes from test_app.py and is used as an argument)
from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.records.normal_sample import NormalSample, draw
from service.windows.store import ClosedWindow, Verdict, WindowStore
from tests.service.test_app import MakeClient, make_client, wait_for  # noqa: F401
from tests.service.test_patterns import KNOWN, WORDS, VocabularyScorer
from tests.service.test_records import fixed

HDFS = "081109 2036{n:02d} 148 INFO dfs.DataNode$PacketResponder: PacketResponder {n} for block blk_{n} terminating"
TOKEN = {"Authorization": "Bearer s3cret"}


def window(source: str, n: int, lines: int = 3) -> ClosedWindow:
    raw = [f"2024-01-01 host{source} step {i} of window {n}" for i in range(lines)]
    return ClosedWindow(
        entry_id="0-1", partition=0, window_id=f"fixed:{source}:{n * lines}", lines=[r.split(" ", 2)[2] for r in raw],
        reason="size", closed_at=1000.0 + n, window_key=f"fixed:{source}", raw_lines=raw,
    )  # fmt: skip


def verdict(w: ClosedWindow, label: str = "normal") -> Verdict:
    return Verdict(w.window_id, label, 0.1, 0.5, len(w.lines), "v1", w.closed_at, w.closed_at + 1)


def reservoir(ids: list[str], n: int) -> set[str]:
    """Algorithm R with the same draws, in Python: what the Lua script must keep."""
    slots: list[str] = []
    for seen, window_id in enumerate(ids, start=1):
        if seen <= n:
            slots.append(window_id)
        elif (j := int(draw(window_id) * seen)) < n:
            slots[j] = window_id
    return set(slots)


@pytest.mark.anyio
async def test_each_source_keeps_at_most_n_normal_windows_as_a_reservoir_with_their_raw_lines(
    make_store: Callable[..., Awaitable[WindowStore]],
) -> None:
    store = await make_store(partitions=4)
    sample = NormalSample(store, per_source=3)
    web = [window("web", n) for n in range(40)]
    db = [window("db", n) for n in range(2)]
    bad = window("db", 99)
    for batch in (web[:16], web[16:], [*db, bad]):  # the anomalous one and one not written are not offered
        written = {w.window_id for w in batch} - {web[5].window_id}
        await sample.keep([(w, verdict(w, "anomalous" if w is bad else "normal")) for w in batch], written)
    assert await sample.size("web") == (3, 39) and await sample.size("db") == (2, 2)
    kept = [w async for w in sample.windows("web")]
    assert {w["window_id"] for w in kept} == reservoir([w.window_id for w in web if w is not web[5]], 3)
    by_id = {w.window_id: w for w in web}
    for found in kept:
        shipped = by_id[found["window_id"]]
        assert [x["raw"] for x in found["lines"]] == shipped.raw_lines  # as shipped, header and all
        assert [x["content"] for x in found["lines"]] == shipped.lines
    assert [w["closed_at"] for w in kept] == sorted(w["closed_at"] for w in kept)
    keys = [k.decode() async for k in store.redis.scan_iter("*sample*")]
    for source in ("web", "db"):  # every key of a source in one slot: its patterns' partition
        mine = [k for k in keys if k.split(":", 2)[2].startswith(f"sample:{source}")]
        assert mine and {k.split(":")[1] for k in mine} == {f"{{p{store.partition('pat:' + source)}}}"}

    smaller = NormalSample(store, per_source=2)  # a restart with a smaller N drops the slots past it
    await smaller.keep([(w := window("web", 41), verdict(w))], {w.window_id})
    assert (await smaller.size("web"))[0] <= 2
    assert not [k async for k in store.redis.scan_iter("*sample:web:w:2")]


def test_the_training_sample_needs_the_token_and_brings_lines_as_shipped_and_labels(
    make_client: MakeClient,
) -> None:
    client = make_client(
        log_format="hdfs", window_mode="fixed", window_size=2, window_step=2, keep_normal_sample=3,
        auth_token="s3cret",
    )  # fmt: skip
    shipped: list[list[str]] = []
    for n in range(0, 10, 2):
        lines = [HDFS.format(n=n), HDFS.format(n=n + 1)]
        shipped.append(lines)
        answer = client.post("/logs", json={"lines": [{"message": m, "source": "dn"} for m in lines]}, headers=TOKEN)
        assert answer.status_code == 200, answer.text
    error = "081109 203700 148 ERROR dfs.DataNode: disk error on blk_7"
    bad = client.post("/logs", json={"lines": [{"message": error, "source": "dn"}] * 2}, headers=TOKEN)
    (bad_id,) = bad.json()["closed"]
    wait_for(lambda: client.get(f"/sequences/{bad_id}/verdict", headers=TOKEN).json()["status"] == "anomalous")
    labeled = client.post(f"/sequences/{bad_id}/feedback", json={"label": "anomalous"}, headers=TOKEN)
    assert labeled.status_code == 200, labeled.text

    assert client.get("/sources/dn/training-sample").status_code == 401

    def windows() -> list[dict[str, Any]]:
        answer = client.get("/sources/dn/training-sample", headers=TOKEN)
        assert answer.status_code == 200 and answer.headers["content-type"] == "application/x-ndjson"
        return [json.loads(line) for line in answer.text.splitlines()]

    found = wait_for(lambda: (ws := windows()) and ws[-1]["from"] == "feedback" and len(ws) == 4 and ws, 10, "sample")
    sampled, feedback = found[:3], found[3]
    assert {w["from"] for w in sampled} == {"sample"} and {w["label"] for w in sampled} == {"normal"}
    for w in sampled:
        assert [x["raw"] for x in w["lines"]] in shipped  # the whole line, header included
        assert [x["content"] for x in w["lines"]][0].startswith("PacketResponder ")
    assert (feedback["window_id"], feedback["label"]) == (bad_id, "anomalous")
    assert [(x["raw"], x["content"]) for x in feedback["lines"]] == [(error, "disk error on blk_7")] * 2
    headers = client.get("/sources/dn/training-sample", headers=TOKEN).headers
    assert (headers["x-logllm-sample-windows"], headers["x-logllm-sample-seen"]) == ("3", "5")

    missing = client.get("/sources/nope/training-sample", headers=TOKEN)
    assert (missing.status_code, missing.json()["field"]) == (404, "source")
    assert "no source 'nope' seen (sources: dn)" in missing.json()["message"]


def _source(client: TestClient, name: str) -> dict[str, Any]:
    return next(s for s in client.get("/sources").json()["items"] if s["source"] == name)  # type: ignore[no-any-return]


def test_sources_says_train_a_model_for_an_unknown_source_without_its_own(
    make_client: MakeClient, tiny_models: dict[str, Path]
) -> None:
    client = make_client(
        scorer=VocabularyScorer(), window_mode="fixed", window_size=4, window_step=4, novelty_warmup_s=600,
        coverage_min_lines=8, coverage_warn_below=0.5, keep_normal_sample=10, models="{}",
    )  # fmt: skip
    for _ in range(3):
        fixed(client, "known", KNOWN)
        fixed(client, "alien", WORDS)
    known, alien = _source(client, "known"), _source(client, "alien")
    assert (known["model"], known["train"]) == (None, None)
    assert alien["unknown_to_model"] and alien["model"] is None
    assert alien["train"]["hint"] == "train a model for this source"
    assert alien["train"]["command"] == (
        "logllm train --from-service http://testserver --source alien --unlabeled --register --output runs/alien"
    )
    assert alien["train"]["sample_windows"] == 3 and alien["train"]["missing"] == []

    assert client.post("/models", json={"source": "alien", "checkpoint": str(tiny_models["web"])}).status_code == 202
    alien = _source(client, "alien")
    assert (alien["model"], alien["train"]) == ("alien", None)  # a model of its own: nothing to suggest


def test_the_hint_says_what_the_service_still_lacks(make_client: MakeClient) -> None:
    client = make_client(
        scorer=VocabularyScorer(), window_mode="fixed", window_size=4, window_step=4, novelty_warmup_s=600,
        coverage_min_lines=4, coverage_warn_below=0.5, auth_token="s3cret", public_url="https://logs.example",
    )  # fmt: skip
    answer = client.post("/logs", json={"lines": [{"message": m, "source": "alien"} for m in WORDS]}, headers=TOKEN)
    assert answer.status_code == 200, answer.text
    train = wait_for(lambda: (s := _sources(client)) and s["train"], 10, "the hint")
    assert train["command"] == (
        "logllm train --from-service https://logs.example --source alien --unlabeled --register --output runs/alien"
        ' --token "$LOGLLM_TOKEN"'
    )
    assert train["missing"] == [
        "no normal window of it kept yet: start the service with --keep-normal-sample N",
        "--register needs the service started with --models",
    ]


def _sources(client: TestClient) -> dict[str, Any] | None:
    items = client.get("/sources", headers=TOKEN).json()["items"]
    return next((s for s in items if s["source"] == "alien"), None)
