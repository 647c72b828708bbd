"""The cap on distinct sources (``max_sources``): each new source adds window, record and pattern keys, so a
sender must not be able to create them without bound.

The admitted sources are one Redis set shared by every replica (sources.lua admits up to the cap atomically);
each process remembers the ones it has seen admitted, so the usual request makes no extra call. A line of a
source refused is rejected alone (``too_many_sources``, counted in ``logllm_lines_rejected_total`` like every
reason), and the rest of its request is stored. Sources stay admitted: raise ``--max-sources``, or delete the
key ``<prefix>:sources`` (they are admitted again as they send), to make room.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

from service.intake.batch import Batch, Rejection
from service.windows.store import PreparedAppend, WindowStore, _translated

REASON = "too_many_sources"
_SCRIPT = (Path(__file__).parent / "sources.lua").read_text()


class SourceRegistry:
    """Which sources may store lines; one per app."""

    def __init__(self, store: WindowStore, cap: int) -> None:
        self.store = store
        self.cap = cap
        self.key = f"{store.config.key_prefix}:sources"
        self.admitted: set[str] = set()  # at most cap names
        self._admit = store.redis.register_script(_SCRIPT)

    async def refused(self, sources: Iterable[str]) -> set[str]:
        """The sources that may not store lines; the others are admitted now if they were not yet, in the order
        given (the order their lines came in)."""
        new = [s for s in sources if s not in self.admitted]
        if not new:
            return set()
        with _translated():  # out of memory or unreachable: 503 with its reason, as the append would answer
            reply = await self._admit(keys=[self.key], args=[self.cap, *new])
        refused = {r.decode() if isinstance(r, bytes) else str(r) for r in reply}
        self.admitted.update(s for s in new if s not in refused)
        return refused

    async def admit(self, batch: Batch, prepared: PreparedAppend) -> PreparedAppend:
        """The store call for the batch less the lines of refused sources (rejected in the batch)."""
        refused = await self.refused(batch.sources)
        if not refused:
            return prepared
        reject_sources(batch, refused, self.cap)
        return await asyncio.to_thread(self.store.prepare, batch.groups)


def reject_sources(batch: Batch, refused: set[str], cap: int) -> None:
    """Take the items of refused sources out of the batch and reject each of their lines once (a line joins
    windows of its own source only)."""
    dropped: dict[int, str] = {}
    for windowing in list(batch.groups):
        items, origins = batch.groups[windowing], batch.origins[windowing]
        keep = [i for i, (key, _) in enumerate(items) if key.split(":", 2)[1] not in refused]
        if len(keep) == len(items):
            continue
        kept = set(keep)
        dropped.update((origins[i], items[i][0].split(":", 2)[1]) for i in range(len(items)) if i not in kept)
        if keep:
            batch.groups[windowing], batch.origins[windowing] = [items[i] for i in keep], [origins[i] for i in keep]
        else:
            del batch.groups[windowing], batch.origins[windowing]
    batch.rejected += [
        Rejection(index=index, reason=REASON, message=f"source {source[:80]!r} is new and {cap} sources are in use"
                  " (--max-sources)")
        for index, source in dropped.items()
    ]  # fmt: skip
    batch.rejected.sort(key=lambda r: r.index)
    batch.accepted -= len(dropped)
