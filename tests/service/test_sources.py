"""How the service reads each source, and whether its model knows them: the checkpoint's reading at start
(flag > env > checkpoint > default), ``--log-format auto`` decided once per source and shared by replicas through
a real Redis without losing a line, and ``GET /sources`` with vocabulary coverage, its gauge and its one warning.
"""

# ruff: noqa: F811  (the fixture make_client comes from test_app.py and is used as an argument)
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from redis.asyncio import Redis

from service.intake.formats import FormatDecision, SourceFormats
from service.patterns.keeper import UNKNOWN_SOURCE
from service.settings import ServiceSettings
from service.windows.reading import reading_summary, with_checkpoint_reading
from tests.service.test_app import MakeClient, make_client, scored, wait_for  # noqa: F401
from tests.service.test_patterns import KNOWN, WORDS, VocabularyScorer
from tests.service.test_records import fixed, record

HDFS_LINE = "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_{n} terminating"
BGL_LINES = [
    "- 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 R02-M1-N0-C:J12-U11 RAS KERNEL INFO"
    " instruction cache parity error corrected",
    "APPREAD 1117869872 2005.06.04 R04-M1-N4-I:J18-U11 2005-06-04-00.24.32.432192 R04-M1-N4-I:J18-U11 RAS APP"
    " FATAL ciod: failed to read message prefix on control stream",
    "- 1117838573 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.53.276129 R02-M1-N0-C:J12-U11 RAS KERNEL INFO"
    " generating core.2275",
]


def _checkpoint(tmp_path: Path, reading: dict[str, Any] | None) -> Path:
    directory = tmp_path / "ckpt"
    directory.mkdir()
    manifest: dict[str, Any] = {"format": "logllm-checkpoint/1"}
    if reading is not None:
        manifest["reading"] = reading
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


HDFS_READING = {"log_format": "hdfs", "window_mode": "session", "session_pattern": r"blk_-?\d+"}


def test_serve_reads_as_the_checkpoint_unless_a_flag_or_env_var_says_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = _checkpoint(tmp_path, {**HDFS_READING, "window_mode": "fixed", "window_size": 20, "window_step": 20})
    monkeypatch.delenv("LOGLLM_LOG_FORMAT", raising=False)
    monkeypatch.setenv("LOGLLM_WINDOW_SIZE", "30")
    flags = {"checkpoint": str(checkpoint), "window_step": "10"}
    settings = with_checkpoint_reading(ServiceSettings(**flags), flags)
    assert (settings.log_format, settings.window_mode, settings.window_size, settings.window_step) == (
        "hdfs", "fixed", 30, 10
    )  # fmt: skip
    assert {name: settings.reading_origin(name) for name in ("log_format", "window_size", "window_step")} == {
        "log_format": "checkpoint", "window_size": "env", "window_step": "flag"
    }  # fmt: skip
    assert settings.windowing("any").log_format == "hdfs"  # the windowings were resolved again

    monkeypatch.delenv("LOGLLM_WINDOW_SIZE")
    sources = json.dumps({"bgl": {"log_format": "bgl"}})
    flags = {"checkpoint": str(checkpoint), "log_format": "raw", "sources": sources}
    settings = with_checkpoint_reading(ServiceSettings(**flags), flags)
    assert settings.log_format == "raw" and settings.windowing("bgl").log_format == "bgl"
    summary = reading_summary(settings)
    assert summary[0].startswith("log_format=raw (flag), window_mode=fixed (checkpoint), session_pattern=")
    assert summary[1] == "source bgl: log_format=bgl (sources)"


