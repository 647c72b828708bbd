"""Patterns per source and the novelty rule over HTTP against a real Redis: flagging, learning (API, feedback,
mute, normal windows), the warm-up, the cap, the endpoints, auth and bad input. The model is test_app.py's
keyword scorer with a small training vocabulary, so every decision here is the novelty rule's, not the model's;
tests/service/test_patterns_hdfs.py runs the same story on the shipped checkpoint.
"""

# ruff: noqa: F811  (the fixture make_client comes from test_app.py and is used as an argument)
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from model.vocab import build_vocabulary, with_window_rules
from service.patterns.pattern_store import template_id
from tests.service.test_app import KeywordScorer, MakeClient, make_client, scored  # noqa: F401
from tests.service.test_records import explained, fixed, post, record, session

KNOWN = ["open file 1", "read block 2", "read block 3", "close file 4"]
FAN = "fan 7 failed"  # preprocessed: "fan <*> failed", a template training never saw
LOST = "block 9 lost"  # "block <*> lost": training saw it only in anomalous windows
KNOWN_TEMPLATES = ["open file <*>", "read block <*>", "read block <*>", "close file <*>"]  # KNOWN, preprocessed
WORDS = ["alpha happened", "beta happened", "gamma happened", "delta happened"]  # four templates


class VocabularyScorer(KeywordScorer):
    """The keyword model with the training vocabulary a checkpoint would carry."""

    vocabulary = build_vocabulary(
        [(["open file <*>", "read block <*>", "close file <*>"], 0), (["open file <*>", "block <*> lost"], 1)]
    )


def novelty_client(make_client: MakeClient, **overrides: Any) -> TestClient:
    return make_client(scorer=VocabularyScorer(), **{"novelty_warmup_s": 0, **overrides})


def pattern(client: TestClient, template: str, source: str = "default") -> dict[str, Any]:
    response = client.get(f"/patterns/{template_id(template)}", params={"source": source})
    assert response.status_code == 200, response.text
    (found,) = response.json()["sources"]
    return found  # type: ignore[no-any-return]


def test_an_unseen_template_flags_its_window_and_leads_the_explanation_until_learned(
    make_client: MakeClient, redis_url: str
) -> None:
    client = novelty_client(make_client)
    normal = scored(client, session(client, "n1", KNOWN))
    assert (normal["status"], normal["reason"], normal["novelty"]) == ("normal", None, None)

    flagged = session(client, "f1", [*KNOWN[:2], FAN, KNOWN[3]])
    verdict = scored(client, flagged)
    assert (verdict["status"], verdict["reason"]) == ("anomalous", "novel_template")
    assert verdict["score"] == pytest.approx(0.1)  # the model said normal; the rule decided
    assert verdict["novelty"] == {"novel": ["fan <*> failed"], "known_anomalous": [], "transitions": [], "counts": [],
                                  "missing": []}  # fmt: skip
    rec = explained(client, flagged)
    assert rec["reason"] == "novel_template" and rec["novelty"]["novel"] == ["fan <*> failed"]
    lead = rec["explanation"][0]
    assert (lead["message"], lead["line"], lead["novelty"]) == ("fan <*> failed", FAN, "novel")
    assert flagged in [r["id"] for r in client.get("/anomalies").json()["items"]]
    with redis.Redis.from_url(redis_url, decode_responses=True) as r:  # the verdict stream says why, too
        entries = {e["id"]: e for _, e in r.xrange("logllm:{delivery}:verdicts")}
    assert entries[flagged]["verdict_reason"] == "novel_template" and entries[normal["id"]]["verdict_reason"] == ""

    fan = pattern(client, "fan <*> failed")
    assert (fan["count"], fan["example"], fan["learned"], fan["new"]) == (1, FAN, None, True)
    assert fan["recent_windows"] == [flagged]
    learned = client.post(f"/patterns/{template_id('fan <*> failed')}/learn", params={"source": "default"})
    assert learned.status_code == 200 and learned.json()["learned"] == "api" and not learned.json()["new"]

    again = scored(client, session(client, "f2", [KNOWN[0], FAN]))
    assert (again["status"], again["reason"], again["novelty"]) == ("normal", None, None)
    assert pattern(client, "fan <*> failed")["recent_windows"] == ["session:default:f2", flagged]
    other_source = session(client, "f3", [KNOWN[0], FAN])  # learned by 'default' only
    assert scored(client, other_source)["status"] == "normal"
    post(client, {"message": FAN, "session_id": "f4", "source": "web"})
    assert client.post("/sequences/f4/close", params={"source": "web"}).status_code == 200
    assert scored(client, "session:web:f4")["reason"] == "novel_template"


