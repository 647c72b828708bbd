"""The Elasticsearch bulk API on the live app: rsyslog's omelasticsearch in bulk mode ships HDFS_2k, malformed
lines are refused one by one in Elasticsearch's answer shape, a full queue answers 429 and rsyslog retries."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import httpx

from model.preprocess import preprocess
from tests.service.live_app import live_app
from tests.service.syslog_shippers import (
    FIRST,
    HeldScorer,
    hdfs_2k,
    held,
    log_file,
    metric,
    rsyslog,
    wait_accepted,
    wait_for,
)
from tests.service.test_intake_syslog import HDFS_SOURCES, assert_model_read, queue_full

NDJSON = {"content-type": "application/x-ndjson"}


def ndjson(*rows: object) -> bytes:
    return b"".join((row if isinstance(row, bytes) else json.dumps(row).encode()) + b"\n" for row in rows)


def test_bulk_items_answer_one_by_one_and_bad_lines_are_refused_alone(redis_url: str, tmp_path: Path) -> None:
    with live_app(redis_url, tmp_path, es_source_field="service") as app:
        root = httpx.get(f"{app.url}/")
        assert root.json()["version"]["number"] == "8.17.0"
        assert root.headers["x-elastic-product"] == "Elasticsearch"
        body = ndjson(
            {"index": {"_index": "web", "_id": "a"}},
            {"message": "cart saved blk_1"},
            b'{"index": {"_index": "web"',  # a broken action line: refused with its document
            {"message": "never read blk_2"},
            {"create": {}},  # no _index: the path's index names the source
            {"message": "order paid blk_3", "service": "shop"},
            {"index": {}},
            {"msg": "no message field blk_4"},
            {"delete": {"_id": "a"}},
            {"index": {}},
            b"{not json",
            {"index": {}},
            {"message": "session-less line"},
        )
        answer = httpx.post(f"{app.url}/logs-2026/_bulk", content=gzip.compress(body),
                            headers={**NDJSON, "content-encoding": "gzip"})  # fmt: skip
        assert answer.status_code == 200, answer.text
        result = answer.json()
        items = [next(iter(item.items())) for item in result["items"]]
        assert result["errors"] is True
        assert [(action, item["status"]) for action, item in items] == [
            ("index", 201), ("index", 400), ("create", 201), ("index", 400), ("delete", 400), ("index", 400),
            ("index", 400),
        ]  # fmt: skip
        assert items[0][1]["_id"] == "a" and items[0][1]["result"] == "created"
        assert "line 3" in items[1][1]["error"]["reason"]
        assert "no string field message" in items[3][1]["error"]["reason"]
        assert "line 11: not JSON" in items[5][1]["error"]["reason"]
        assert "no_session_id" in items[6][1]["error"]["reason"]
        wait_for(lambda: len(app.scored_messages()) >= 2, 30, "2 windows scored")
        assert app.scored_messages() == [[preprocess("cart saved blk_1")], [preprocess("order paid blk_3")]]
        ids = ["session:shop:blk_3", "session:web:blk_1"]
        wait_for(lambda: sorted(app.verdict_ids()) == ids, 30, f"verdicts of {ids}")
        assert metric(app, "logllm_lines_ingested_total", format="es_bulk") == 2
        assert metric(app, "logllm_lines_rejected_total", reason="bad_action", format="es_bulk") == 2
        assert metric(app, "logllm_lines_rejected_total", reason="bad_document", format="es_bulk") == 2
        single = httpx.put(f"{app.url}/web/_doc/z9", json={"message": "one more blk_9"})
        assert single.status_code == 201 and single.json()["_id"] == "z9"
        refused = httpx.post(f"{app.url}/web/_doc", json={"text": "x"})
        assert refused.status_code == 400 and refused.json()["error"]["type"] == "document_parsing_exception"


def test_bulk_routes_need_the_token(redis_url: str, tmp_path: Path) -> None:
    with live_app(redis_url, tmp_path, auth_token="s3cret") as app:
        body = ndjson({"index": {"_index": "web"}}, {"message": "blk_1 x"})
        assert httpx.post(f"{app.url}/_bulk", content=body, headers=NDJSON).status_code == 401
        assert httpx.post(f"{app.url}/web/_doc", json={"message": "blk_1 x"}).status_code == 401
        ok = httpx.post(f"{app.url}/_bulk", content=body, headers={**NDJSON, "authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["errors"] is False
        assert httpx.get(f"{app.url}/").status_code == 200  # the version only


def omelasticsearch_config(file: Path, port: int, extra: str = "") -> str:
    """imfile reads the file; omelasticsearch posts bulks with its default template (message = the line)."""
    return f"""
global(workDirectory="{{work}}")
module(load="imfile")
module(load="omelasticsearch")
input(type="imfile" file="{file}" tag="hdfs" ruleset="ship")
ruleset(name="ship") {{
  action(type="omelasticsearch" server="127.0.0.1" serverport="{port}" searchIndex="hdfs" bulkmode="on"
         errorFile="{{work}}/errors.json" {extra})
}}
"""


def test_rsyslog_omelasticsearch_bulk_mode(redis_url: str, tmp_path: Path, shared_data: Path) -> None:
    lines = hdfs_2k(shared_data)
    with live_app(redis_url, tmp_path, sources=HDFS_SOURCES) as app:
        port = int(app.url.rsplit(":", 1)[1])
        with rsyslog(tmp_path, omelasticsearch_config(log_file(tmp_path, lines), port)):
            wait_accepted(app, "es_bulk", len(lines))
        assert_model_read(app, lines)
        assert not (tmp_path / "rsyslog" / "errors.json").exists()


def test_rsyslog_omelasticsearch_sends_again_what_a_429_refused(
    redis_url: str, tmp_path: Path, shared_data: Path
) -> None:
    """A full queue answers 429 with every item 429 in the body. rsyslog reads the items, not the status: with
    retryfailures="on" and retryruleset (its docs' way to retry refused records) each refused line is sent again,
    once; without it, the batch would go to errorFile."""
    lines = hdfs_2k(shared_data)
    path = log_file(tmp_path, lines[:FIRST])
    scorer = HeldScorer()
    with live_app(redis_url, tmp_path, scorer=scorer, **held(HDFS_SOURCES)) as app:
        port = int(app.url.rsplit(":", 1)[1])
        # ratelimit.burst: retries of refused records count against it (default 20,000 per 600 s), and a queue
        # capped at 2 windows refuses many rounds on a loaded machine
        retry = 'retryfailures="on" retryruleset="ship" ratelimit.burst="1000000"'
        with rsyslog(tmp_path, omelasticsearch_config(path, port, retry)):
            try:
                wait_for(lambda: queue_full(app), 30, "the ready queue at its cap")
                with path.open("a", encoding="utf-8") as more:
                    more.writelines(f"{line}\n" for line in lines[FIRST:])
                probe = httpx.post(f"{app.url}/hdfs/_bulk", content=ndjson({"index": {}}, {"message": lines[0]}))
                assert probe.status_code == 429 and probe.json()["items"][0]["index"]["status"] == 429
                assert metric(app, "logllm_lines_ingested_total", format="es_bulk") < 2000
            finally:
                scorer.open.set()
            wait_accepted(app, "es_bulk", 2000, timeout=120)
        assert_model_read(app, lines)
