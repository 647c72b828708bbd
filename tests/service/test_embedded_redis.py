"""EmbeddedRedis: a private, loopback-only, persistent redis-server; what it holds survives a restart, a kill -9
of the server (the supervisor restarts it) and a kill -9 of its owner; one owner per data directory."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from redis.asyncio import Redis

from service.app import CLIENT_OPTIONS, create_app
from service.settings import ServiceSettings
from service.windows.embedded_redis import LOCK_FILE, PID_FILE, DataDirInUse, EmbeddedRedis
from service.windows.store import StoreConfig, WindowStore
from tests.service.test_app import KeywordScorer, scored, wait_for

REPO = Path(__file__).resolve().parents[2]


def test_it_answers_on_loopback_with_the_append_only_file_on(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "data") as server:
        assert server.url.startswith("redis://127.0.0.1:")
        with redis.Redis.from_url(server.url) as client:
            assert client.ping()
            assert client.config_get("appendonly") == {"appendonly": "yes"}
            assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
            assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
            assert client.config_get("bind") == {"bind": "127.0.0.1"}
            assert Path(client.config_get("dir")["dir"]) == (tmp_path / "data").resolve()
        process = server.process
        assert process is not None
    assert process.poll() is not None  # stopped on exit
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url


def test_without_a_data_dir_it_uses_a_temporary_one_and_removes_it() -> None:
    server = EmbeddedRedis()
    server.start()
    data_dir = server.data_dir
    assert data_dir is not None and data_dir.is_dir()
    server.stop()
    assert not data_dir.exists()


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "first") as first, pytest.raises(RuntimeError, match="did not answer"):
        EmbeddedRedis(tmp_path / "second", port=first.port).start()


def test_open_windows_and_queued_windows_survive_a_restart(tmp_path: Path) -> None:
    config = StoreConfig(partitions=4)

    async def before(url: str) -> None:
        async with Redis.from_url(url) as client:
            store = WindowStore(client, config)
            await store.setup()
            await store.append([("open", "still open"), ("queued", "q1"), ("queued", "q2")], "session")
            assert await store.close("queued") == "queued"

    async def after(url: str) -> None:
        async with Redis.from_url(url) as client:
            store = WindowStore(client, config)
            await store.setup()
            assert await store.open_windows() == 1
            assert await store.queue_depth() == 1
            [queued] = await store.read_batch("w", 10, 100, 0)
            assert (queued.window_id, queued.lines) == ("queued", ["q1", "q2"])
            assert await store.close("open") == "open"
            [reopened] = await store.read_batch("w", 10, 100, 0)
            assert reopened.lines == ["still open"]

    with EmbeddedRedis(tmp_path) as server:
        asyncio.run(before(server.url))
    assert (tmp_path / "appendonly.aof").is_file()
    with EmbeddedRedis(tmp_path) as server:
        asyncio.run(after(server.url))


def test_fsync_and_maxmemory_are_configurable(tmp_path: Path) -> None:
    with (
        EmbeddedRedis(tmp_path, maxmemory="64mb", fsync="always") as server,
        redis.Redis.from_url(server.url) as client,
    ):
        assert client.config_get("appendfsync") == {"appendfsync": "always"}
        assert client.config_get("maxmemory") == {"maxmemory": str(64 * 2**20)}
        assert (tmp_path / PID_FILE).read_text().strip() == str(client.info("server")["process_id"])


def test_a_second_server_on_the_same_data_dir_is_refused_at_once(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path) as first:
        started = time.monotonic()
        with pytest.raises(DataDirInUse, match=rf"{tmp_path}.*in use by process {os.getpid()}.*--redis-data-dir"):
            EmbeddedRedis(tmp_path).start()
        assert time.monotonic() - started < 2  # the owner is alive: no waiting for it
        with redis.Redis.from_url(first.url) as client:
            assert client.ping()  # the first one is untouched
    with EmbeddedRedis(tmp_path):  # released on stop
        pass


def test_a_second_logllm_serve_on_the_same_data_dir_exits_with_a_clear_message(tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "manifest.json").write_text("{}")  # the data dir is refused before the model is loaded
    with EmbeddedRedis(tmp_path / "data"):
        done = subprocess.run(
            [sys.executable, "-m", "service.cli", "serve", "--checkpoint", str(checkpoint),
             "--redis-data-dir", str(tmp_path / "data"), "--port", "1"],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode != 0  # uvicorn exits 3 when the app fails to start
    assert f"Redis data directory {tmp_path / 'data'} is in use by process {os.getpid()}" in done.stderr


def test_the_server_dies_with_its_owner_and_frees_the_data_dir(tmp_path: Path) -> None:
    """An owner killed with SIGKILL leaves no redis-server writing the AOF; the next owner starts at once."""
    script = (
        "import sys, time; from service.windows.embedded_redis import EmbeddedRedis; "
        f"s = EmbeddedRedis({str(tmp_path)!r}); s.start(); print(s.process.pid, flush=True); time.sleep(600)"
    )
    owner = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        server_pid = int(owner.stdout.readline())
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        wait_for(lambda: not Path(f"/proc/{server_pid}").exists() or _zombie(server_pid), 10, "redis-server exit")
    finally:
        owner.kill()
    with EmbeddedRedis(tmp_path) as server, redis.Redis.from_url(server.url) as client:
        assert client.ping()
    assert (tmp_path / LOCK_FILE).is_file()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


@pytest.mark.anyio
async def test_a_killed_server_is_restarted_with_its_data(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path) as server:
        supervisor = asyncio.create_task(server.supervise(interval_s=0.05))
        try:
            async with Redis.from_url(server.url, **CLIENT_OPTIONS) as client:
                await client.set("acknowledged", "yes")
                dead = server.process
                assert dead is not None
                os.kill(dead.pid, signal.SIGKILL)
                for _ in range(200):
                    if server.restarts:
                        break
                    await asyncio.sleep(0.05)
                assert server.restarts == 1 and server.process is not dead
                assert await client.get("acknowledged") == b"yes"  # the service's retry reconnects to the new server
        finally:
            supervisor.cancel()


def test_the_service_recovers_from_a_killed_embedded_redis_without_losing_lines(tmp_path: Path) -> None:
    """Post lines, kill -9 the redis-server: the service becomes ready again and every acknowledged line is
    still there and scored."""
    data = tmp_path / "redis"
    settings = ServiceSettings(
        redis_url="", redis_data_dir=data, checkpoint=tmp_path, max_session_lines=3, sweep_interval_s=0.05,
        idle_timeout_s=600,
    )  # fmt: skip
    scorer = KeywordScorer()
    scorer.gate.clear()  # hold the first batch: its windows are in flight when Redis dies
    with TestClient(create_app(settings, scorer=scorer)) as client:
        scorer.gate.set()
        wait_for(lambda: client.get("/health/ready").status_code == 200, what="ready")
        scorer.gate.clear()
        before = [{"message": f"blk_{i} {'error' if i == 1 else 'ok'} {n}"} for i in range(4) for n in range(3)]
        assert client.post("/logs", json={"lines": before}).json()["accepted"] == 12
        assert client.post("/logs", json={"lines": [{"message": "blk_9 open before"}]}).status_code == 200
        scorer.entered.wait(10)
        killed = (data / PID_FILE).read_text().strip()
        os.kill(int(killed), signal.SIGKILL)
        scorer.gate.set()
        wait_for(lambda: (data / PID_FILE).read_text().strip() not in ("", killed), 20, "a new redis-server")
        wait_for(lambda: client.get("/health/ready").status_code == 200, 20, "ready again")
        assert client.post("/logs", json={"lines": [{"message": "blk_9 open after"}]}).status_code == 200
        for i in range(4):
            found = scored(client, f"session:default:blk_{i}", timeout=20)
            assert (found["status"], found["n_lines"]) == ("anomalous" if i == 1 else "normal", 3)
        assert client.post("/sequences/blk_9/close").json()["id"] == "session:default:blk_9"  # open across the restart
        assert scored(client, "session:default:blk_9", timeout=20)["n_lines"] == 2
        health = client.get("/metrics").text
        assert "logllm_ready 1.0" in health, json.dumps(health[-300:])