def test_a_mute_or_normal_feedback_learns_the_windows_novel_templates(make_client: MakeClient) -> None:
    client = novelty_client(make_client)
    first = session(client, "m1", [KNOWN[0], FAN])
    muted = client.post(f"/sequences/{first}/feedback", json={"label": "normal", "mute": True})
    assert muted.status_code == 200 and muted.json()["learned"] == [template_id("fan <*> failed")]
    assert pattern(client, "fan <*> failed")["learned"] == "mute"
    assert scored(client, session(client, "m2", [KNOWN[0], KNOWN[3], FAN]))["status"] == "normal"

    pump = session(client, "p1", [KNOWN[0], "pump 3 stalled"])
    assert scored(client, pump)["reason"] == "novel_template"
    plain = client.post(f"/sequences/{pump}/feedback", json={"label": "normal", "note": "new pump firmware"})
    assert plain.json()["learned"] == [template_id("pump <*> stalled")]
    assert scored(client, session(client, "p2", ["pump 4 stalled"]))["status"] == "normal"
    confirm = client.post(f"/sequences/{first}/feedback", json={"label": "anomalous"})
    assert confirm.json()["learned"] == []


class SessionVocabularyScorer(KeywordScorer):
    """The keyword model with a vocabulary of whole sessions: every normal one opened, read and closed its file."""

    vocabulary = build_vocabulary(
        [(["open file <*>", "read block <*>", "close file <*>"], 0), (KNOWN_TEMPLATES, 0)], sessions=True
    )
    vocabulary.rare_transition = 1


def test_a_session_that_stops_early_is_a_novel_transition_until_an_operator_says_it_is_normal(
    make_client: MakeClient,
) -> None:
    client = make_client(scorer=SessionVocabularyScorer(), novelty_warmup_s=0)
    assert scored(client, session(client, "t0", KNOWN))["status"] == "normal"  # a path training sessions took
    stopped = session(client, "t1", KNOWN[:2])  # every template known; the session never closed its file
    verdict = scored(client, stopped)
    assert (verdict["status"], verdict["reason"], verdict["score"]) == ("anomalous", "novel_transition", 0.1)
    assert verdict["novelty"] == {"novel": [], "known_anomalous": [], "transitions": [["read block <*>", None]],
                                   "counts": [], "missing": []}  # fmt: skip
    assert record(client, stopped)["novelty"] == verdict["novelty"]

    said = client.post(f"/sequences/{stopped}/feedback", json={"label": "normal", "note": "reads only"})
    assert said.json()["learned"] == [f"{template_id('read block <*>')}>$"]
    assert scored(client, session(client, "t2", KNOWN[:3]))["status"] == "normal"  # the path is the source's now
    post(client, {"message": KNOWN[0], "session_id": "t3", "source": "web"}, {"message": KNOWN[1], "session_id": "t3",
         "source": "web"})  # fmt: skip
    assert client.post("/sequences/t3/close", params={"source": "web"}).status_code == 200
    assert scored(client, "session:web:t3")["reason"] == "novel_transition"  # learned by 'default' only


class SessionCountScorer(KeywordScorer):
    """The same sessions, with the count rule on instead: every normal session read its file once or twice."""

    vocabulary = replace(SessionVocabularyScorer.vocabulary, rare_transition=0, count_rule=True)


