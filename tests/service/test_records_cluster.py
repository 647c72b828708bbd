"""Records on a real three-node Redis Cluster: written with their verdicts, paged newest first across the
partitions (which live on different nodes), read, labeled and muted without a cross-slot command."""

# ruff: noqa: F811  (the fixtures cluster and cluster_url come from test_cluster.py and are used as arguments)
from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import ServiceSettings
from tests.service.test_app import KeywordScorer, scored, wait_for
from tests.service.test_cluster import PARTITIONS, cluster, cluster_url  # noqa: F401


def test_records_page_and_take_feedback_on_the_cluster(cluster_url: str, tmp_path: Path) -> None:
    settings = ServiceSettings(
        redis_url=cluster_url, redis_cluster=True, partitions=PARTITIONS, checkpoint=tmp_path, max_session_lines=3
    )
    with TestClient(create_app(settings, scorer=KeywordScorer())) as client:
        wait_for(lambda: client.get("/health/ready").status_code == 200, what="ready")
        ids = []
        for i in range(12):
            lines = [{"message": f"open {i}", "session_id": f"c{i}"}, {"message": "disk error", "session_id": f"c{i}"}]
            lines.append({"message": "close", "session_id": f"c{i}"})
            window_id = f"session:default:c{i}"
            assert client.post("/logs", json={"lines": lines}).json()["closed"] == [window_id]
            scored(client, window_id)
            ids.append(window_id)
        seen: list[str] = []
        cursor = None
        while True:
            body = client.get("/anomalies", params={"limit": 5, **({"cursor": cursor} if cursor else {})}).json()
            seen += [r["id"] for r in body["items"]]
            if not (cursor := body["next_cursor"]):
                break
        assert seen == ids[::-1]
        assert client.get(f"/sequences/{ids[3]}").json()["lines"][1]["line"] == "disk error"
        muted = client.post(f"/sequences/{ids[3]}/feedback", json={"label": "normal", "mute": True})
        assert muted.status_code == 200 and muted.json()["mute_id"]
        assert client.get("/feedback").text.count(f'"sequence_id": "{ids[3]}"') == 3
        lines = [{"message": m, "session_id": "again"} for m in ("open 3", "disk error", "close")]
        client.post("/logs", json={"lines": lines})
        assert scored(client, "session:default:again")["status"] == "muted"
        assert client.get("/sequences/session:default:again").json()["status"] == "muted"
