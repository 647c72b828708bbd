"""Templates per source in Redis: counts, first and last seen, an example line, the latest windows, learned marks.

A source's patterns live in one partition slot, the one its name hashes to (``pat:<source>``), so every script
touches one slot and the layout runs on Redis Cluster; a scoring batch costs one lookup and one update call per
partition it touches (layout: patterns_lib.lua). ``GET /patterns`` walks each partition's index newest first and
merges them like ``GET /anomalies`` (service/records/query.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from redis.commands.core import AsyncScript

from service.records.cursor import decode_cursor, encode_cursor, fingerprint
from service.records.query import SCAN_BUDGET, Page, merge_pages
from service.records.record_store import _pairs
from service.windows.store import WindowStore, _text, _translated

ID_CHARS = 16  # hex digits of SHA-256: 64 bits, no collision among any realistic number of templates
ID_PATTERN = rf"^[0-9a-f]{{{ID_CHARS}}}$"


def template_id(template: str) -> str:
    """Stable and URL-safe: the same template has the same id in every source, replica and restart."""
    return hashlib.sha256(template.encode("utf-8")).hexdigest()[:ID_CHARS]


@dataclass(frozen=True)
class PatternConfig:
    """The settings patterns need; ``from_settings`` takes them by name from ``ServiceSettings``."""

    max_templates_per_source: int = 10_000
    pattern_recent_windows: int = 20
    coverage_warn_below: float = 0.5
    coverage_min_lines: int = 200

    @classmethod
    def from_settings(cls, settings: object) -> PatternConfig:
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls) if hasattr(settings, f.name)})


@dataclass
class TemplateUse:
    """One template of one source in one scoring batch; ``count`` 0 only marks it learned."""

    template: str
    count: int = 0
    example: str = ""
    windows: list[str] | None = None
    learn: str = ""  # '' or how it was learned: normal_window, feedback, api
    vocab: str = ""  # the checkpoint's vocabulary: normal, anomalous_only or ''

    def to_json(self) -> dict[str, Any]:
        return {"id": template_id(self.template), "t": self.template, "n": self.count, "ex": self.example,
                "w": self.windows or [], "learn": self.learn, "vocab": self.vocab}  # fmt: skip


@dataclass(frozen=True)
class SourceBatch:
    """One scoring batch of one source, for its counters: lines, windows, and lines whose template the
    checkpoint's vocabulary knows (-1: no vocabulary, no coverage)."""

    lines: int
    windows: int
    known: int = -1

    def to_json(self) -> dict[str, int]:
        return {"l": self.lines, "w": self.windows, "k": self.known}


@dataclass(frozen=True)
class SourceUpdate:
    """What ``update`` reports per source: templates new to it, its vocabulary coverage now (None without a
    vocabulary), and whether this call first found it under the threshold (log its one warning)."""

    new: int
    coverage: float | None = None
    warn: bool = False


COVERAGE_RECENT_LINES = 1000  # coverage reads about this many of a source's latest lines (older ones fade out)


@dataclass(frozen=True)
class PatternQuery:
    source: str | None = None
    since: float | None = None
    new_only: bool = False


def path_id(pair: tuple[str | None, str | None]) -> str:
    """A session transition as the pattern store keeps it: two template ids, '^' and '$' for the session's ends."""
    first, then = pair
    return f"{'^' if first is None else template_id(first)}>{'$' if then is None else template_id(then)}"


def step_id(step: tuple[str, str]) -> str:
    """A step left out of a fixed window as the pattern store keeps it (beside the paths): 'idA~idB'."""
    first, then = step
    return f"{template_id(first)}~{template_id(then)}"


def count_id(finding: tuple[str, str | None, int]) -> str:
    """A session count value as the pattern store keeps it (beside the paths): '#idA=3' for a template's count,
    '#idA-idB=-1' for the difference of two counts."""
    first, other, value = finding
    return f"#{template_id(first)}{'' if other is None else '-' + template_id(other)}={value}"


@dataclass(frozen=True)
class SourceState:
    """What the novelty rule needs of a source: when it was first seen, which of the asked template ids and
    which of the asked session findings (``path_id``, ``count_id``) it learned."""

    first_seen: float
    learned: frozenset[str]
    learned_findings: frozenset[str] = frozenset()


def _float(value: str | None) -> float | None:
    return float(value) if value else None


