"""``GET /anomalies``: one page of records, newest first, merged from every partition's index.

Each partition's index is read by query.lua from the cursor's position down, up to ``limit`` matches or a scan
budget. Partitions that stopped early stopped at some position; everything at or above the highest such
position (the frontier) has been seen in every partition, so that part is complete and is what the page
returns. A page may thus be shorter than ``limit`` (filters that match rarely); ``next_cursor`` is null only
when every partition is exhausted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from service.records.cursor import decode_cursor, encode_cursor, fingerprint
from service.records.record_store import RecordStore, _pairs, public_record
from service.windows.store import _text, _translated

SCAN_BUDGET = 1000  # index entries one partition looks at per page


@dataclass(frozen=True)
class RecordQuery:
    status: str = "anomalous"
    source: str | None = None
    since: float | None = None
    until: float | None = None
    min_score: float | None = None


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


async def query_records(records: RecordStore, q: RecordQuery, limit: int, cursor: str | None) -> Page:
    """One page; raises cursor.BadCursor for a cursor this service did not issue for this query."""
    fp = fingerprint(asdict(q))
    position = decode_cursor(records.secret, fp, cursor) if cursor else None
    max_t = repr(position[0]) if position else ("+inf" if q.until is None else repr(q.until))
    min_t = "-inf" if q.since is None else repr(q.since)
    index = f"rec:idx:{q.status}" + (f":{q.source}" if q.source else "")
    args: list[Any] = [
        max_t, repr(position[0]) if position else "", position[1] if position else "", min_t,
        "" if q.min_score is None else repr(q.min_score), limit, SCAN_BUDGET,
    ]  # fmt: skip

    async def one(p: int) -> Any:
        prefix = records.store.prefix(p)
        return await records.query_script(keys=[prefix + index], args=[prefix, *args])

    with _translated():
        replies = await asyncio.gather(*(one(p) for p in range(records.partitions)))
    page, next_position = merge_pages(replies, limit)
    items = [public_record(fields) for _, fields in page]
    return Page(items, encode_cursor(records.secret, fp, next_position) if next_position else None)


Row = tuple[tuple[float, str], dict[str, str]]


def merge_pages(replies: Sequence[Any], limit: int) -> tuple[list[Row], tuple[float, str] | None]:
    """Merge per-partition replies ``[done, last time, last member, [[member, time, HGETALL]...]]`` newest
    first: the rows at or above the frontier (the highest position where an unfinished partition stopped), up
    to ``limit``, and the position the next page starts after (None: every partition is exhausted)."""
    found: list[Row] = []
    frontier: tuple[float, str] | None = None
    for done, last_t, last_id, rows in replies:
        for member, t, fields in rows:
            found.append(((float(_text(t)), _text(member)), _pairs(fields)))
        if not int(done) and _text(last_id):
            stop = (float(_text(last_t)), _text(last_id))
            frontier = stop if frontier is None else max(frontier, stop)
    found.sort(key=lambda item: item[0], reverse=True)
    complete = [item for item in found if frontier is None or item[0] >= frontier]
    page = complete[:limit]
    return page, (page[-1][0] if len(complete) > limit else frontier)