def test_a_session_with_a_count_no_normal_session_showed_is_a_novel_count_until_learned(
    make_client: MakeClient,
) -> None:
    client = make_client(scorer=SessionCountScorer(), novelty_warmup_s=0)
    assert scored(client, session(client, "n0", KNOWN))["status"] == "normal"  # two reads, as in training
    thrice = session(client, "n1", [*KNOWN[:3], "read block 5", KNOWN[3]])  # every path known, one read too many
    verdict = scored(client, thrice)
    assert (verdict["status"], verdict["reason"], verdict["score"]) == ("anomalous", "novel_count", 0.1)
    read, opened, closed = "read block <*>", "open file <*>", "close file <*>"
    assert verdict["novelty"]["counts"] == [[read, None, 3], [closed, read, -2], [opened, read, -2]]
    assert record(client, thrice)["novelty"] == verdict["novelty"]

    said = client.post(f"/sequences/{thrice}/feedback", json={"label": "normal", "note": "retries happen"})
    read_id = template_id(read)
    assert said.json()["learned"] == [
        f"#{read_id}=3", f"#{template_id(closed)}-{read_id}=-2", f"#{template_id(opened)}-{read_id}=-2"
    ]  # fmt: skip
    assert scored(client, session(client, "n2", [*KNOWN[:3], "read block 6", KNOWN[3]]))["status"] == "normal"
    four = session(client, "n3", [*KNOWN[:3], "read block 6", "read block 7", KNOWN[3]])
    assert scored(client, four)["novelty"]["counts"][0] == [read, None, 4]  # a label covers what it showed
    lines = [{"message": m, "session_id": "n4", "source": "web"} for m in [*KNOWN[:3], "read block 5", KNOWN[3]]]
    post(client, *lines)
    assert client.post("/sequences/n4/close", params={"source": "web"}).status_code == 200
    assert scored(client, "session:web:n4")["reason"] == "novel_count"  # learned by 'default' only


class ShapeScorer(KeywordScorer):
    """A model that doubts every session that closes its file (0.9), and the vocabulary of SessionVocabularyScorer
    with only the shape rule on: a session of a normal training session's shape is normal whatever it scores."""

    vocabulary = replace(SessionVocabularyScorer.vocabulary, rare_transition=0, count_rule=False)

    def __init__(self) -> None:
        super().__init__(keyword="close")


def test_a_session_of_a_normal_training_shape_is_normal_whatever_the_model_scores(make_client: MakeClient) -> None:
    client = make_client(scorer=ShapeScorer(), novelty_warmup_s=0)
    reordered = [KNOWN[1], KNOWN[0], KNOWN[2], KNOWN[3]]  # a normal training session's counts, in another order
    cleared = scored(client, session(client, "s0", reordered))
    assert (cleared["status"], cleared["reason"], cleared["score"]) == ("normal", None, 0.9)
    thrice = scored(client, session(client, "s1", [*KNOWN[:3], "read block 5", KNOWN[3]]))  # a shape never seen
    assert (thrice["status"], thrice["reason"], thrice["score"]) == ("anomalous", "model", 0.9)


class DoubtfulCountScorer(SessionCountScorer):
    """A model that doubts sessions with three reads (0.9) but passes them under its high threshold (0.95)."""

    threshold = 0.95

    def score(self, sequences: Sequence[Sequence[str]]) -> list[float]:
        super().score(sequences)
        return [0.9 if list(s).count("read block <*>") >= 3 else 0.1 for s in sequences]


def end_warm_up(redis_url: str, source: str) -> None:
    """Drive the clock: the source was first seen an hour and a second ago (Redis TIME), so its warm-up is over."""
    client = redis.Redis.from_url(redis_url)
    (meta,) = list(client.scan_iter(match=f"*pat:{source}:meta"))
    now, _ = client.time()
    client.hset(meta, "first_seen", str(now - 3601))


def test_a_warm_up_learns_counts_only_from_sessions_the_model_calls_clearly_normal(
    make_client: MakeClient, redis_url: str
) -> None:
    client = make_client(scorer=DoubtfulCountScorer(), novelty_warmup_s=3600)
    thrice = [*KNOWN[:3], "read block 5", KNOWN[3]]  # one read too many: the model doubts it (0.9)
    closed_twice = [*KNOWN, "close file 5"]  # one close too many: the model is sure it is normal (0.1)
    early = [scored(client, session(client, f"w{i}", lines)) for i, lines in enumerate([thrice, closed_twice])]
    assert [(v["status"], v["reason"], v["score"]) for v in early] == [("normal", None, 0.9), ("normal", None, 0.1)]
    assert [bool(v["novelty"]["counts"]) for v in early] == [True, True]  # annotated in the warm-up, not flagged
    end_warm_up(redis_url, "default")
    late = scored(client, session(client, "w2", thrice))
    assert (late["status"], late["reason"]) == ("anomalous", "novel_count")  # a doubted session taught nothing
    assert scored(client, session(client, "w3", closed_twice))["status"] == "normal"  # a clear one did


