"""The verdict stream: one capped Redis Stream any client can XREAD, written by the classifier.

Written from Python just *before* ``WindowStore.complete`` (not inside complete.lua), so a crash between the
two re-scores the window and publishes it again: at-least-once, and every reader dedupes by window id (the
outbox does so by job id). On Redis Cluster it is one hash-tagged key (``logllm:{delivery}:verdicts``): one
slot holds every partition's verdicts, which is fine at verdict rates (one entry per window, not per line).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from service.windows.ids import DEFAULT_SOURCE, parse_window_id
from service.windows.store import ClosedWindow, Verdict, _text, _translated

FIELDS = ("id", "label", "score", "threshold", "source", "n_lines", "closed_at", "scored_at", "model_version")


def delivery_prefix(key_prefix: str) -> str:
    """Every delivery key shares one hash slot, so the outbox scripts run on Cluster too."""
    return f"{key_prefix}:{{delivery}}:"


def source_of(window: ClosedWindow) -> str:
    ref = parse_window_id(window.window_id)
    if ref is not None:
        return ref.source
    return DEFAULT_SOURCE if window.window_key == window.window_id.split("#", 1)[0] else window.window_key


@dataclass(frozen=True)
class StreamEntry:
    """One verdict as published: the stream id (also the SSE event id) and its fields."""

    entry_id: str
    fields: dict[str, Any]

    @property
    def at(self) -> float:
        """When it was published (a stream id starts with milliseconds)."""
        return int(self.entry_id.split("-", 1)[0]) / 1000


def _decode(entry_id: Any, raw: dict[Any, Any]) -> StreamEntry:
    fields: dict[str, Any] = {_text(k): _text(v) for k, v in raw.items()}
    for name in ("score", "threshold", "closed_at", "scored_at"):
        fields[name] = float(fields[name]) if fields.get(name) else None
    fields["n_lines"] = int(fields.get("n_lines") or 0)
    return StreamEntry(_text(entry_id), fields)


class VerdictStream:
    """Publish verdicts and read them back (SSE, chart); ``maxlen`` 0 turns publishing off."""

    def __init__(self, redis: Any, key_prefix: str, maxlen: int) -> None:
        self.redis = redis
        self.key = delivery_prefix(key_prefix) + "verdicts"
        self.maxlen = maxlen

    async def publish(self, verdicts: Sequence[tuple[ClosedWindow, Verdict]]) -> None:
        if self.maxlen <= 0 or not verdicts:
            return
        with _translated():
            async with self.redis.pipeline(transaction=False) as pipe:
                for window, v in verdicts:
                    entry = {
                        "id": v.window_id, "label": v.label, "score": "" if v.score is None else repr(v.score),
                        "threshold": "" if v.threshold is None else repr(v.threshold), "source": source_of(window),
                        "n_lines": v.n_lines, "closed_at": repr(v.closed_at), "scored_at": repr(v.scored_at),
                        "model_version": v.model_version, "reason": window.reason, "verdict_reason": v.reason or "",
                    }  # fmt: skip
                    pipe.xadd(self.key, entry, maxlen=self.maxlen, approximate=True)
                await pipe.execute()

    async def read(self, after: str, count: int, block_ms: int | None) -> list[StreamEntry]:
        """Entries after the id ``after`` ("0": from the oldest kept; "$": only new ones)."""
        with _translated():
            reply = await self.redis.xread({self.key: after}, count=count, block=block_ms)
        if not reply:
            return []
        _, entries = reply[0] if isinstance(reply, list) else next(iter(reply.items()))
        return [_decode(i, raw) for i, raw in entries]

    async def last_id(self) -> str:
        with _translated():
            found = await self.redis.xrevrange(self.key, count=1)
        return _text(found[0][0]) if found else "0"

    async def per_minute(self, minutes: int, max_entries: int = 100_000) -> dict[str, Any]:
        """Verdicts per minute by label over the last ``minutes`` (from the kept stream; it is capped)."""
        now = time.time()
        start_minute = int(now // 60) - minutes + 1
        with _translated():
            found = await self.redis.xrevrange(self.key, min=str(start_minute * 60_000), count=max_entries)
        counts: dict[str, list[int]] = {}
        for entry_id, raw in found:
            minute = int(_text(entry_id).split("-", 1)[0]) // 60_000 - start_minute
            label = _text(raw.get(b"label", raw.get("label", "")))
            if 0 <= minute < minutes:
                counts.setdefault(label, [0] * minutes)[minute] += 1
        truncated = len(found) >= max_entries
        return {"start": start_minute * 60, "minutes": minutes, "counts": counts, "truncated": truncated}
