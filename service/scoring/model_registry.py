"""Registered models in Redis: what every replica and worker serves, and what each worker reports it loaded.

``<prefix>:{models}:entries`` maps a source pattern to its Registration (JSON); ``...:generation`` counts changes,
so a worker polls one small GET and reads the entries only when they changed; ``...:workers`` holds each worker's
last report (the generation it applied, the version per pattern, load errors). One hash tag, so the scripts that
change entries and generation together run on Redis Cluster too. An ``api`` registration wins over the watched
directory's for the same pattern; a directory's entries are changed only through the directory.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from service.scoring.models import Registration

REGISTER = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur == ARGV[2] then return tonumber(redis.call('GET', KEYS[2]) or '0') end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return redis.call('INCR', KEYS[2])
"""
REMOVE = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return -1 end
if cjson.decode(cur).origin == 'directory' then return -2 end
redis.call('HDEL', KEYS[1], ARGV[1])
return redis.call('INCR', KEYS[2])
"""
SYNC_DIRECTORY = """
local want = cjson.decode(ARGV[1])
local changed = false
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if want[all[i]] == nil and cjson.decode(all[i + 1]).origin == 'directory' then
    redis.call('HDEL', KEYS[1], all[i])
    changed = true
  end
end
for pattern, value in pairs(want) do
  local cur = redis.call('HGET', KEYS[1], pattern)
  if cur ~= value and not (cur and cjson.decode(cur).origin == 'api') then
    redis.call('HSET', KEYS[1], pattern, value)
    changed = true
  end
end
if changed then return redis.call('INCR', KEYS[2]) end
return tonumber(redis.call('GET', KEYS[2]) or '0')
"""


class FromDirectory(Exception):
    """The pattern's model comes from the watched directory; only the directory removes it."""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class ModelRegistry:
    """The registrations and the workers' reports; ``redis`` is the window store's client."""

    def __init__(self, redis: Any, key_prefix: str = "logllm") -> None:
        self.redis = redis
        base = f"{key_prefix}:{{models}}:"
        self.entries_key, self.generation_key = base + "entries", base + "generation"
        self.workers_key = base + "workers"
        self._register = redis.register_script(REGISTER)
        self._remove = redis.register_script(REMOVE)
        self._sync = redis.register_script(SYNC_DIRECTORY)

    async def generation(self) -> int:
        return int(await self.redis.get(self.generation_key) or 0)

    async def entries(self) -> tuple[int, dict[str, Registration]]:
        """The generation and the entries it names, read together."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(self.generation_key)
            pipe.hgetall(self.entries_key)
            generation, raw = await pipe.execute()
        return int(generation or 0), {_text(k): Registration.from_json(v) for k, v in raw.items()}

    async def register(self, pattern: str, registration: Registration) -> int:
        """Set (or replace) a pattern's model; the new generation."""
        keys = [self.entries_key, self.generation_key]
        return int(await self._register(keys=keys, args=[pattern, registration.to_json()]))

    async def remove(self, pattern: str) -> int | None:
        """The new generation, None when the pattern had no registration; FromDirectory for a directory's."""
        found = int(await self._remove(keys=[self.entries_key, self.generation_key], args=[pattern]))
        if found == -2:
            raise FromDirectory(pattern)
        return None if found == -1 else found

    async def sync_directory(self, scanned: Mapping[str, Registration]) -> int:
        """Make the directory's entries exactly ``scanned`` (api registrations of a pattern stay); the generation."""
        want = json.dumps({p: r.to_json() for p, r in scanned.items()}) if scanned else "{}"
        return int(await self._sync(keys=[self.entries_key, self.generation_key], args=[want]))

    async def report(self, worker: str, report: Mapping[str, Any]) -> None:
        await self.redis.hset(self.workers_key, worker, json.dumps({**report, "at": time.time()}))

    async def reports(self, max_age_s: float) -> dict[str, Any]:
        """The workers' reports younger than ``max_age_s`` (older ones are dropped: their workers are gone)."""
        raw = await self.redis.hgetall(self.workers_key)
        now, out, stale = time.time(), {}, []
        for worker, value in raw.items():
            report = json.loads(value)
            if now - float(report.get("at", 0)) > max_age_s:
                stale.append(worker)
            else:
                out[_text(worker)] = report
        if stale:
            await self.redis.hdel(self.workers_key, *stale)
        return out
