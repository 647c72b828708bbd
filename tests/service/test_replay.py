"""``logllm replay`` against a real HTTP server: a tiny FastAPI app under uvicorn on a loopback port records
what it receives, so order, exactly-once delivery through a 429, batching and pacing are seen on the wire."""

from __future__ import annotations

import argparse
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr

from service.replay import Pacer, ReplaySettings, ReplayStats, add_replay_parser, replay, run_replay

WINDOW_EVERY = 50  # the fake service "closes a window" every this many lines


@dataclass
class Recorder:
    """What the fake service received, and how it should misbehave."""

    lines: list[str] = field(default_factory=list)
    requests: list[dict[str, str]] = field(default_factory=list)
    answer_429_on: int | None = 2  # 1-based request number answered 429 (once)
    max_lines: int | None = None  # more lines than this in one request -> 413
    token: str | None = None


@dataclass
class Holder:
    """The recorder of the test running now: one server for the module, a fresh recorder per test."""

    recorder: Recorder = field(default_factory=Recorder)


def fake_service(holder: Holder) -> FastAPI:
    app = FastAPI()

    @app.post("/logs")
    async def logs(request: Request) -> JSONResponse:
        recorder = holder.recorder
        body = await request.body()
        content_type = request.headers.get("content-type", "")
        recorder.requests.append(
            {
                "content_type": content_type,
                "source": request.query_params.get("source", ""),
                "authorization": request.headers.get("authorization", ""),
            }
        )
        if recorder.token and request.headers.get("authorization") != f"Bearer {recorder.token}":
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        if len(recorder.requests) == recorder.answer_429_on:
            return JSONResponse({"error": "queue_full"}, status_code=429, headers={"Retry-After": "0.2"})
        if content_type.startswith("application/json"):
            lines = [line["message"] for line in json.loads(body)["lines"]]
        else:  # split as the real service does (bytes.splitlines), so a stray CR would show up here
            lines = [raw.decode() for raw in body.splitlines() if raw.strip()]
        if recorder.max_lines is not None and len(lines) > recorder.max_lines:
            return JSONResponse({"error": "body_too_large"}, status_code=413)
        before = len(recorder.lines)
        recorder.lines.extend(lines)
        closed = [f"w{n}" for n in range(before + 1, len(recorder.lines) + 1) if n % WINDOW_EVERY == 0]
        return JSONResponse({"accepted": len(lines), "rejected": [], "closed": closed})

    return app


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Holder]]:
    """One uvicorn server for the module on a socket bound to port 0 (no race for a free port)."""
    holder = Holder()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(fake_service(holder), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "fake service did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", holder
    uv.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def service(server: tuple[str, Holder]) -> tuple[str, Recorder]:
    """The server's URL and a fresh recorder (429 on the second request) for this test."""
    url, holder = server
    holder.recorder = Recorder()
    return url, holder.recorder


def write_log(path: Path, n: int, blank_every: int = 0) -> list[str]:
    """``n`` distinct lines (plus blank ones, which are not sent); returns the lines the service must get."""
    expected = []
    with path.open("w", newline="") as f:
        for i in range(n):
            line = f"081109 2035{i % 60:02d} 1{i:05d} INFO dfs.DataNode: line {i} blk_{i % 7}"
            f.write(line + "\n")
            expected.append(line)
            if blank_every and i % blank_every == 0:
                f.write("   \n")
    return expected


def test_text_replay_delivers_every_line_once_in_order_through_a_429(
    service: tuple[str, Recorder], tmp_path: Path
) -> None:
    url, recorder = service
    expected = write_log(tmp_path / "app.log", 300, blank_every=40)
    with (tmp_path / "app.log").open("ab") as f:  # a lone CR would split the line in a text/plain body
        f.write(b"carriage\rreturn blk_1\r\n")
    expected.append("carriage return blk_1")
    stats = ReplayStats()

    replay(str(tmp_path / "app.log"), ReplaySettings(url=url, rate=3000), stats, live=io.StringIO())

    assert recorder.lines == expected
    assert stats.lines_sent == stats.accepted == len(expected)
    assert stats.status_429 == 1 and stats.status_4xx == stats.status_5xx == 0
    assert stats.blank_skipped == 8
    assert stats.windows_closed == len(expected) // WINDOW_EVERY
    assert all(r["content_type"].startswith("text/plain") for r in recorder.requests)
    # batches of rate/10 lines: several requests, not one
    assert len(recorder.requests) == 1 + -(-len(expected) // 300)


def test_json_replay_sends_source_token_and_exact_messages(service: tuple[str, Recorder], tmp_path: Path) -> None:
    url, recorder = service
    recorder.token = "s3cret"
    expected = write_log(tmp_path / "app.log", 120)
    with (tmp_path / "app.log").open("ab") as f:
        f.write(b"tab\tand \xff byte blk_2\n")
    expected.append("tab\tand \ufffd byte blk_2")
    settings = ReplaySettings(
        url=url + "/", rate=5000, batch=50, format="json", source="web-1", token=SecretStr("s3cret")
    )

    stats = replay(str(tmp_path / "app.log"), settings, ReplayStats(), live=io.StringIO())

    assert recorder.lines == expected
    assert stats.status_429 == 1
    assert {r["source"] for r in recorder.requests} == {"web-1"}
    assert {r["authorization"] for r in recorder.requests} == {"Bearer s3cret"}
    assert all(r["content_type"] == "application/json" for r in recorder.requests)


def test_413_splits_the_batch_without_losing_a_line(service: tuple[str, Recorder], tmp_path: Path) -> None:
    url, recorder = service
    recorder.answer_429_on = None
    recorder.max_lines = 7
    expected = write_log(tmp_path / "app.log", 100)

    stats = replay(
        str(tmp_path / "app.log"),
        ReplaySettings(url=url, rate=50_000, batch=40),
        ReplayStats(),
        live=io.StringIO(),
    )

    assert recorder.lines == expected
    assert stats.status_4xx > 0 and stats.lines_sent == 100


def test_rate_limit_roughly_holds(service: tuple[str, Recorder], tmp_path: Path) -> None:
    url, recorder = service
    recorder.answer_429_on = None
    write_log(tmp_path / "app.log", 400)
    rate = 400.0

    started = time.monotonic()
    replay(str(tmp_path / "app.log"), ReplaySettings(url=url, rate=rate), ReplayStats(), live=io.StringIO())
    elapsed = time.monotonic() - started

    # ideal: the last of 10 batches of 40 leaves at 0.9 s; allow a factor of several either way
    assert 0.9 / 4 < elapsed < 0.9 * 8
    assert len(recorder.requests) == 10


def test_pacer_spreads_batches_and_does_not_burst_after_a_stall() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = Pacer(rate=100, clock=lambda: now[0], sleep=sleep, max_lag_s=1.0)
    for _ in range(3):
        pacer.wait()
        pacer.spent(10)
    assert slept == pytest.approx([0.1, 0.1])
    now[0] += 30  # a long Retry-After
    pacer.wait()  # late by far more than max_lag_s: restart the schedule, send now
    pacer.spent(10)
    pacer.wait()
    assert slept[-1] == pytest.approx(0.1)  # then back to the rate, not a catch-up burst


def test_cli_prints_summary_and_fails_with_resume_point_on_401(
    service: tuple[str, Recorder], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, recorder = service
    write_log(tmp_path / "app.log", 60)  # two batches of 30 at 300 lines/s; the second meets the 429
    parser = argparse.ArgumentParser(prog="logllm")
    add_replay_parser(parser.add_subparsers(dest="command", required=True))

    args = parser.parse_args(["replay", str(tmp_path / "app.log"), "--url", url, "--rate", "300"])
    assert run_replay(args) == 0
    out, err = capsys.readouterr()
    assert "replayed" in out and "60 lines sent" in out and "429: 1" in out and "windows closed: 1" in out
    assert "lines/s" in err  # the live line

    recorder.token = "needed"
    assert run_replay(args) == 1
    out, err = capsys.readouterr()
    assert "401" in err and "--skip 0" in err

    missing = parser.parse_args(["replay", str(tmp_path / "nope.log"), "--url", url])
    assert run_replay(missing) == 1
    assert "nope.log" in capsys.readouterr().err


def test_settings_come_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGLLM_REPLAY_RATE", "250")
    monkeypatch.setenv("LOGLLM_REPLAY_FORMAT", "json")
    settings = ReplaySettings()
    assert settings.rate == 250 and settings.format == "json"
    with pytest.raises(ValueError, match="http"):
        ReplaySettings(url="localhost:8000")
