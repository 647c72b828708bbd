"""Patterns on a real three-node Redis Cluster: sources hash to partitions on different nodes, and counting,
the novelty lookup, paging across nodes, learning by API and by feedback all run without a cross-slot command."""

# ruff: noqa: F811  (the fixtures cluster and cluster_url come from test_cluster.py and are used as arguments)
from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from service.app import create_app
from service.patterns.pattern_store import template_id
from service.settings import ServiceSettings
from tests.service.test_app import scored, wait_for
from tests.service.test_cluster import PARTITIONS, cluster, cluster_url  # noqa: F401
from tests.service.test_patterns import FAN, KNOWN, VocabularyScorer

SOURCES = [f"src{i}" for i in range(6)]


def test_patterns_count_page_and_learn_on_the_cluster(cluster_url: str, tmp_path: Path) -> None:
    settings = ServiceSettings(
        redis_url=cluster_url, redis_cluster=True, partitions=PARTITIONS, checkpoint=tmp_path, novelty_warmup_s=0,
        window_mode="fixed", window_size=2, window_step=2,
    )  # fmt: skip
    with TestClient(create_app(settings, scorer=VocabularyScorer())) as client:
        wait_for(lambda: client.get("/health/ready").status_code == 200, what="ready")
        store = client.app.state.service.patterns  # type: ignore[attr-defined]
        nodes = {store.redis.get_node_from_key(store.store.prefix(store.partition_of(s))).name for s in SOURCES}
        assert len(nodes) > 1, "the sources should live on more than one node"
        flagged = {}
        for source in SOURCES:
            lines = [{"message": m, "source": source} for m in (KNOWN[0], FAN)]
            (window_id,) = client.post("/logs", json={"lines": lines}).json()["closed"]
            flagged[source] = scored(client, window_id)
        assert {v["reason"] for v in flagged.values()} == {"novel_template"}

        seen: list[str] = []
        cursor = None
        while True:
            body = client.get("/patterns", params={"limit": 4, **({"cursor": cursor} if cursor else {})}).json()
            seen += [f"{p['source']}:{p['template']}" for p in body["items"]]
            if not (cursor := body["next_cursor"]):
                break
        assert sorted(seen) == sorted(f"{s}:{t}" for s in SOURCES for t in ("open file <*>", "fan <*> failed"))
        fan = template_id("fan <*> failed")
        assert len(client.get(f"/patterns/{fan}").json()["sources"]) == len(SOURCES)

        assert client.post(f"/patterns/{fan}/learn", params={"source": "src0"}).status_code == 200
        window = next(iter(client.get("/anomalies", params={"source": "src1"}).json()["items"]))["id"]
        assert client.post(f"/sequences/{window}/feedback", json={"label": "normal"}).json()["learned"] == [fan]
        for source in SOURCES[:3]:
            lines = [{"message": m, "source": source} for m in (KNOWN[1], FAN)]
            (window_id,) = client.post("/logs", json={"lines": lines}).json()["closed"]
            status = "normal" if source in ("src0", "src1") else "anomalous"
            assert scored(client, window_id)["status"] == status, source
