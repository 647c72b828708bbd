"""GET /metrics shows source names (up to metrics_max_sources): --metrics-token closes it to all but the scraper,
whose credential opens nothing else."""

# ruff: noqa: F811  (make_client comes from test_app.py and is used as an argument)
from __future__ import annotations

from tests.service.test_app import MakeClient, make_client  # noqa: F401


def test_metrics_need_the_metrics_token_when_one_is_set(make_client: MakeClient) -> None:
    client = make_client(metrics_token="scrape", auth_token="api")
    assert client.post("/logs", json={"lines": [{"message": "x", "session_id": "s", "source": "web"}]},
                       headers={"Authorization": "Bearer api"}).status_code == 200  # fmt: skip
    missing = client.get("/metrics")
    assert missing.status_code == 401 and missing.json()["reason"] == "unauthorized"
    assert client.get("/metrics", headers={"Authorization": "Bearer api"}).status_code == 401
    scraped = client.get("/metrics", headers={"Authorization": "Bearer scrape"})
    assert scraped.status_code == 200 and 'logllm_lines_ingested_total{format="json"} 1.0' in scraped.text
    assert client.get("/anomalies", headers={"Authorization": "Bearer scrape"}).status_code == 401
    assert client.get("/health/ready").status_code == 200  # probes stay open


def test_metrics_are_open_without_a_metrics_token(make_client: MakeClient) -> None:
    client = make_client(auth_token="api")
    assert client.get("/metrics").status_code == 200
