"""Grouped webhook pushes: one call per (target, source, reason) carries every anomaly of a storm.

A webhook with ``group_wait`` set does not get one call per window. Its jobs (still one per (target, window):
the same ``job:<id>`` hashes and ``done:<id>`` marks as outbox.py, so a window joins a group once and a
re-published verdict is not sent twice) wait in their group, and the group is sent whole, as Alertmanager
groups alerts: the first anomaly of a new group waits ``group_wait``; anomalies that arrive after a group was
sent wait until ``group_interval`` after that call. Keys (the outbox's slot, ``logllm:{delivery}:``):
``gdue`` (zset group id -> next send, unix s), ``grp:<gid>`` (zset job id -> enqueued at: the group's waiting
jobs), ``group:<gid>`` (hash: target, source, reason, interval, last_sent, attempts). Claiming moves the
group's due time a lease ahead, so two delivery loops never send a group twice and a dead sender's group
comes back. A group that fails is retried whole with the outbox's backoff and dead-lettered whole after
``webhook_max_attempts``. Times are the caller's clock (``DeliveryLoop.clock``), so tests drive them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from service.delivery.outbox import job_id
from service.windows.store import _text, _translated

MAX_GROUP = 500  # records per call; a larger group sends the rest in the next call at once

_ENQUEUE = """
local P, now, added = ARGV[1], tonumber(ARGV[2]), 0
for i = 3, #ARGV, 8 do
  local id, target, gid = ARGV[i], ARGV[i + 1], ARGV[i + 3]
  if redis.call('EXISTS', P .. 'job:' .. id) == 0 and redis.call('EXISTS', P .. 'done:' .. id) == 0 then
    redis.call('HSET', P .. 'job:' .. id, 'target', target, 'window', ARGV[i + 2], 'attempts', 0,
      'created_at', ARGV[2], 'group', gid)
    redis.call('ZADD', P .. 'grp:' .. gid, now, id)
    local g, interval = P .. 'group:' .. gid, tonumber(ARGV[i + 5])
    if not redis.call('ZSCORE', KEYS[1], gid) then
      local at = now + tonumber(ARGV[i + 4])
      local last = tonumber(redis.call('HGET', g, 'last_sent'))
      if last and last + interval > at then at = last + interval end
      redis.call('ZADD', KEYS[1], at, gid)
    end
    redis.call('HSET', g, 'target', target, 'interval', ARGV[i + 5], 'source', ARGV[i + 6], 'reason', ARGV[i + 7])
    redis.call('EXPIRE', g, math.ceil(interval) + 86400)
    added = added + 1
  end
