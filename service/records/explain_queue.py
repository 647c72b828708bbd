"""The queue of records whose explanation is still to come: per partition, ``rec:explain`` (zset due -> id).

complete.lua adds a window to it in the same call that writes its verdict and record (records_lib.lua), so the
queue survives restarts and holds exactly the records still waiting. A worker claims entries by moving their
due time a lease ahead (Redis clock) rather than removing them: a worker that dies with claimed entries leaves
them to the next claimer once the lease runs out. The claim returns what an explanation needs (score, novelty,
messages and the kept lines) in the same round trip. Writing the explanation removes the entry; a record that
expired or was trimmed meanwhile drops its entry without being recreated.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from service.windows.line_codec import decode_line
from service.windows.store import WindowStore, _text, _translated

_CLAIM = """
if redis.replicate_commands then redis.replicate_commands() end
local P, lease, count = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, count)) do
  out[#out + 1] = id
end
local claimed = {}
for i = 1, #out, 2 do
  local id, due = out[i], out[i + 1]
  local f = redis.call('HMGET', P .. 'rec:' .. id, 'explanation_status', 'score', 'messages', 'novelty',
    'model_version')
  if f[1] == 'pending' then
    redis.call('ZADD', KEYS[1], now + lease, id)
    claimed[#claimed + 1] = {id, due, f[2] or '', f[3] or '', f[4] or '',
      redis.call('LRANGE', P .. 'rec:lines:' .. id, 0, -1), f[5] or ''}
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return claimed
"""
_FINISH = """
local P, written = ARGV[1], 0
for i = 2, #ARGV, 3 do
  local id, rk = ARGV[i], P .. 'rec:' .. ARGV[i]
  redis.call('ZREM', KEYS[1], id)
  if redis.call('HGET', rk, 'explanation_status') == 'pending' then
    if ARGV[i + 1] ~= '' then redis.call('HSET', rk, 'explanation', ARGV[i + 1]) end
    redis.call('HSET', rk, 'explanation_status', ARGV[i + 2])
    written = written + 1
  end
end
return written
"""


@dataclass
class ExplainJob:
    """One claimed record: what its explanation is computed from."""

    partition: int
    window_id: str
    due: float  # its place in the queue before the claim (a release puts it back there)
    score: float
    messages: list[str]  # preprocessed, one per line
    lines: list[str]  # contents, parallel to messages
    raw_lines: list[str] | None
    novel: list[str] = field(default_factory=list)
    known_anomalous: list[str] = field(default_factory=list)
    model_version: str = ""  # the model that scored it: with models per source, the one that explains it


def _job(partition: int, row: Sequence[Any]) -> ExplainJob | None:
    """A claimed row; None when the record holds no messages to explain (its lines were not kept)."""
    window_id, due, score, table, novelty, elements, model_version = row
    table_text, score_text = _text(table), _text(score)
    if not table_text or not score_text:
        return None
    templates = json.loads(table_text)
    messages = [templates["templates"][i] for i in templates["index"]]
    decoded = [decode_line(e) for e in elements]
    kept = len(decoded) == len(messages)
    found = json.loads(_text(novelty)) if _text(novelty) else {}
    return ExplainJob(
        partition=partition,
        window_id=_text(window_id),
        due=float(_text(due)),
        score=float(score_text),
        messages=messages,
        lines=[c for _, c in decoded] if kept else list(messages),
        raw_lines=[r for r, _ in decoded] if kept else None,
        novel=list(found.get("novel") or []),
        known_anomalous=list(found.get("known_anomalous") or []),
        model_version=_text(model_version),
    )


class ExplainQueue:
    """Claim, finish and release entries of every partition's ``rec:explain``; shares the WindowStore's client."""

    def __init__(self, store: WindowStore) -> None:
        self.store = store
        self.redis: Any = store.redis
        self._claim = self.redis.register_script(_CLAIM)
        self._finish = self.redis.register_script(_FINISH)

    def key(self, partition: int) -> str:
        return self.store.prefix(partition) + "rec:explain"

    async def claim(self, per_partition: int, lease_s: float) -> tuple[list[ExplainJob], list[tuple[int, str]]]:
        """Due entries of every partition, oldest first per partition; the jobs, and (partition, id) of claimed
        records that cannot be explained (no messages kept): finish those as failed."""
        jobs: list[ExplainJob] = []
        unusable: list[tuple[int, str]] = []
        with _translated():
            for p in range(self.store.config.partitions):
                rows = await self._claim(keys=[self.key(p)], args=[self.store.prefix(p), lease_s, per_partition])
                for row in rows:
                    job = _job(p, row)
                    if job is None:
                        unusable.append((p, _text(row[0])))
                    else:
                        jobs.append(job)
        jobs.sort(key=lambda j: j.due)
        return jobs, unusable

    async def finish(self, partition: int, items: Sequence[tuple[str, str, str]]) -> int:
        """(window id, explanation JSON or '', status) per record; how many records were still waiting."""
        if not items:
            return 0
        args: list[Any] = [self.store.prefix(partition)]
        for window_id, explanation, status in items:
            args += [window_id, explanation, status]
        with _translated():
            return int(await self._finish(keys=[self.key(partition)], args=args))

    async def release(self, jobs: Sequence[ExplainJob]) -> None:
        """Put claimed jobs back where they were (a worker stopping), so the next claimer need not wait a lease."""
        with _translated():
            for job in jobs:
                await self.redis.zadd(self.key(job.partition), {job.window_id: job.due}, xx=True)

    async def pending(self) -> int:
        """Records waiting for their explanation, all partitions."""
        with _translated():
            counts = [await self.redis.zcard(self.key(p)) for p in range(self.store.config.partitions)]
        return int(sum(counts))