@pytest.mark.parametrize("scorer", [SessionVocabularyScorer, SessionCountScorer])
def test_fixed_windows_never_apply_the_session_rules(make_client: MakeClient, scorer: type[KeywordScorer]) -> None:
    client = make_client(scorer=scorer(), novelty_warmup_s=0, window_mode="fixed", window_size=2, window_step=2)
    window = fixed(client, "web", KNOWN[:2])  # a session checkpoint's rules; a fixed window's ends are cuts
    assert (scored(client, window)["status"], scored(client, window)["novelty"]) == ("normal", None)


OPENED, READ_, CLOSED, IDLE = "open file <*>", "read block <*>", "close file <*>", "idle <*>"
# fixed windows of six where every open is closed within two lines and a window reads at most twice
WINDOWS_OF_SIX = [[IDLE, OPENED, READ_, CLOSED, IDLE, IDLE], [OPENED, CLOSED, IDLE, OPENED, READ_, CLOSED],
                  [OPENED, READ_, CLOSED, READ_, IDLE, IDLE], [OPENED, CLOSED, IDLE, IDLE, IDLE, IDLE],
                  [OPENED, READ_, CLOSED, OPENED, READ_, CLOSED]] * 4  # fmt: skip


class WindowRulesScorer(KeywordScorer):
    """The keyword model with a fixed-window checkpoint's vocabulary, its window rules on."""

    vocabulary = with_window_rules(build_vocabulary((w, 0) for w in WINDOWS_OF_SIX), WINDOWS_OF_SIX, [], 0.0)


def test_a_fixed_window_missing_a_step_or_over_a_count_is_flagged_until_an_operator_says_it_is_normal(
    make_client: MakeClient,
) -> None:
    client = make_client(scorer=WindowRulesScorer(), novelty_warmup_s=0, window_mode="fixed", window_size=6,
                         window_step=6)  # fmt: skip
    assert scored(client, fixed(client, "web", ["idle 1", *KNOWN[:2], KNOWN[3], "idle 2", "idle 3"]))["status"] == (
        "normal"
    )
    left_open = fixed(client, "web", [*KNOWN[:2], "idle 4", "idle 5", "idle 6", "idle 7"])  # never closed
    verdict = scored(client, left_open)
    assert (verdict["status"], verdict["reason"], verdict["score"]) == ("anomalous", "missing_step", 0.1)
    assert verdict["novelty"]["missing"] == [[OPENED, CLOSED]]
    assert record(client, left_open)["novelty"] == verdict["novelty"]
    said = client.post(f"/sequences/{left_open}/feedback", json={"label": "normal", "note": "kept open"})
    assert said.json()["learned"] == [f"{template_id(OPENED)}~{template_id(CLOSED)}"]
    assert scored(client, fixed(client, "web", [*KNOWN[:2], "idle 8", "idle 9", "idle 1", "idle 2"]))["status"] == (
        "normal"
    )  # the source learned it
    burst = scored(client, fixed(client, "web", [KNOWN[0], KNOWN[3], *["read block 5"] * 4]))
    assert (burst["status"], burst["reason"], burst["novelty"]["counts"]) == ("anomalous", "novel_count",
                                                                              [[READ_, None, 4]])  # fmt: skip


def test_known_anomalous_templates_are_named_and_never_learned_from_a_window(make_client: MakeClient) -> None:
    client = novelty_client(make_client, novelty="annotate")
    window = session(client, "k1", [KNOWN[0], LOST, FAN])
    verdict = scored(client, window)  # annotate: the model decides, the templates are listed
    assert (verdict["status"], verdict["reason"]) == ("normal", None)
    assert verdict["novelty"] == {
        "novel": ["fan <*> failed"],
        "known_anomalous": ["block <*> lost"],
        "transitions": [],
        "counts": [],
        "missing": [],
    }
    assert record(client, window)["novelty"] == verdict["novelty"]
    assert pattern(client, "fan <*> failed")["learned"] == "normal_window"  # a normal window teaches it
    lost = pattern(client, "block <*> lost")
    assert (lost["learned"], lost["vocabulary"], lost["new"]) == (None, "anomalous_only", True)


def test_flag_names_a_known_anomalous_template_first(make_client: MakeClient) -> None:
    client = novelty_client(make_client)
    window = session(client, "k2", [KNOWN[0], FAN, LOST])
    verdict = scored(client, window)
    assert (verdict["status"], verdict["reason"]) == ("anomalous", "known_anomalous_template")
    assert verdict["novelty"] == {
        "novel": ["fan <*> failed"],
        "known_anomalous": ["block <*> lost"],
        "transitions": [],
        "counts": [],
        "missing": [],
    }
    explanation = explained(client, window)["explanation"]  # the rule's templates, no occlusion pass
    assert [(c["message"], c.get("novelty"), c["contribution"], c["count"]) for c in explanation] == [
        ("block <*> lost", "known_anomalous", None, 1), ("fan <*> failed", "novel", None, 1),
    ]  # fmt: skip


