"""Records of scored windows over HTTP against a real Redis: what is kept, paging, sessions, feedback, mutes,
auth and bad parameters. The model is test_app.py's keyword scorer (anomalous iff a message says 'error'),
so the explanation must single out the 'error' message: the occlusion arithmetic runs for real.
"""

# ruff: noqa: F811  (the fixtures client and make_client come from test_app.py and are used as arguments)
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from tests.service.test_app import MakeClient, client, make_client, scored, wait_for  # noqa: F401
from training.data_generic import load_generic


def post(client: TestClient, *lines: dict[str, Any]) -> None:
    response = client.post("/logs", json={"lines": list(lines)})
    assert response.status_code == 200, response.text


def session(client: TestClient, sid: str, messages: list[str]) -> str:
    """Lines of one session, closed; the window id once it is scored."""
    post(client, *({"message": m, "session_id": sid} for m in messages))
    closed = client.post(f"/sequences/{sid}/close")
    assert closed.status_code == 200, closed.text
    window_id: str = closed.json()["id"]
    scored(client, window_id)
    return window_id


def fixed(client: TestClient, source: str, messages: list[str]) -> str:
    """One full fixed window of a source (window_size = len(messages)); its id once it is scored."""
    response = client.post("/logs", json={"lines": [{"message": m, "source": source} for m in messages]})
    assert response.status_code == 200, response.text
    (window_id,) = response.json()["closed"]
    scored(client, window_id)
    return window_id  # type: ignore[no-any-return]


