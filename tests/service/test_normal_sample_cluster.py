"""The normal sample on a real three-node Redis Cluster: sources whose samples live on different nodes each keep
their own N windows, and the training sample reads them, with no cross-slot command."""

# ruff: noqa: F811  (the fixtures cluster and cluster_url come from test_cluster.py and are used as arguments)
from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import ServiceSettings
from tests.service.test_app import KeywordScorer, scored, wait_for
from tests.service.test_cluster import PARTITIONS, cluster, cluster_url  # noqa: F401

SOURCES = [f"src{i}" for i in range(6)]


def test_each_source_keeps_its_sample_on_the_cluster(cluster_url: str, tmp_path: Path) -> None:
    settings = ServiceSettings(
        redis_url=cluster_url, redis_cluster=True, partitions=PARTITIONS, checkpoint=tmp_path, window_mode="fixed",
        window_size=2, window_step=2, keep_normal_sample=2,
    )  # fmt: skip
    with TestClient(create_app(settings, scorer=KeywordScorer())) as client:
        wait_for(lambda: client.get("/health/ready").status_code == 200, what="ready")
        store = client.app.state.service.store  # type: ignore[attr-defined]
        nodes = {store.redis.get_node_from_key(store.prefix(store.partition("pat:" + s))).name for s in SOURCES}
        assert len(nodes) > 1, "the samples should live on more than one node"
        for source in SOURCES:
            for n in range(3):
                lines = [{"message": f"{source} line {n}.{i}", "source": source} for i in range(2)]
                (window_id,) = client.post("/logs", json={"lines": lines}).json()["closed"]
                scored(client, window_id)

        def sample(source: str) -> list[dict[str, object]]:
            answer = client.get(f"/sources/{source}/training-sample")
            assert answer.status_code == 200, answer.text
            return [json.loads(line) for line in answer.text.splitlines()]

        for source in SOURCES:
            found = wait_for(lambda s=source: len(kept := sample(s)) == 2 and kept, what=f"{source}'s sample")
            for window in found:
                assert [x["raw"] for x in window["lines"]][0].startswith(f"{source} line ")  # type: ignore[index]
