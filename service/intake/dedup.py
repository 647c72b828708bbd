"""Re-sent Loki entries and OTLP records stored once, across replicas (Redis).

Shippers re-send what they already delivered: winston-loki re-sends a whole batch that was partly rejected
every 60 s, and any client re-sends a batch whose answer it did not get. Loki stores an entry identical in
stream, timestamp and line once; this does the same for a bounded window (``--entry-dedup-window-s``).

Each entry has a 12-byte hash of everything that makes it itself (Loki: stream labels, timestamp, line,
structured metadata; OTLP: resource and scope, and the whole record: trace and span ids, timestamps, body,
attributes). Only an entry identical in all of these is a re-send, so no two distinct entries are taken for
one (a collision of 96-bit digests aside). An entry without a timestamp has no digest and is always stored.

Digests live in Redis sets keyed by partition and by the entry's own time bucket (``window`` wide):
``<prefix>:{p<k>}:dedup:<bucket>``, k from the hash, each set expiring ``window`` after its last write, so a
re-send within ``window`` of the first store is always found, and memory holds about one window of entries
(~60 bytes each). The order is check, store, then remember: an entry is remembered only once it is stored, so a
failed or refused store never hides its retry (a crash between store and remember costs one duplicate, never a
loss). Two replicas taking the same re-send at the same instant may both store it; a re-send comes later.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from service.windows.store import WindowStore, _translated

DIGEST_BYTES = 12
NS = 10**9


def stream_identity(labels: Mapping[str, str] | None, label_text: str) -> bytes:
    """A Loki stream's labels in one canonical form (sorted), so JSON and protobuf pushes agree."""
    if labels is None:
        return label_text.encode()
    return "\x00".join(f"{k}={v}" for k, v in sorted(labels.items())).encode()


Digest = tuple[int, bytes]
"""(the entry's timestamp in ns, which picks its time bucket; the 12-byte hash of the entry); (0, b"") for an
entry without a timestamp, which is never taken for a re-send."""
NO_DIGEST: Digest = (0, b"")


def loki_digest(stream: bytes, timestamp_ns: str, line: str, metadata: Sequence[tuple[str, str]]) -> Digest:
    """The digest of a Loki entry: its stream, timestamp, line and structured metadata."""
    try:
        ns = int(timestamp_ns)
    except ValueError:
        return NO_DIGEST
    if ns <= 0:
        return NO_DIGEST
    text = b"%s\x01%d\x01%s" % (stream, ns, line.encode())
    if metadata:
        text += "".join(f"\x01{k}={v}" for k, v in metadata).encode()
    return ns, hashlib.blake2b(text, digest_size=DIGEST_BYTES).digest()


def otlp_digest(context: bytes, record: Any) -> Digest:
    """The digest of an OTLP LogRecord (its deterministic serialization) under its resource and scope."""
    ns = record.time_unix_nano or record.observed_time_unix_nano
    if ns <= 0:
        return NO_DIGEST
    return ns, hashlib.blake2b(
        context + record.SerializeToString(deterministic=True), digest_size=DIGEST_BYTES
    ).digest()


_SCRIPTS: dict[int, Any] = {}


def _script(store: WindowStore) -> Any:
    """dedup.lua registered once per Redis client (redis-py loads it by SHA, again after NOSCRIPT)."""
    script = _SCRIPTS.get(id(store.redis))
    if script is None or script.registered_client is not store.redis:
        script = _SCRIPTS[id(store.redis)] = store.redis.register_script(
            Path(__file__).with_name("dedup.lua").read_text(encoding="utf-8")
        )
    return script


class EntryDedup:
    """The digests of stored entries in Redis; ``window_s`` > 0."""

    def __init__(self, store: WindowStore, window_s: float) -> None:
        self.store = store
        self.redis: Any = store.redis
        self.window_ns = max(1, int(window_s * NS))
        self.ttl_ms = max(1, int(window_s * 1000))
        self.script = _script(store)

    def _by_key(self, digests: Iterable[tuple[int, Digest]]) -> dict[str, list[tuple[int, bytes]]]:
        """(index, hash) by the Redis set they belong in: their time bucket's, in the partition of their hash."""
        keys: dict[str, list[tuple[int, bytes]]] = {}
        names: dict[tuple[int, int], str] = {}
        window, partitions = self.window_ns, self.store.config.partitions
        for index, (ns, digest) in digests:
            if not digest:
                continue
            where = (ns // window, digest[0] % partitions)
            name = names.get(where)
            if name is None:
                name = names[where] = f"{self.store.prefix(where[1])}dedup:{where[0]}"
            entries = keys.get(name)
            if entries is None:
                entries = keys[name] = []
            entries.append((index, digest))
        return keys

    async def repeated(self, digests: Sequence[tuple[int, Digest]]) -> set[int]:
        """The indices of entries stored before, and of entries repeated within this request (the first kept)."""
        repeats: set[int] = set()
        first: set[bytes] = set()
        for index, (_, digest) in digests:
            if digest in first and digest:
                repeats.add(index)
            first.add(digest)
        keys = self._by_key((i, d) for i, d in digests if i not in repeats)
        answers = await self._run("check", keys)
        for entries, found in zip(keys.values(), answers, strict=True):
            text = found.decode() if isinstance(found, bytes) else str(found)
            repeats.update(index for (index, _), hit in zip(entries, text, strict=True) if hit == "1")
        return repeats

    async def remember(self, digests: Iterable[tuple[int, Digest]]) -> None:
        """Record stored entries' digests; each set lives ``window`` past its last write."""
        await self._run("add", self._by_key(digests))

    async def _run(self, mode: str, keys: dict[str, list[tuple[int, bytes]]]) -> list[Any]:
        """dedup.lua on each set, concurrently (a request touches a few: its time buckets x partitions)."""
        if not keys:
            return []
        with _translated():
            return list(
                await asyncio.gather(
                    *(
                        self.script(keys=[key], args=[mode, b"".join(d for _, d in entries), self.ttl_ms])
                        for key, entries in keys.items()
                    )
                )
            )