def test_off_lists_nothing_and_a_checkpoint_without_vocabulary_still_counts_patterns(
    make_client: MakeClient,
) -> None:
    client = novelty_client(make_client, novelty="off")
    verdict = scored(client, session(client, "o1", [KNOWN[0], FAN]))
    assert (verdict["status"], verdict["reason"], verdict["novelty"]) == ("normal", None, None)
    plain = make_client()  # KeywordScorer: no vocabulary, so no novelty rule; patterns still counted
    bad = scored(plain, session(plain, "o2", ["disk error 5"]))
    assert (bad["status"], bad["reason"], bad["novelty"]) == ("anomalous", "model", None)
    assert pattern(plain, "disk error <*>")["count"] == 1


def test_a_new_source_learns_during_its_warm_up_and_flags_after_it(make_client: MakeClient) -> None:
    client = novelty_client(make_client, novelty_warmup_s=1.5)
    started = time.monotonic()
    early = scored(client, session(client, "w1", [KNOWN[0], FAN]))
    assert time.monotonic() - started < 1.5, "the machine was too slow to score within the warm-up"
    assert (early["status"], early["novelty"]["novel"]) == ("normal", ["fan <*> failed"])
    assert pattern(client, "fan <*> failed")["learned"] == "normal_window"
    time.sleep(max(0.0, 1.6 - (time.monotonic() - started)))
    assert scored(client, session(client, "w2", [KNOWN[0], FAN]))["status"] == "normal"  # learned in warm-up
    late = scored(client, session(client, "w3", [KNOWN[0], "pump 1 stalled"]))
    assert (late["status"], late["reason"]) == ("anomalous", "novel_template")


def test_the_cap_trims_the_rarest_then_the_least_recently_seen(make_client: MakeClient) -> None:
    client = novelty_client(make_client, max_templates_per_source=3, novelty="off")
    session(client, "c1", ["alpha 1", "alpha 2", "alpha 3", "beta 1", "beta 2", "gamma 1"])
    session(client, "c2", ["delta 1", "delta 2"])  # 4 templates: gamma (1 seen) goes
    kept = {p["template"]: p["count"] for p in client.get("/patterns", params={"source": "default"}).json()["items"]}
    assert kept == {"alpha <*>": 3, "beta <*>": 2, "delta <*>": 2}
    session(client, "c3", ["epsilon 1", "epsilon 2"])  # beta and delta tie at 2: beta was seen longer ago
    kept = {p["template"]: p["count"] for p in client.get("/patterns", params={"source": "default"}).json()["items"]}
    assert kept == {"alpha <*>": 3, "delta <*>": 2, "epsilon <*>": 2}
    assert client.get(f"/patterns/{template_id('gamma <*>')}").status_code == 404