def test_a_checkpoint_without_a_reading_and_a_stand_in_scorer_keep_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOGLLM_LOG_FORMAT", raising=False)
    old = _checkpoint(tmp_path, None)
    settings = with_checkpoint_reading(ServiceSettings(checkpoint=old), {"checkpoint": str(old)})
    assert settings.log_format == "raw" and settings.reading_origin("log_format") == "default"
    (tmp_path / "ckpt" / "manifest.json").write_text(json.dumps({"reading": HDFS_READING}))
    flags = {"checkpoint": str(old), "scorer": "bench.scorers:fixed_cost"}
    settings = with_checkpoint_reading(ServiceSettings(**flags), flags)
    assert settings.log_format == "raw"  # the stand-in is not the checkpoint


def _text(client: TestClient, lines: list[str], source: str) -> dict[str, Any]:
    response = client.post(
        "/logs", content="\n".join(lines), params={"source": source}, headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _source(client: TestClient, name: str) -> dict[str, Any]:
    response = client.get("/sources")
    assert response.status_code == 200, response.text
    (found,) = [s for s in response.json()["items"] if s["source"] == name]
    return found  # type: ignore[no-any-return]


def test_auto_decides_each_source_once_from_its_first_lines_for_every_replica_and_keeps_every_line(
    make_client: MakeClient,
) -> None:
    options = {"log_format": "auto", "window_mode": "fixed", "window_size": 4, "window_step": 4,
               "normal_lines_retention_s": 600}  # fmt: skip
    first, second = make_client(**options), make_client(**options)
    assert _text(first, BGL_LINES, "bgl") == _accepted(3)
    hdfs = [HDFS_LINE.format(n=n) for n in range(3)]
    assert _text(second, hdfs, "hdfs") == _accepted(3)
    # the second replica saw no line of source bgl before: it uses the decision the first one wrote
    ended = _text(second, ["a line of some other kind"], "bgl")
    assert ended["accepted"] == 1 and ended["rejected"] == []  # auto never refuses a line as bad_format
    (window_id,) = ended["closed"]
    scored(second, window_id)
    lines = record(second, window_id)["lines"]
    assert [line["content"] for line in lines] == [
        "instruction cache parity error corrected",
        "ciod: failed to read message prefix on control stream",
        "generating core.2275",
        "a line of some other kind",  # does not fit bgl: kept whole, as raw would
    ]
    assert lines[0]["raw"] == BGL_LINES[0]
    for client in (first, second):
        bgl, hdfs_source = _source(client, "bgl"), _source(client, "hdfs")
        assert bgl["reading"]["log_format"] == {
            "value": "bgl", "origin": "auto", "auto_origin": "given", "detected_from_lines": 3
        }  # fmt: skip
        assert hdfs_source["reading"]["log_format"]["value"] == "hdfs"
        assert bgl["reading"]["window_size"] == {"value": 4, "origin": "given"}


def _accepted(n: int) -> dict[str, Any]:
    return {"accepted": n, "rejected": [], "truncated": 0, "replaced": 0, "closed": []}


@pytest.mark.anyio
async def test_the_first_proposal_wins_for_every_replica(redis_url: str) -> None:
    async with Redis.from_url(redis_url) as one, Redis.from_url(redis_url) as two:
        a, b = SourceFormats(one), SourceFormats(two)
        assert (await a.settle({"x": FormatDecision("hdfs", 20, 1.0)}))["x"].format == "hdfs"
        # another replica whose own first lines of x looked raw takes the decision already written
        assert (await b.settle({"x": FormatDecision("raw", 2, 2.0)}))["x"] == FormatDecision("hdfs", 20, 1.0)
        assert b.known() == {"x": "hdfs"}
        assert (await SourceFormats(two).all())["x"].format == "hdfs"


def test_sources_report_coverage_and_flag_one_the_model_does_not_know_with_one_warning(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(
        scorer=VocabularyScorer(), window_mode="fixed", window_size=4, window_step=4, novelty_warmup_s=600,
        coverage_min_lines=8, coverage_warn_below=0.5,
    )  # fmt: skip
    caplog.set_level(logging.WARNING, logger="service.patterns.keeper")
    fixed(client, "known", KNOWN)
    fixed(client, "alien", WORDS)
    alien = _source(client, "alien")
    assert (alien["vocabulary_coverage"], alien["coverage_judged"], alien["unknown_to_model"]) == (0.0, False, False)
    for _ in range(3):
        fixed(client, "known", KNOWN)
        fixed(client, "alien", WORDS)
    known, alien = _source(client, "known"), _source(client, "alien")
    assert (known["lines"], known["windows"], known["vocabulary_coverage"]) == (16, 4, 1.0)
    assert (known["unknown_to_model"], known["warning"]) == (False, None)
    assert (alien["vocabulary_coverage"], alien["unknown_to_model"], alien["warning"]) == (0.0, True, UNKNOWN_SOURCE)
    assert alien["warming_up"] is True and alien["warm_up_until"] == pytest.approx(alien["first_seen"] + 600)
    assert alien["reading"]["window_mode"] == {"value": "fixed", "origin": "given"}
    warnings = [r.getMessage() for r in caplog.records if UNKNOWN_SOURCE in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("source alien: 0% of its recent lines"), warnings
    metrics = client.get("/metrics").text
    assert 'logllm_source_vocabulary_coverage{source="alien"} 0.0' in metrics
    assert 'logllm_source_vocabulary_coverage{source="known"} 1.0' in metrics


def test_sources_lists_configured_sources_before_their_first_line(make_client: MakeClient) -> None:
    client = make_client(sources=json.dumps({"syslog": {"log_format": "rfc3164"}}))
    found = _source(client, "syslog")
    assert found["reading"]["log_format"] == {"value": "rfc3164", "origin": "sources"}
    assert (found["lines"], found["vocabulary_coverage"], found["unknown_to_model"]) == (0, None, False)


def test_one_request_decides_each_of_its_sources_apart(make_client: MakeClient) -> None:
    client = make_client(log_format="auto", window_mode="fixed", window_size=50, window_step=50)
    syslog = '<165>1 2003-10-11T22:14:15.003Z host app - ID47 [x@1 a="1"] An application event {n}'
    lines = []
    for n in range(3):
        lines += [{"message": HDFS_LINE.format(n=n), "source": "dn"}, {"message": syslog.format(n=n), "source": "app"}]
    body = client.post("/logs", json={"lines": lines}).json()
    assert (body["accepted"], body["rejected"]) == (6, [])
    assert _source(client, "dn")["reading"]["log_format"]["value"] == "hdfs"
    assert _source(client, "app")["reading"]["log_format"]["value"] == "rfc5424"


def test_a_source_the_vocabulary_covers_skips_its_warm_up_and_an_unknown_one_keeps_it(
    make_client: MakeClient,
) -> None:
    client = make_client(
        scorer=VocabularyScorer(), window_mode="fixed", window_size=4, window_step=4, novelty_warmup_s=600,
        coverage_min_lines=4,
    )  # fmt: skip
    novel = [*KNOWN[:3], "fan 7 failed"]  # one template the vocabulary never saw
    first = scored(client, fixed(client, "known", novel))  # the source's first lines: warm-up, annotated
    assert (first["status"], first["novelty"]["novel"]) == ("normal", ["fan <*> failed"])
    for _ in range(3):
        fixed(client, "known", KNOWN)  # 15 of its 16 lines known: under 99%, still warming up
    assert _source(client, "known")["warming_up"] is True
    for _ in range(30):
        fixed(client, "known", KNOWN)
    assert _source(client, "known")["warming_up"] is False
    flagged = scored(client, fixed(client, "known", [*KNOWN[:3], "pump 9 failed"]))
    assert (flagged["status"], flagged["reason"]) == ("anomalous", "novel_template")  # covered: rules apply now
    fixed(client, "alien", WORDS)
    alien = scored(client, fixed(client, "alien", WORDS))
    assert (alien["status"], alien["reason"]) == ("normal", None)  # unknown lines: its warm-up goes on
