"""EmbeddedRedis: a private, loopback-only, persistent redis-server; what it holds survives a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis
from redis.asyncio import Redis

from service.windows.embedded_redis import EmbeddedRedis
from service.windows.store import StoreConfig, WindowStore


def test_it_answers_on_loopback_with_the_append_only_file_on(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "data") as server:
        assert server.url.startswith("redis://127.0.0.1:")
        with redis.Redis.from_url(server.url) as client:
            assert client.ping()
            assert client.config_get("appendonly") == {"appendonly": "yes"}
            assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
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
