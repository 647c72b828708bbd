"""A session id that comes back after its numbering expired never takes the id of a record that is still kept.

A session's meta (its window numbering) expires with its verdicts (verdict_ttl_s, 1 day); its records live
anomaly_retention_s (7 days). Pod names and user ids recur: when one returned after a day, its numbering had
restarted at 0 and the new window's record replaced the old one (lines, explanation, feedback). Time is driven
on the keys themselves (``advance``): every key's TTL moves as if the seconds had passed, and the keys whose TTL
runs out go, as Redis would expire them; nothing sleeps.
"""

# ruff: noqa: F811  (the fixture make_client comes from test_app.py and is used as an argument)
from __future__ import annotations

import redis

from tests.service.test_app import MakeClient, make_client  # noqa: F401
from tests.service.test_records import ANOMALOUS, NORMAL, fixed, record, session

VERDICT_TTL_S = 600


def advance(redis_url: str, seconds: float) -> list[str]:
    """Move every key's expiry ``seconds`` closer, removing the keys it would have expired by then (their names)."""
    expired: list[str] = []
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        for key in client.scan_iter(count=1000):
            left_ms = client.pttl(key)
            if left_ms < 0:  # no TTL (-1) or gone meanwhile (-2)
                continue
            if left_ms <= seconds * 1000:
                client.unlink(key)
                expired.append(key)
            else:
                client.pexpire(key, left_ms - int(seconds * 1000))
    return expired


def test_a_session_id_back_after_its_numbering_expired_gets_a_new_window_id(
    make_client: MakeClient, redis_url: str
) -> None:
    client = make_client(verdict_ttl_s=VERDICT_TTL_S)  # records: anomaly_retention_s, 7 days by default
    first = session(client, "pod-1", ANOMALOUS)
    assert first == "session:default:pod-1"
    feedback = client.post(f"/sequences/{first}/feedback", json={"label": "anomalous", "note": "real incident"})
    assert feedback.status_code == 200, feedback.text

    expired = advance(redis_url, VERDICT_TTL_S + 1)  # a day later, in the test's terms
    assert any(key.endswith(":meta:session:default:pod-1") for key in expired)
    assert client.get(f"/sequences/{first}/verdict").status_code == 404  # the verdict expired, the record not

    again = session(client, "pod-1", NORMAL)
    assert again == "session:default:pod-1#1"
    old = record(client, first)
    assert old["status"] == "anomalous" and [x["line"] for x in old["lines"]] == ANOMALOUS
    assert old["feedback"]["note"] == "real incident"
    assert record(client, again)["status"] == "normal"
    windows = client.get("/sessions/session:default:pod-1/windows").json()
    assert [(w["id"], w["status"]) for w in windows["windows"]] == [(first, "anomalous"), (again, "normal")]


def test_an_open_window_of_a_returning_session_is_numbered_after_its_kept_records(
    make_client: MakeClient, redis_url: str
) -> None:
    """Before it closes, the window is already shown (and pending) under the id it will get."""
    client = make_client(verdict_ttl_s=VERDICT_TTL_S)
    first = session(client, "user-7", NORMAL)
    advance(redis_url, VERDICT_TTL_S + 1)
    assert client.post("/logs", json={"lines": [{"message": "back again", "session_id": "user-7"}]}).status_code == 200
    windows = client.get("/sessions/session:default:user-7/windows").json()["windows"]
    assert [(w["id"], w["status"]) for w in windows] == [(first, "normal"), (first + "#1", "open")]
    assert client.get("/sequences/session:default:user-7%231/verdict").json()["status"] == "pending"


def test_a_fixed_source_back_after_a_pause_continues_its_line_index(make_client: MakeClient, redis_url: str) -> None:
    client = make_client(verdict_ttl_s=VERDICT_TTL_S, window_mode="fixed", window_size=2, window_step=2)
    first = fixed(client, "web", ["disk error 1", "disk error 2"])
    advance(redis_url, VERDICT_TTL_S + 1)
    again = fixed(client, "web", ["all fine 3", "all fine 4"])
    assert (first, again) == ("fixed:web:0", "fixed:web:2")
    assert [x["line"] for x in record(client, first)["lines"]] == ["disk error 1", "disk error 2"]
