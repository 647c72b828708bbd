"""A bounded sample of each source's normal windows, lines as shipped, for training a model of the source's own.

``--keep-normal-sample N`` keeps at most N windows per source: a reservoir (algorithm R), so the sample stays a
uniform draw over every normal window the source ever had, not its latest hour. A source's rare but normal
events (a nightly job, a weekly rotation) thus stay in it in proportion, where a most-recent list of N windows
would forget them after N windows and a model trained on it would flag them: false alarms are what a source's own
model is for removing. Each window past the first N replaces a random slot with probability N/seen; the draw is a
hash of the window id, so a window re-scored after a crash gets the same decision, and no seed is needed.

Written by the classifier after ``complete``, only for the windows whose verdict that call wrote (a re-score
adds nothing twice); a crash in between loses a sample window, never a verdict. The lines are kept as the window
store buffered them (``line_codec`` elements: the raw line and its content), one list per slot, in the slot of the
partition the source's patterns live in (``crc32("pat:<source>")``), so the script is single-slot on Cluster and
memory is N windows per source (sources are bounded by ``max_sources``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import msgpack
from redis.exceptions import ResponseError

from service.records.record_store import window_parts
from service.windows.line_codec import decode_element, encode_line
from service.windows.store import ClosedWindow, Verdict, WindowStore, _text, _translated

KEPT_LABELS = ("normal", "muted")  # muted: anomalous to the model, a known false positive to the operators
PAGE = 50  # slots read per round trip
log = logging.getLogger(__name__)


def draw(window_id: str) -> float:
    """The window's reservoir draw in [0, 1): stable across re-scores and workers."""
    return int.from_bytes(hashlib.blake2b(window_id.encode(), digest_size=8).digest(), "big") / 2.0**64


class NormalSample:
    """Keeps and reads the per-source samples; shares the WindowStore's client and partitions."""

    def __init__(self, store: WindowStore, per_source: int) -> None:
        self.store = store
        self.per_source = per_source
        self._keep = store.redis.register_script(Path(__file__).with_name("sample.lua").read_text(encoding="utf-8"))

    def _meta(self, source: str) -> str:
        return f"{self.store.prefix(self.store.partition('pat:' + source))}sample:{source}"

    async def keep(self, pairs: Sequence[tuple[ClosedWindow, Verdict]], written: set[str]) -> int:
        """Offer this batch's newly written normal windows to their sources' samples; how many were kept."""
        if self.per_source <= 0:
            return 0
        by_partition: dict[int, list[list[Any]]] = {}
        for window, verdict in pairs:
            if verdict.label not in KEPT_LABELS or window.window_id not in written:
                continue
            source = window_parts(window.window_id, window.window_key).source
            elements = [encode_line(window.raw_line(i), line) for i, line in enumerate(window.lines)]
            entry = [source, window.window_id, repr(window.closed_at), repr(draw(window.window_id)), verdict.label,
                     elements]  # fmt: skip
            by_partition.setdefault(self.store.partition("pat:" + source), []).append(entry)
        if not by_partition:
            return 0

        async def one(p: int, windows: list[list[Any]]) -> int:
            prefix = self.store.prefix(p)
            packed = msgpack.packb(windows, use_bin_type=False)
            return int(await self._keep(keys=[prefix + "sample"], args=[prefix, self.per_source, packed]))

        try:
            with _translated():
                return sum(await asyncio.gather(*(one(p, w) for p, w in by_partition.items())))
        except ResponseError:  # a bug in the script must not stop scoring: the verdicts are written already
            log.exception("keeping normal windows in the sample failed")
            return 0

    async def size(self, source: str) -> tuple[int, int]:
        """(windows in the source's sample, normal windows offered to it so far)."""
        with _translated():
            meta = await self.store.redis.hgetall(self._meta(source))
        fields = {_text(k): _text(v) for k, v in meta.items()}
        cap = int(fields.get("cap", 0))
        return sum(1 for i in range(cap) if f"id:{i}" in fields), int(fields.get("seen", 0))

    async def windows(self, source: str) -> AsyncIterator[dict[str, Any]]:
        """The source's sample, oldest window first: ``{window_id, closed_at, label, lines: [{raw, content}]}``."""
        meta_key = self._meta(source)
        with _translated():
            meta = {_text(k): _text(v) for k, v in (await self.store.redis.hgetall(meta_key)).items()}
        slots = sorted((float(meta[f"at:{i}"]), i) for i in range(int(meta.get("cap", 0))) if f"id:{i}" in meta)
        for start in range(0, len(slots), PAGE):
            page = slots[start : start + PAGE]
            with _translated():
                async with self.store.redis.pipeline(transaction=False) as pipe:
                    for _, i in page:
                        pipe.lrange(f"{meta_key}:w:{i}", 0, -1)
                    found = await pipe.execute()
            for (at, i), elements in zip(page, found, strict=True):
                lines = []
                for element in elements:
                    raw, content, timestamp = decode_element(element)
                    lines.append({"raw": raw, "content": content} | ({"timestamp": timestamp} if timestamp else {}))
                yield {"window_id": meta[f"id:{i}"], "closed_at": at, "label": meta.get(f"label:{i}", "normal"),
                       "lines": lines}  # fmt: skip