end
return added
"""
_CLAIM = """
local P, out = ARGV[1], {}
for _, gid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[4]))) do
  local ids = redis.call('ZRANGE', P .. 'grp:' .. gid, 0, tonumber(ARGV[5]) - 1)
  local g = redis.call('HMGET', P .. 'group:' .. gid, 'target', 'source', 'reason', 'attempts')
  local jobs = {}
  for _, id in ipairs(ids) do
    local job = redis.call('HMGET', P .. 'job:' .. id, 'window', 'created_at')
    if job[1] then jobs[#jobs + 1] = {id, job[1], job[2]} else redis.call('ZREM', P .. 'grp:' .. gid, id) end
  end
  if #jobs == 0 or not g[1] then
    redis.call('ZREM', KEYS[1], gid)
  else
    redis.call('ZADD', KEYS[1], ARGV[3], gid)
    out[#out + 1] = {gid, g[1], g[2] or '', g[3] or '', g[4] or '0', jobs}
  end
end
return out
"""
_FINISH = """
local P, gid, now = ARGV[1], ARGV[2], ARGV[3]
local g = P .. 'group:' .. gid
for i = 7, #ARGV, 2 do
  local id = ARGV[i]
  redis.call('ZREM', P .. 'grp:' .. gid, id)
  redis.call('DEL', P .. 'job:' .. id)
  redis.call('SET', P .. 'done:' .. id, ARGV[i + 1], 'EX', tonumber(ARGV[4]))
end
if ARGV[5] == '1' then redis.call('HSET', g, 'last_sent', now, 'attempts', 0) end
if redis.call('ZCARD', P .. 'grp:' .. gid) > 0 then
  redis.call('ZADD', KEYS[1], ARGV[6], gid)
else
  redis.call('ZREM', KEYS[1], gid)
end
return 1
"""
_FAILED = """
local P, gid, now = ARGV[1], ARGV[2], ARGV[3]
local g = P .. 'group:' .. gid
local attempts = redis.call('HINCRBY', g, 'attempts', 1)
if attempts < tonumber(ARGV[5]) then
  redis.call('ZADD', KEYS[1], ARGV[4], gid)
  return 'retry'
end
for i = 8, #ARGV do
  local id, job = ARGV[i], P .. 'job:' .. ARGV[i]
  redis.call('ZREM', P .. 'grp:' .. gid, id)
  if redis.call('EXISTS', job) == 1 then
    redis.call('HSET', job, 'attempts', attempts, 'last_error', ARGV[6], 'last_try', now)
    redis.call('EXPIRE', job, tonumber(ARGV[7]))
    redis.call('ZADD', P .. 'dead', now, id)
    redis.call('SET', P .. 'done:' .. id, 'dead', 'EX', tonumber(ARGV[7]))
  end
end
redis.call('HSET', g, 'attempts', 0)
if redis.call('ZCARD', P .. 'grp:' .. gid) > 0 then
  redis.call('ZADD', KEYS[1], ARGV[4], gid)
else
  redis.call('ZREM', KEYS[1], gid)
end
return 'dead'
"""


def group_id(target_id: str, source: str, reason: str) -> str:
    """Like a job id (outbox.job_id), over target, source and reason."""
    return job_id(target_id, f"{source}\n{reason}")


@dataclass(frozen=True)
class GroupedJob:
    """An anomaly to push through a grouping target: (target, window), in the group of its source and reason."""

    target: str
    window_id: str
    source: str
    reason: str
    wait_s: float
    interval_s: float


@dataclass(frozen=True)
class Member:
    id: str
    window_id: str
    created_at: float


@dataclass(frozen=True)
class ClaimedGroup:
    id: str
    target: str
    source: str
    reason: str
    attempts: int  # failed calls of this group so far
    members: tuple[Member, ...]

    @property
    def delivery_id(self) -> str:
        """The call's id (X-Logllm-Delivery): the same for a retry of the same records."""
        joined = "\n".join(sorted(m.id for m in self.members))
        return hashlib.sha256(f"{self.id}\n{joined}".encode()).hexdigest()[:24]


class GroupOutbox:
    """The grouped half of the outbox (outbox.py holds the one-call-per-window jobs); same Redis slot."""

    def __init__(self, redis: Any, prefix: str, done_ttl_s: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.due_key = prefix + "gdue"
        self.done_ttl_s = done_ttl_s
        self._enqueue = redis.register_script(_ENQUEUE)
        self._claim = redis.register_script(_CLAIM)
        self._finish = redis.register_script(_FINISH)
        self._failed = redis.register_script(_FAILED)

    async def enqueue(self, jobs: Sequence[GroupedJob], now: float) -> int:
        """How many were new: a window already pending or done for a target joins no group again."""
        if not jobs:
            return 0
        args: list[Any] = [self.prefix, repr(now)]
        for j in jobs:
            gid = group_id(j.target, j.source, j.reason)
            args += [job_id(j.target, j.window_id), j.target, j.window_id, gid, j.wait_s, j.interval_s, j.source,
                     j.reason]  # fmt: skip
        with _translated():
            return int(await self._enqueue(keys=[self.due_key], args=args))

    async def claim(self, now: float, lease_s: float, count: int) -> list[ClaimedGroup]:
        """Due groups with up to MAX_GROUP of their waiting jobs each, oldest jobs first."""
        with _translated():
            found = await self._claim(
                keys=[self.due_key], args=[self.prefix, repr(now), repr(now + lease_s), count, MAX_GROUP]
            )
        return [
            ClaimedGroup(
                _text(gid), _text(target), _text(source), _text(reason), int(_text(attempts) or 0),
                tuple(Member(_text(i), _text(w), float(_text(c))) for i, w, c in members),
            )
            for gid, target, source, reason, attempts, members in found
        ]  # fmt: skip

    async def finish(
        self, group: ClaimedGroup, outcomes: Sequence[tuple[str, str]], sent: bool, next_at: float, now: float
    ) -> None:
        """Jobs done (job id, outcome); ``sent``: a call went out (the group's interval starts now). A group
        that still holds jobs is due again at next_at."""
        args: list[Any] = [self.prefix, group.id, repr(now), self.done_ttl_s, "1" if sent else "0", repr(next_at)]
        for jid, outcome in outcomes:
            args += [jid, outcome]
        with _translated():
            await self._finish(keys=[self.due_key], args=args)

    async def failed(self, group: ClaimedGroup, error: str, next_try: float, max_attempts: int, now: float) -> str:
        """A failed call: ``retry`` (the group is due again at next_try) or ``dead`` (its jobs dead-lettered)."""
        args = [self.prefix, group.id, repr(now), repr(next_try), max_attempts, error[:500], self.done_ttl_s,
                *(m.id for m in group.members)]  # fmt: skip
        with _translated():
            return _text(await self._failed(keys=[self.due_key], args=args))

    async def pending(self) -> int:
        """Groups waiting to be sent."""
        with _translated():
            return int(await self.redis.zcard(self.due_key))
