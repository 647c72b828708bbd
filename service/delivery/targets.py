"""Where anomalies are pushed and what is sent: webhook bodies (signed) and Alertmanager alerts.

A target is named by a stable id (``webhook:<hash of url>``, ``alertmanager``), so an outbox job survives a
restart with reordered settings; secrets stay in the settings and never go to Redis.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field, HttpUrl, SecretStr

SIGNATURE_HEADER = "X-Logllm-Signature"
TIMESTAMP_HEADER = "X-Logllm-Timestamp"
DELIVERY_HEADER = "X-Logllm-Delivery"
ALERTMANAGER = "alertmanager"


class WebhookTarget(BaseModel):
    """One entry of ``--webhooks``: where to POST, and which anomalies it wants."""

    url: HttpUrl
    min_score: float = Field(default=0.0, ge=0, le=1, description="only windows scoring at least this")
    sources: list[str] | None = Field(default=None, description="only these sources (default: all)")
    secret: SecretStr | None = Field(default=None, description="signs the body with HMAC-SHA256")
    group_wait: float | None = Field(
        default=None,
        ge=0,
        description="seconds: group anomalies per source and reason (as Alertmanager does); a new group's first"
        " anomaly waits this long, then one call carries the whole group (default: one call per window)",
    )
    group_interval: float = Field(
        default=300.0,
        gt=0,
        description="with group_wait: anomalies that join a group after it was sent go out together this long"
        " after its last call",
    )

    @property
    def target_id(self) -> str:
        return "webhook:" + hashlib.sha256(str(self.url).encode()).hexdigest()[:16]

    def wants(self, source: str, score: float | None) -> bool:
        if self.sources is not None and source not in self.sources:
            return False
        return score is not None and score >= self.min_score


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``<timestamp>.<body>``: the timestamp is signed so a receiver can
    refuse replays of an old body."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver does (README shows the same in a few lines)."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def top_lines(record: dict[str, Any], limit: int = 5) -> list[dict[str, Any]]:
    """The record's explanation (``[{message, contribution, count, line}]``), strongest first."""
    explanation = record.get("explanation") or []
    return list(explanation)[:limit]


def _anomaly(record: dict[str, Any], record_url: str) -> dict[str, Any]:
    """One anomalous window as pushed: its record (without the full line list), its top lines and its URL.
    The push does not wait for the explanation: ``record.explanation_status`` says whether it had landed."""
    summary = {k: v for k, v in record.items() if k not in ("lines", "explanation")}
    return {"record": summary, "top_lines": top_lines(record), "url": record_url}


def webhook_body(record: dict[str, Any], record_url: str) -> bytes:
    """The JSON POSTed for one anomalous window."""
    body = {"event": "anomaly", **_anomaly(record, record_url)}
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def group_body(source: str, reason: str, items: list[tuple[dict[str, Any], str]]) -> bytes:
    """The JSON POSTed for a group: every anomaly of one source and reason since the group's last call, oldest
    first, each as ``webhook_body`` has it (record, top lines, url)."""
    anomalies = [_anomaly(record, url) for record, url in items]
    body = {"event": "anomalies", "source": source, "reason": reason, "count": len(anomalies), "anomalies": anomalies}
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def webhook_headers(job_id: str, body: bytes, secret: str | None, now: float) -> dict[str, str]:
    headers = {"Content-Type": "application/json", DELIVERY_HEADER: job_id}
    if secret:
        timestamp = str(int(now))
        headers[TIMESTAMP_HEADER] = timestamp
        headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
    return headers


def _weight(top: dict[str, Any]) -> str:
    """A top line's contribution, or the novelty kind of a template the novelty rule found (none measured)."""
    value = top.get("contribution")
    return f"{value:+.3f}" if isinstance(value, int | float) else str(top.get("novelty") or "")


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def alert_body(record: dict[str, Any], record_url: str, now: float, resolve_after_s: float) -> bytes:
    """One alert for Alertmanager's ``POST /api/v2/alerts``; ``endsAt`` makes it resolve by itself."""
    lines = "\n".join(
        f"{_weight(c)} {c.get('raw') or c.get('line') or c.get('message', '')}"[:300]
        for c in top_lines(record)
    )  # the line as shipped where the record kept it
    score = record.get("score")
    alert = {
        "labels": {"alertname": "LogAnomaly", "source": str(record.get("source", "")), "window": record["id"]},
        "annotations": {
            "score": f"{score:.4f}" if isinstance(score, float) else "",
            "top_lines": lines,
            "record_url": record_url,
        },
        "startsAt": _iso(float(record.get("scored_at") or now)),
        "endsAt": _iso(now + resolve_after_s),
        "generatorURL": record_url,
    }
    return json.dumps([alert], separators=(",", ":")).encode()