def public_pattern(f: Mapping[str, str]) -> dict[str, Any]:
    """A template hash as the API shows it; ``new``: neither in the checkpoint's normal vocabulary nor learned."""
    return {
        "id": f["id"],
        "source": f["source"],
        "template": f["template"],
        "count": int(f.get("count") or 0),
        "first_seen": _float(f.get("first_seen")),
        "last_seen": _float(f.get("last_seen")),
        "example": f.get("example") or None,
        "vocabulary": f.get("vocab") or None,
        "learned": f.get("learned") or None,
        "learned_at": _float(f.get("learned_at")),
        "new": f.get("vocab") != "normal" and not f.get("learned"),
    }


def _script(name: str) -> str:
    """patterns_lib.lua, then (for the query) the records' index walk, then the script itself."""
    here = Path(__file__).parent
    parts = [here / "patterns_lib.lua", *([here.parent / "records" / "page_lib.lua"] if name == "query.lua" else [])]
    return "\n".join(p.read_text(encoding="utf-8") for p in [*parts, here / name])


class PatternStore:
    """Reads and writes of the per-source patterns; shares the WindowStore's client and partitions."""

    def __init__(self, store: WindowStore, config: PatternConfig | object | None = None) -> None:
        self.store = store
        self.redis: Any = store.redis
        self.config = config if isinstance(config, PatternConfig) else PatternConfig.from_settings(config)
        self._scripts: dict[str, AsyncScript] = {
            name: self.redis.register_script(_script(f"{name}.lua")) for name in ("lookup", "update", "query")
        }

    def partition_of(self, source: str) -> int:
        return self.store.partition("pat:" + source)

    def _base(self, source: str) -> str:
        return f"{self.store.prefix(self.partition_of(source))}pat:{source}:"

    async def _per_partition(self, name: str, by_source: Mapping[str, Any], extra: Mapping[str, Any]) -> list[Any]:
        """One call of a script per partition the sources hash to (concurrent; each is one slot)."""
        groups: dict[int, dict[str, Any]] = {}
        for source, value in by_source.items():
            groups.setdefault(self.partition_of(source), {})[source] = value

        async def one(p: int, sources: dict[str, Any]) -> Any:
            prefix = self.store.prefix(p)
            payload = {**extra, "sources": sources} if extra else sources
            return await self._scripts[name](keys=[prefix + "pat:sources"], args=[prefix, json.dumps(payload)])

        with _translated():
            return list(await asyncio.gather(*(one(p, s) for p, s in sorted(groups.items()))))

    async def lookup(
        self, asked: Mapping[str, set[str]], findings: Mapping[str, set[str]] | None = None
    ) -> tuple[float, dict[str, SourceState]]:
        """The Redis clock and, per source, its first-seen time (a new source is registered now, which starts its
        warm-up) and which of the asked template ids and session findings (``path_id``, ``count_id``) it has
        learned."""
        if not asked:
            return 0.0, {}
        findings = findings or {}
        wanted = {s: {"ids": sorted(ids), "paths": sorted(findings.get(s, ()))} for s, ids in asked.items()}
        now, states = 0.0, {}
        for reply in await self._per_partition("lookup", wanted, {}):
            found = json.loads(_text(reply))
            now = max(now, float(found["now"]))
            for source, state in (found["sources"] or {}).items():  # cjson writes an empty table as {}
                states[source] = SourceState(
                    float(state["first_seen"]), frozenset(state["learned"] or ()), frozenset(state["paths"] or ())
                )
        return now, states

    async def update(self, uses: Mapping[str, Sequence[TemplateUse]]) -> dict[str, int]:
        """Count a batch's templates per source (one script per partition); templates new to each source."""
        return {source: found.new for source, found in (await self.update_sources(uses)).items()}

    async def update_sources(
        self, uses: Mapping[str, Sequence[TemplateUse]], batches: Mapping[str, SourceBatch] | None = None
    ) -> dict[str, SourceUpdate]:
        """``update``, and each source's line and window counters and vocabulary coverage (``batches``)."""
        if not uses:
            return {}
        config = self.config
        extra: dict[str, Any] = {"cap": config.max_templates_per_source, "recent": config.pattern_recent_windows}
        if batches:
            extra["stats"] = {source: b.to_json() for source, b in batches.items()}
            extra["coverage"] = {"recent": COVERAGE_RECENT_LINES, "min_lines": config.coverage_min_lines,
                                 "below": config.coverage_warn_below}  # fmt: skip
        by_source = {source: [u.to_json() for u in items] for source, items in uses.items() if items}
        out: dict[str, SourceUpdate] = {}
        for reply in await self._per_partition("update", by_source, extra):
            for s, n, coverage, warn in zip(reply[::4], reply[1::4], reply[2::4], reply[3::4], strict=True):
                text = _text(coverage)
                out[_text(s)] = SourceUpdate(int(n), float(text) if text else None, int(warn) == 1)
        return out

    async def source_meta(self, sources: Sequence[str]) -> dict[str, dict[str, str]]:
        """Each source's meta hash (first_seen, lines, windows, cov_lines, cov_known, cov_warned), one pipeline."""
        with _translated():
            async with self.redis.pipeline(transaction=False) as pipe:
                for name in sources:
                    pipe.hgetall(self._base(name) + "meta")
                replies = await pipe.execute() if sources else []
        return {name: _pairs(found) for name, found in zip(sources, replies, strict=True)}

    async def learn(self, source: str, templates: Sequence[str], how: str) -> list[str]:
        """Mark templates learned by a source (created with count 0 if it has not kept them); their ids."""
        distinct = list(dict.fromkeys(templates))
        if distinct:
            await self.update({source: [TemplateUse(t, learn=how) for t in distinct]})
        return [template_id(t) for t in distinct]

    async def learn_session_findings(
        self,
        source: str,
        pairs: Sequence[tuple[str | None, str | None]],
        counts: Sequence[tuple[str, str | None, int]] = (),
        steps: Sequence[tuple[str, str]] = (),
    ) -> list[str]:
        """Mark session transitions, count values and missing steps normal for a source (feedback "normal", a mute);
        their ids."""
        found = [*(path_id(pair) for pair in pairs), *(count_id(c) for c in counts), *(step_id(s) for s in steps)]
        ids = list(dict.fromkeys(found))
        if ids:
            with _translated():
                await self.redis.sadd(self._base(source) + "paths", *ids)
        return ids

    async def get(self, tid: str, source: str | None) -> list[dict[str, Any]]:
        """The template in each source that holds it (or in ``source``), with its latest windows."""
        sources = [source] if source is not None else await self.sources()
        with _translated():
            async with self.redis.pipeline(transaction=False) as pipe:
                for name in sources:
                    pipe.hgetall(self._base(name) + "t:" + tid)
                    pipe.lrange(self._base(name) + "win:" + tid, 0, -1)
                replies = await pipe.execute() if sources else []
        out = []
        for found, windows in zip(replies[::2], replies[1::2], strict=True):
            if found:
                out.append({**public_pattern(_pairs(found)), "recent_windows": [_text(w) for w in windows]})
        return out

    async def sources(self) -> list[str]:
        """Every source with patterns, all partitions."""
        with _translated():
            async with self.redis.pipeline(transaction=False) as pipe:
                for p in range(self.store.config.partitions):
                    pipe.zrange(self.store.prefix(p) + "pat:sources", 0, -1)
                replies = await pipe.execute()
        return sorted(_text(s) for reply in replies for s in reply)

    async def query(self, q: PatternQuery, limit: int, cursor: str | None, secret: bytes) -> Page:
        """One page newest first seen first; raises cursor.BadCursor for a cursor not issued for this query."""
        fp = fingerprint({"patterns": asdict(q)})
        position = decode_cursor(secret, fp, cursor) if cursor else None
        args: list[Any] = [
            repr(position[0]) if position else "+inf", repr(position[0]) if position else "",
            position[1] if position else "", "-inf" if q.since is None else repr(q.since), "1" if q.new_only else "",
            limit, SCAN_BUDGET,
        ]  # fmt: skip
        if q.source is not None:
            targets = [(self.partition_of(q.source), f"pat:{q.source}:seen")]
        else:
            targets = [(p, "pat:all") for p in range(self.store.config.partitions)]

        async def one(p: int, index: str) -> Any:
            prefix = self.store.prefix(p)
            return await self._scripts["query"](keys=[prefix + index], args=[prefix, *args])

        with _translated():
            replies = await asyncio.gather(*(one(p, index) for p, index in targets))
        page, next_position = merge_pages(replies, limit)
        items = [public_pattern(f) for _, f in page]
        return Page(items, encode_cursor(secret, fp, next_position) if next_position else None)