def record(client: TestClient, window_id: str) -> dict[str, Any]:
    response = client.get(f"/sequences/{window_id.replace('#', '%23')}")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def explained(client: TestClient, window_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """The record once its explanation has landed (it follows the verdict, service/records/explainer.py)."""
    return wait_for(  # type: ignore[no-any-return]
        lambda: (r := record(client, window_id))["explanation_status"] != "pending" and r,
        timeout,
        f"the explanation of {window_id}",
    )


NORMAL = ["open file 1", "read block 2", "read block 3", "close file 4"]
ANOMALOUS = ["open file 1", "read block 2", "disk error on block 3", "read block 3", "close file 4"]


def test_an_anomalous_window_keeps_its_lines_and_an_explanation_a_normal_one_only_its_record(
    client: TestClient,
) -> None:
    bad = session(client, "s-bad", ANOMALOUS)
    good = session(client, "s-good", NORMAL)

    rec = explained(client, bad)
    assert rec["explanation_status"] == "done"
    assert rec["status"] == "anomalous" and rec["score"] == pytest.approx(0.9) and rec["threshold"] == 0.5
    where = (rec["kind"], rec["session_key"], rec["window_number"], rec["close_reason"])
    assert where == ("session", "session:default:s-bad", 0, "explicit")  # the window key, as /sessions/{key} takes
    assert rec["n_lines"] == 5 and rec["model_version"] == "keyword-test" and rec["closed_at"] <= rec["scored_at"]
    assert [x["line"] for x in rec["lines"]] == ANOMALOUS
    assert rec["lines"][2]["message"] == "disk error on block <*>"  # the preprocessed content
    top = rec["explanation"][0]
    assert top["message"] == "disk error on block <*>" and top["line"] == "disk error on block 3"
    assert top["contribution"] == pytest.approx(0.8)  # 0.9 with it, 0.1 without
    assert all(c["contribution"] == pytest.approx(0.0) for c in rec["explanation"][1:])
    assert len(rec["explanation"]) == 4  # 5 lines, 4 distinct messages (top-k is 5)

    normal = record(client, good)
    assert normal["status"] == "normal" and normal["lines"] == [] and not normal["lines_kept"]
    assert normal["explanation"] is None and normal["explanation_status"] is None


def test_normal_lines_are_kept_when_retention_says_so(make_client: MakeClient) -> None:
    client = make_client(normal_lines_retention_s=60)
    rec = record(client, session(client, "n1", NORMAL))
    assert [x["line"] for x in rec["lines"]] == NORMAL and rec["lines_kept"]


def test_max_records_trims_the_oldest_with_their_lines(make_client: MakeClient, redis_url: str) -> None:
    client = make_client(max_records=3, partitions=1)
    ids = [session(client, f"t{i}", ANOMALOUS) for i in range(5)]
    assert client.get(f"/sequences/{ids[0]}").status_code == 404
    assert client.get(f"/sequences/{ids[1]}").status_code == 404
    assert [r["id"] for r in client.get("/anomalies").json()["items"]] == ids[:1:-1]
    with redis.Redis.from_url(redis_url) as r:
        assert not r.exists(f"logllm:{{p0}}:rec:lines:{ids[0]}") and r.exists(f"logllm:{{p0}}:rec:lines:{ids[4]}")
        assert r.zcard("logllm:{p0}:rec:all") == 3
        assert 0 < r.ttl(f"logllm:{{p0}}:rec:{ids[4]}") <= 7 * 86_400


def test_anomalies_page_newest_first_across_partitions_with_filters(make_client: MakeClient) -> None:
    client = make_client(window_mode="fixed", window_size=5, window_step=5)
    ids = [fixed(client, "web" if i % 2 else f"db{i}", ANOMALOUS) for i in range(7)]
    quiet = fixed(client, "quiet", [*NORMAL, "done"])
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        body = client.get("/anomalies", params=params).json()
        assert len(body["items"]) <= 3
        seen += [r["id"] for r in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]  # newest first, every anomaly once, the normal window left out
    web = client.get("/anomalies", params={"source": "web"}).json()["items"]
    assert [r["id"] for r in web] == [i for n, i in enumerate(ids) if n % 2][::-1]
    times = [r["scored_at"] for r in client.get("/anomalies").json()["items"]]
    middle = sorted(times)[3]
    recent = client.get("/anomalies", params={"since": middle}).json()["items"]
    assert len(recent) == 4 and all(r["scored_at"] >= middle for r in recent)
    assert client.get("/anomalies", params={"min_score": 0.95}).json()["items"] == []
    assert [r["id"] for r in client.get("/anomalies", params={"status": "normal"}).json()["items"]] == [quiet]


def test_a_tampered_or_foreign_cursor_is_400(client: TestClient) -> None:
    for i in range(3):
        session(client, f"c{i}", ANOMALOUS)
    cursor = client.get("/anomalies", params={"limit": 1}).json()["next_cursor"]
    assert cursor
    payload, signature = cursor.split(".")
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + signature
    for bad, params in ((forged, {}), ("garbage", {}), (cursor, {"source": "other"})):
        response = client.get("/anomalies", params={"limit": 1, "cursor": bad, **params})
        assert response.status_code == 400, response.text
        assert response.json()["reason"] == "invalid_cursor" and response.json()["field"] == "cursor"


def test_bad_parameters_name_the_parameter(client: TestClient) -> None:
    for params, field in (
        ({"limit": 0}, "limit"), ({"limit": "x"}, "limit"), ({"min_score": 2}, "min_score"),
        ({"status": "weird"}, "status"), ({"source": "a b"}, "source"), ({"since": 5, "until": 1}, "since"),
    ):  # fmt: skip
        response = client.get("/anomalies", params=params)
        assert 400 <= response.status_code < 500, (params, response.text)
        assert response.json()["field"].endswith(field), (params, response.json())
    bad = client.post("/sequences/x/feedback", json={"label": "maybe"})
    assert bad.status_code == 422 and bad.json()["field"].endswith("label")
    assert client.get("/sequences/nothing-here").json()["reason"] == "unknown_record"


def test_a_session_lists_its_windows_in_order(make_client: MakeClient) -> None:
    client = make_client(max_session_lines=2)
    post(client, *({"message": f"line {i}", "session_id": "multi"} for i in range(5)))
    key = "session:default:multi"
    scored(client, f"{key}#1")
    body = wait_for(
        lambda: (b := client.get("/sessions/multi/windows").json())["windows"][1]["status"] == "normal" and b,
        what="both windows scored",
    )  # a bare session id means source 'default'
    assert [(w["id"], w["status"]) for w in body["windows"]] == [
        (key, "normal"), (f"{key}#1", "normal"), (f"{key}#2", "open"),
    ]  # fmt: skip
    assert client.get(f"/sessions/{key}/windows").json() == body  # the full key names the same session
    assert client.get("/sessions/never-seen/windows").status_code == 404


def test_feedback_is_stored_last_label_wins_and_exports_as_generic_training_data(
    client: TestClient, tmp_path: Path
) -> None:
    bad = session(client, "f-bad", ANOMALOUS)
    first = client.post(f"/sequences/{bad}/feedback", json={"label": "normal", "note": "oops"})
    assert first.status_code == 200, first.text
    second = client.post(f"/sequences/{bad}/feedback", json={"label": "anomalous"})
    assert second.status_code == 200
    feedback = record(client, bad)["feedback"]
    assert feedback["label"] == "anomalous" and feedback["note"] is None and feedback["at"] == second.json()["at"]
    assert client.post("/sequences/unknown/feedback", json={"label": "normal"}).status_code == 404

    export = client.get("/feedback", params={"since": 0})
    assert export.status_code == 200 and export.headers["content-type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in export.text.splitlines()]
    assert rows == [{"sequence_id": bad, "message": m, "label": "anomalous"} for m in ANOMALOUS]
    path = tmp_path / "feedback.jsonl"
    path.write_text(export.text)
    (sequence,) = load_generic(path)
    assert (sequence.sequence_id, sequence.label, len(sequence.messages)) == (bad, 1, 5)
    later = client.get("/feedback", params={"since": second.json()["at"] + 1})
    assert later.text == ""
    metrics = client.get("/metrics").text
    assert 'logllm_feedback_total{label="normal"} 1.0' in metrics


def test_a_muted_false_positive_mutes_later_windows_with_the_same_messages(client: TestClient) -> None:
    first = session(client, "m1", ANOMALOUS)
    response = client.post(f"/sequences/{first}/feedback", json={"label": "normal", "mute": True, "note": "known"})
    assert response.status_code == 200, response.text
    mute_id = response.json()["mute_id"]
    (mute,) = client.get("/mutes").json()["mutes"]
    assert mute["id"] == mute_id and mute["window_id"] == first and "disk error on block <*>" in mute["messages"]

    same_set = session(client, "m2", list(reversed(ANOMALOUS)) + ["open file 9"])  # same distinct messages
    other = session(client, "m3", [*ANOMALOUS, "fan error 7"])
    assert record(client, same_set)["status"] == "muted"
    assert record(client, other)["status"] == "anomalous"
    listed = [r["id"] for r in client.get("/anomalies").json()["items"]]
    assert same_set not in listed and other in listed
    assert [r["id"] for r in client.get("/anomalies", params={"status": "muted"}).json()["items"]] == [same_set]
    assert 'logllm_verdicts_total{label="muted"} 1.0' in client.get("/metrics").text

    refused = client.post(f"/sequences/{other}/feedback", json={"label": "anomalous", "mute": True})
    assert refused.status_code == 400 and refused.json()["field"] == "mute"
    assert client.delete(f"/mutes/{mute_id}").status_code == 200
    assert client.get("/mutes").json()["mutes"] == []
    assert client.delete(f"/mutes/{mute_id}").status_code == 404
    assert record(client, session(client, "m4", ANOMALOUS))["status"] == "anomalous"


def test_metrics_count_verdicts_by_bounded_source_and_explanations(make_client: MakeClient) -> None:
    client = make_client(metrics_max_sources=2, window_mode="fixed", window_size=5, window_step=5)
    windows = [fixed(client, source, ANOMALOUS) for source in ("a", "b", "c", "d")]
    for window in windows:
        explained(client, window)
    text = client.get("/metrics").text
    assert 'logllm_source_verdicts_total{label="anomalous",source="a"} 1.0' in text
    assert 'logllm_source_verdicts_total{label="anomalous",source="other"} 2.0' in text
    assert 'source="c"' not in text
    # one set of distinct messages: one occlusion pass, the three other windows share it (the cache)
    assert "logllm_explanation_seconds_count 1.0" in text
    assert 'logllm_explanations_total{how="occlusion"} 1.0' in text
    assert 'logllm_explanations_total{how="cached"} 3.0' in text
    assert len({json.dumps(record(client, w)["explanation"]) for w in windows}) == 1


def test_every_records_endpoint_needs_the_token(make_client: MakeClient) -> None:
    client = make_client(auth_token="s3cret")
    for method, path in (
        ("GET", "/anomalies"), ("GET", "/sequences/x"), ("GET", "/sessions/x/windows"), ("GET", "/feedback"),
        ("GET", "/mutes"), ("DELETE", "/mutes/x"), ("POST", "/sequences/x/feedback"),
    ):  # fmt: skip
        response = client.request(method, path, json={"label": "normal"})
        assert response.status_code == 401, (method, path)
        assert response.json()["field"] == "Authorization"
    ok = client.get("/anomalies", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and ok.json() == {"items": [], "next_cursor": None}


def test_feedback_export_cli_writes_what_train_reads(make_client: MakeClient, tmp_path: Path) -> None:
    from service.records.export_cli import FeedbackExportSettings, export_feedback

    client = make_client(auth_token="tok")
    auth = {"Authorization": "Bearer tok"}
    post_ok = client.post(
        "/logs", json={"lines": [{"message": m, "session_id": "cli"} for m in ANOMALOUS]}, headers=auth
    )
    assert post_ok.status_code == 200
    window_id = client.post("/sequences/cli/close", headers=auth).json()["id"]
    assert window_id == "session:default:cli"
    wait_for(lambda: client.get(f"/sequences/{window_id}", headers=auth).status_code == 200, what="record of cli")
    assert client.post(f"/sequences/{window_id}/feedback", json={"label": "normal"}, headers=auth).status_code == 200

    out = tmp_path / "export.jsonl"
    settings = FeedbackExportSettings(url=str(client.base_url), token="tok", output=out)
    with out.open("w") as handle:
        assert export_feedback(settings, client, handle) == (1, 0)
    (sequence,) = load_generic(out)
    assert (sequence.sequence_id, sequence.label, len(sequence.messages)) == (window_id, 0, len(ANOMALOUS))
    with pytest.raises(SystemExit, match="401"), (tmp_path / "x").open("w") as handle:
        export_feedback(FeedbackExportSettings(url=str(client.base_url)), client, handle)


def test_a_failed_window_keeps_its_lines_in_its_record(make_client: MakeClient, redis_url: str) -> None:
    from tests.service.test_app import KeywordScorer

    class FailsOnPoison(KeywordScorer):
        def score(self, sequences: Any) -> list[float]:
            if any("poison" in m for s in sequences for m in s):
                raise RuntimeError("tensor shape mismatch")
            return super().score(sequences)

    client = make_client(scorer=FailsOnPoison(), reclaim_idle_ms=50, max_deliveries=2)
    window_id = session(client, "p1", ["start", "poison pill", "end"])
    rec = record(client, window_id)
    assert rec["status"] == "failed" and rec["score"] is None and "2 times" in rec["error"]
    assert [x["line"] for x in rec["lines"]] == ["start", "poison pill", "end"]
    with redis.Redis.from_url(redis_url) as r:  # the dead-letter copy stays where complete.lua puts it
        assert r.keys(f"logllm:*:failed:{window_id}")
    assert [r["id"] for r in client.get("/anomalies", params={"status": "failed"}).json()["items"]] == [window_id]


def test_the_embedding_cache_hit_ratio_comes_from_the_model(make_client: MakeClient) -> None:
    from types import SimpleNamespace

    from tests.service.test_app import KeywordScorer

    class Cached(KeywordScorer):
        cache = SimpleNamespace(hits=0, misses=0)

        def score(self, sequences: Any) -> list[float]:
            self.cache.hits += 3 * len(sequences)
            self.cache.misses += len(sequences)
            return super().score(sequences)

    client = make_client(scorer=Cached())
    session(client, "cached", NORMAL)
    assert "logllm_embedding_cache_hit_ratio 0.75" in client.get("/metrics").text
