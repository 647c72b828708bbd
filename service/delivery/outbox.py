"""A Redis-backed outbox: pending pushes survive restarts, are retried with backoff, and end in a dead letter.

Keys (one hash slot, ``logllm:{delivery}:``): ``due`` (sorted set job -> next try, unix s), ``job:<id>`` (hash:
target, window, attempts, created_at, last_error), ``done:<id>`` (marks a job delivered or given up, for
``done_ttl_s``, so a re-published verdict is not sent twice) and ``dead`` (sorted set of given-up jobs; their
hashes stay for ``done_ttl_s``). A job id is a hash of (target, window id): enqueueing is idempotent.

Claiming moves a job's due time a lease ahead instead of removing it, so a worker that dies mid-send leaves the
job to be tried again when the lease runs out; several workers can share one outbox.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from service.delivery.stream import delivery_prefix
from service.windows.store import _text, _translated

_ENQUEUE = """
local P, now, added = ARGV[1], ARGV[2], 0
for i = 3, #ARGV, 3 do
  local id = ARGV[i]
  if redis.call('EXISTS', P .. 'job:' .. id) == 0 and redis.call('EXISTS', P .. 'done:' .. id) == 0 then
    redis.call('HSET', P .. 'job:' .. id, 'target', ARGV[i + 1], 'window', ARGV[i + 2], 'attempts', 0,
      'created_at', now)
    redis.call('ZADD', KEYS[1], now, id)
    added = added + 1
  end
end
return added
"""
_CLAIM = """
local P, out = ARGV[1], {}
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[4]))
for _, id in ipairs(ids) do
  local job = redis.call('HMGET', P .. 'job:' .. id, 'target', 'window', 'attempts', 'created_at')
  if job[1] then
    redis.call('ZADD', KEYS[1], ARGV[3], id)
    out[#out + 1] = {id, job[1], job[2], job[3], job[4]}
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
"""
_FINISH = """
local P, id = ARGV[1], ARGV[2]
redis.call('ZREM', KEYS[1], id)
redis.call('DEL', P .. 'job:' .. id)
redis.call('SET', P .. 'done:' .. id, ARGV[3], 'EX', tonumber(ARGV[4]))
return 1
"""
_FAILED = """
local P, id = ARGV[1], ARGV[2]
local job = P .. 'job:' .. id
if redis.call('EXISTS', job) == 0 then redis.call('ZREM', KEYS[1], id) return 'gone' end
local attempts = redis.call('HINCRBY', job, 'attempts', 1)
redis.call('HSET', job, 'last_error', ARGV[4], 'last_try', ARGV[6])
if attempts >= tonumber(ARGV[5]) then
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZADD', P .. 'dead', ARGV[6], id)
  redis.call('EXPIRE', job, tonumber(ARGV[7]))
  redis.call('SET', P .. 'done:' .. id, 'dead', 'EX', tonumber(ARGV[7]))
  return 'dead'
end
redis.call('ZADD', KEYS[1], ARGV[3], id)
return 'retry'
"""


def job_id(target_id: str, window_id: str) -> str:
    return hashlib.sha256(f"{target_id}\n{window_id}".encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Job:
    id: str
    target: str
    window_id: str
    attempts: int  # failed tries so far
    created_at: float


def backoff_s(failures: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Exponential backoff with "equal jitter": half the doubled delay fixed, half random, so retries of many
    jobs that failed together spread out instead of hitting the receiver at the same instant."""
    delay = min(max_s, base_s * 2 ** max(0, failures - 1))
    return delay / 2 + rng.uniform(0, delay / 2)


class Outbox:
    def __init__(self, redis: Any, key_prefix: str, done_ttl_s: int) -> None:
        self.redis = redis
        self.prefix = delivery_prefix(key_prefix)
        self.due_key = self.prefix + "due"
        self.done_ttl_s = done_ttl_s
        self._enqueue = redis.register_script(_ENQUEUE)
        self._claim = redis.register_script(_CLAIM)
        self._finish = redis.register_script(_FINISH)
        self._failed = redis.register_script(_FAILED)

    async def enqueue(self, jobs: Sequence[tuple[str, str]], now: float) -> int:
        """(target id, window id) pairs; returns how many were new (a job pending or done is not re-added)."""
        if not jobs:
            return 0
        args: list[Any] = [self.prefix, repr(now)]
        for target, window in jobs:
            args += [job_id(target, window), target, window]
        with _translated():
            return int(await self._enqueue(keys=[self.due_key], args=args))

    async def claim(self, now: float, lease_s: float, count: int) -> list[Job]:
        with _translated():
            found = await self._claim(keys=[self.due_key], args=[self.prefix, repr(now), repr(now + lease_s), count])
        return [Job(_text(i), _text(t), _text(w), int(a), float(c)) for i, t, w, a, c in found]

    async def finish(self, job: Job, outcome: str = "delivered") -> None:
        """Delivered (or dropped on purpose): gone from the outbox, remembered as done."""
        with _translated():
            await self._finish(keys=[self.due_key], args=[self.prefix, job.id, outcome, self.done_ttl_s])

    async def postpone(self, job: Job, until: float) -> None:
        """Try again later without counting a failed attempt (the record is not written yet)."""
        with _translated():
            await self.redis.zadd(self.due_key, {job.id: until}, xx=True)

    async def failed(self, job: Job, error: str, next_try: float, max_attempts: int, now: float) -> str:
        """Count a failed try: ``retry`` (due again at next_try) or ``dead`` (the last allowed attempt)."""
        args = [self.prefix, job.id, repr(next_try), error[:500], max_attempts, repr(now), self.done_ttl_s]
        with _translated():
            return _text(await self._failed(keys=[self.due_key], args=args))

    async def pending(self) -> int:
        with _translated():
            return int(await self.redis.zcard(self.due_key))

    async def dead(self, limit: int = 100) -> list[dict[str, str]]:
        """Given-up jobs, newest first, with their last error."""
        with _translated():
            ids = await self.redis.zrevrange(self.prefix + "dead", 0, limit - 1)
            out = []
            for raw in ids:
                found = await self.redis.hgetall(self.prefix + "job:" + _text(raw))
                if found:
                    out.append({"id": _text(raw)} | {_text(k): _text(v) for k, v in found.items()})
        return out
