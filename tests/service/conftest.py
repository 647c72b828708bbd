"""A real Redis for the service tests: one embedded redis-server per test session, flushed before each test.

Async tests run on anyio's pytest plugin (``pytest.mark.anyio``), which ships with anyio.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis
from redis.asyncio import Redis

from service.windows.embedded_redis import EmbeddedRedis
from service.windows.store import StoreConfig, WindowStore


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    """The shared server's url, emptied first so no test sees another's windows."""
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def make_store(redis_url: str) -> AsyncIterator[Callable[..., Awaitable[WindowStore]]]:
    """Stores on the flushed server, set up, with StoreConfig fields as keyword arguments."""
    clients: list[Redis] = []

    async def make(**config: Any) -> WindowStore:
        client = Redis.from_url(redis_url)
        clients.append(client)
        store = WindowStore(client, StoreConfig(**config))
        await store.setup()
        return store

    yield make
    for client in clients:
        await client.aclose()
