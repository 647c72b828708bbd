"""``--log-format auto``: each source's format, decided once from its first lines and kept in Redis.

The first request that brings lines of an undecided source proposes a format from up to ``DETECT_LINES`` of them
(model/format_detect.py); ``settle`` writes the proposal with HSETNX and reads back the winner, so every replica
uses the format the first proposal fixed, and a restart keeps it. The proposing request's lines are parsed with
the decision before they are stored (``routes._parse``), so none waits and none is lost to the decision; in the
rare race where another replica settled the same source first with another format, the request is parsed
again with the winner's. An auto source never rejects a line as ``bad_format``: a line that does not fit the
decided format keeps its whole text as content (model/format_detect.py's ``lenient_parser``).

Layout: one hash ``<key prefix>:formats`` (source -> JSON ``{"format", "lines", "decided_at"}``), outside the
partitions: one key, one slot, read by every intake and by ``GET /sources``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from model.format_detect import DETECT_LINES, detect_format

_SETTLE = """
local out = {}
for i = 1, #ARGV, 2 do
  redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1])
  out[#out + 1] = redis.call('HGET', KEYS[1], ARGV[i])
end
return out
"""


@dataclass(frozen=True)
class FormatDecision:
    """What ``auto`` decided for one source, from how many of its first lines, and when."""

    format: str
    lines: int
    decided_at: float = 0.0

    def to_json(self) -> str:
        return json.dumps({"format": self.format, "lines": self.lines, "decided_at": self.decided_at})

    @classmethod
    def from_json(cls, text: str | bytes) -> FormatDecision:
        raw = json.loads(text)
        return cls(str(raw["format"]), int(raw.get("lines", 0)), float(raw.get("decided_at", 0.0)))


def propose(sample: Iterable[str]) -> FormatDecision:
    """A proposal from a source's first lines (at most ``DETECT_LINES`` are read)."""
    lines = [line for line, _ in zip(sample, range(DETECT_LINES), strict=False)]
    return FormatDecision(detect_format(lines), len(lines), time.time())


class SourceFormats:
    """The decided formats of auto sources: a process cache in front of one Redis hash shared by replicas.

    A decision never changes once written, so the cache needs no invalidation.
    """

    def __init__(self, redis: Any, key_prefix: str = "logllm") -> None:
        self.redis = redis
        self.key = f"{key_prefix}:formats"
        self.decided: dict[str, FormatDecision] = {}
        self._settle = redis.register_script(_SETTLE)

    def known(self) -> Mapping[str, str]:
        """Source -> decided format, as ``build_batch`` reads it (no Redis call)."""
        return {source: decision.format for source, decision in self.decided.items()}

    async def settle(self, proposals: Mapping[str, FormatDecision]) -> dict[str, FormatDecision]:
        """The decision of each proposed source: the first proposal any replica wrote wins."""
        asked = [source for source in proposals if source not in self.decided]
        if asked:
            args = [part for source in asked for part in (source, proposals[source].to_json())]
            replies = await self._settle(keys=[self.key], args=args)
            for source, reply in zip(asked, replies, strict=True):
                self.decided[source] = FormatDecision.from_json(reply)
        return {source: self.decided[source] for source in proposals}

    async def all(self) -> dict[str, FormatDecision]:
        """Every decision in Redis (``GET /sources``), which also fills the cache."""
        stored = await self.redis.hgetall(self.key)
        for source, text in stored.items():
            name = source.decode() if isinstance(source, bytes) else str(source)
            self.decided.setdefault(name, FormatDecision.from_json(text))
        return dict(self.decided)