def test_patterns_page_newest_first_across_sources_with_filters_and_metrics(make_client: MakeClient) -> None:
    client = novelty_client(make_client, window_mode="fixed", window_size=2, window_step=2, metrics_max_sources=2)
    expected = []
    for i, source in enumerate(("a", "b", "c", "a")):
        lines = [f"open file {i}", WORDS[i]]
        response = client.post("/logs", json={"lines": [{"message": m, "source": source} for m in lines]})
        scored(client, response.json()["closed"][0])
        expected = [*(f"{source}:{t}" for t in ([WORDS[i]] + ([] if i == 3 else ["open file <*>"]))),
                    *expected]  # fmt: skip
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        body = client.get("/patterns", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        assert len(body["items"]) <= 2
        seen += body["items"]
        if not (cursor := body["next_cursor"]):
            break
    assert sorted(f"{p['source']}:{p['template']}" for p in seen) == sorted(expected)
    times = [p["first_seen"] for p in seen]
    assert times == sorted(times, reverse=True)
    new = client.get("/patterns", params={"new_only": True, "limit": 50}).json()["items"]
    assert sorted(p["template"] for p in new) == sorted(WORDS)
    only_a = client.get("/patterns", params={"source": "a"}).json()["items"]
    assert [p["template"] for p in only_a] == [WORDS[3], WORDS[0], "open file <*>"]
    since = only_a[0]["first_seen"]
    assert [p["template"] for p in client.get("/patterns", params={"since": since}).json()["items"]] == [WORDS[3]]
    shared = client.get(f"/patterns/{template_id('open file <*>')}").json()
    assert [s["source"] for s in shared["sources"]] == ["a", "b", "c"] and shared["template"] == "open file <*>"
    assert shared["sources"][0]["count"] == 2 and shared["sources"][0]["vocabulary"] == "normal"
    metrics = client.get("/metrics").text
    assert 'logllm_new_templates_total{source="a"} 3.0' in metrics
    assert 'logllm_new_templates_total{source="other"} 2.0' in metrics  # c, beyond metrics_max_sources


def test_bad_parameters_and_cursors_name_the_field(make_client: MakeClient) -> None:
    client = novelty_client(make_client)
    for i in range(3):
        session(client, f"b{i}", [WORDS[i]])
    cursor = client.get("/patterns", params={"limit": 1}).json()["next_cursor"]
    payload, signature = cursor.split(".")
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + signature
    for bad, params in ((forged, {}), ("garbage", {}), (cursor, {"new_only": True})):
        response = client.get("/patterns", params={"limit": 1, "cursor": bad, **params})
        assert response.status_code == 400, response.text
        assert (response.json()["reason"], response.json()["field"]) == ("invalid_cursor", "cursor")
    anomalies_cursor = client.get("/anomalies", params={"limit": 1}).json()["next_cursor"]
    assert client.get("/patterns", params={"cursor": anomalies_cursor}).status_code == 400  # another query's
    for path, params, field in (
        ("/patterns", {"limit": 0}, "limit"), ("/patterns", {"since": -1}, "since"),
        ("/patterns", {"source": "a b"}, "source"), ("/patterns", {"new_only": "maybe"}, "new_only"),
        ("/patterns/not-an-id", {}, "pattern_id"), ("/patterns/0123456789abcdef", {"source": "x:y"}, "source"),
    ):  # fmt: skip
        response = client.get(path, params=params)
        assert 400 <= response.status_code < 500, (path, params, response.text)
        assert response.json()["field"].endswith(field), (path, params, response.json())
    missing = client.get("/patterns/0123456789abcdef")
    assert missing.status_code == 404 and missing.json()["reason"] == "unknown_pattern"
    not_there = client.post(f"/patterns/{template_id(WORDS[0])}/learn", params={"source": "elsewhere"})
    assert not_there.status_code == 404 and not_there.json()["field"] == "pattern_id"


def test_every_patterns_endpoint_needs_the_token(make_client: MakeClient) -> None:
    client = make_client(scorer=VocabularyScorer(), auth_token="s3cret")
    some_id = template_id("open file <*>")
    for method, path in (("GET", "/patterns"), ("GET", f"/patterns/{some_id}"), ("POST", f"/patterns/{some_id}/learn")):
        response = client.request(method, path)
        assert response.status_code == 401, (method, path)
        assert response.json()["field"] == "Authorization"
    ok = client.get("/patterns", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and ok.json() == {"items": [], "next_cursor": None}


@pytest.mark.anyio
async def test_the_example_is_the_line_as_shipped(make_store: Any) -> None:
    from service.patterns.keeper import PatternKeeper
    from service.patterns.pattern_store import PatternStore
    from service.windows.store import ClosedWindow, Verdict

    store = await make_store()
    patterns = PatternStore(store)
    keeper = PatternKeeper(patterns, VocabularyScorer.vocabulary, "flag", 0.0)
    window = ClosedWindow("1-0", 0, "session:default:x", ["fan 7 failed"], "explicit", 0.0, "session:default:x",
                          raw_lines=["<12>Nov 23 host fand[1]: fan 7 failed"])  # fmt: skip
    pairs = [(window, Verdict(window.window_id, "normal", 0.1, 0.5, 1, "t", 0.0, 0.0))]
    decided = await keeper.decide(pairs, [["fan <*> failed"]])
    assert (decided[0][1].label, decided[0][1].reason) == ("anomalous", "novel_template")
    await keeper.record(decided, [["fan <*> failed"]])
    (found,) = await patterns.get(template_id("fan <*> failed"), "default")
    assert found["example"] == "<12>Nov 23 host fand[1]: fan 7 failed"  # raw_line(i), not the content
    assert found["recent_windows"] == ["session:default:x"]
