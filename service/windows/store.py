"""Windows of log lines in Redis: buffered while open, queued on a stream once closed, verdicts with a TTL.

Every key of a window lives in the hash slot of its partition (``logllm:{p<k>}:...``, k = crc32(window key) %
partitions), so one Lua script can append, decide the close and XADD atomically, and the layout runs on Redis
Cluster. The scripts are in ``service/windows/*.lua``; the Python side groups work by partition: one pipeline on a
single server; on a cluster (a ``RedisCluster`` client) one call per partition, run concurrently, each on the
node that owns its slot, and the ready streams are polled per partition (a multi-stream read is cross-slot).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import time
import zlib
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, NoReturn

import msgpack
import orjson
from redis import exceptions as redis_errors
from redis.asyncio import Redis, RedisCluster
from redis.commands.core import AsyncScript

from model.vocab import Novelty
from service.windows.ids import parse_window_id
from service.windows.line_codec import decode_line
from service.windows.windowing import DEFAULTS, Windowing

log = logging.getLogger(__name__)
GROUP = "classifiers"
SWEEP_CHUNK = 500
RESUME_PAGE = 1000
CLUSTER_POLL_S = 0.02  # how often a cluster worker looks at the ready streams while they are empty
ID_SCHEME = "2"  # window keys and ids of service/windows/ids.py; "1" was bare session ids and source names
REQUEST_LOCK_MS = 60_000  # an attempt of a request holds its lock at most this long (a dead process's expires)


class QueueFull(Exception):
    """More closed windows await the model than ``max_ready_queue``: the request was refused as a whole."""

    def __init__(self, share: int, limit: int, retry_after_s: float, partitions: int = 1) -> None:
        super().__init__(
            f"{share} windows await a verdict in a partition this request needs"
            f" (max_ready_queue={limit}: {share} per partition, {partitions} partitions)"
        )
        self.retry_after_s = retry_after_s


class TooManySessions(Exception):
    """Accepting the request would open more windows than ``max_open_windows``; nothing was accepted."""


class RequestInFlight(Exception):
    """An attempt of the same request (same body, or same Idempotency-Key) is being stored right now; retry."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("an identical request is being stored right now; retry it")
        self.retry_after_s = retry_after_s


class LayoutMismatch(Exception):
    """Redis holds windows laid out differently (another partition count or id scheme) than this start asks for."""


class StoreUnavailable(redis_errors.RedisError):
    """Redis cannot take the request (out of memory, unreachable); the app answers 503."""


class StoreOutOfMemory(StoreUnavailable, redis_errors.OutOfMemoryError):
    """Redis refused a write at maxmemory; scripts fail before their first write, so nothing half-applied."""


class StoreUnreachable(StoreUnavailable, redis_errors.ConnectionError):
    """The connection to Redis failed or timed out."""


@dataclass(frozen=True)
class StoreConfig:
    """The settings the store needs; ``from_settings`` takes them by name from ``ServiceSettings``."""

    partitions: int = 4
    window_size: int = DEFAULTS.size
    window_step: int = DEFAULTS.step
    max_session_lines: int = DEFAULTS.max_session_lines
    idle_timeout_s: float = 30.0
    max_open_windows: int = 100_000
    max_ready_queue: int = 10_000
    retry_after_s: float = 1.0
    verdict_ttl_s: int = 86_400
    idempotency_ttl_s: int = 3_600
    key_prefix: str = "logllm"

    @classmethod
    def from_settings(cls, settings: object) -> StoreConfig:
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls) if hasattr(settings, f.name)})


@dataclass(frozen=True)
class ClosedWindow:
    entry_id: str
    partition: int
    window_id: str
    lines: list[str]  # each line's content: what the model reads (after preprocessing)
    reason: str
    closed_at: float
    window_key: str = ""
    attempts: int = 0  # how often the model has failed on this window (re-reads and reclaims do not count)
    raw_lines: list[str] = field(default_factory=list)  # the lines as shipped, parallel to lines

    def raw_line(self, i: int) -> str:
        """Line i as shipped; its content when the raw text was not kept."""
        return self.raw_lines[i] if i < len(self.raw_lines) else self.lines[i]


@dataclass(frozen=True)
class Verdict:
    """A window's outcome; label "failed" (score None, ``error`` set) when the model gave up on it."""

    window_id: str
    label: str
    score: float | None
    threshold: float | None
    n_lines: int
    model_version: str
    closed_at: float
    scored_at: float
    error: str = ""
    n_scored: int | None = None  # lines the model saw; None for verdicts written before this was recorded
    reason: str | None = None  # why anomalous: "model" or a model/vocab.py novelty reason (service/patterns)
    novel: tuple[str, ...] = ()  # templates neither the checkpoint nor the source knew
    known_anomalous: tuple[str, ...] = ()  # templates training saw only in anomalous windows
    transitions: tuple[tuple[str | None, str | None], ...] = ()  # rare template pairs; None: session start/end
    counts: tuple[tuple[str, str | None, int], ...] = ()  # count values no normal training session showed
    missing: tuple[tuple[str, str], ...] = ()  # steps left out of a fixed window (model/window_rules.py)

    def novelty(self) -> dict[str, Any] | None:
        """What the novelty rule found, as stored and shown; None when it found nothing."""
        found = Novelty(self.novel, self.known_anomalous, self.transitions, self.counts, missing=self.missing)
        return found.to_json() if found.reason is not None else None

    def extra_fields(self) -> str:
        """The verdict hash's optional fields as complete.lua takes them: JSON, or '' when there are none."""
        extra: dict[str, str] = {}
        if self.reason:
            extra["reason"] = self.reason
        found = self.novelty()
        if found is not None:
            extra["novelty"] = json.dumps(found)
        return json.dumps(extra) if extra else ""


@dataclass(frozen=True)
class AppendResult:
    """``refused``: (windowing, index of the item in its group, reason) of items a cap refused in a race."""

    accepted: int
    closed: list[str]
    refused: list[tuple[Windowing, int, str]] = field(default_factory=list)


@dataclass(frozen=True)
class PreparedAppend:
    """A request's items by partition, serialized (``WindowStore.prepare``): per call its script arguments and
    the group and item indices it carries; per partition the window keys it touches."""

    calls: list[tuple[int, list[Any]]]
    owners: list[tuple[Windowing, list[int]]]
    touched: dict[int, list[str]]
    total: int


@dataclass(frozen=True)
class _Entry:
    """A stream entry as read, before its lines are fetched."""

    partition: int
    entry_id: str
    window_id: str
    window_key: str
    reason: str
    closed_at: float
    n_lines: int


def _number(value: float | None) -> str:
    return "" if value is None else repr(value)


def _novelty_fields(text: str | None) -> dict[str, Any]:
    found = Novelty.from_json(json.loads(text) if text else {})
    return {"novel": found.novel, "known_anomalous": found.known_anomalous, "transitions": found.transitions,
            "counts": found.counts, "missing": found.missing}  # fmt: skip


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """Redis OOM and connection failures become StoreUnavailable subclasses, which the app maps to 503."""
    try:
        yield
    except StoreUnavailable:
        raise
    except (
        redis_errors.ConnectionError,
        redis_errors.TimeoutError,
        redis_errors.ClusterDownError,
        redis_errors.SlotNotCoveredError,
        OSError,
    ) as exc:
        raise StoreUnreachable(f"Redis does not answer: {exc}") from exc
    except redis_errors.ResponseError as exc:
        if isinstance(exc, redis_errors.OutOfMemoryError) or "OOM" in str(exc):
            raise StoreOutOfMemory(f"OOM: Redis is out of memory: {exc}") from exc
        raise


def _load_script(name: str) -> str:
    # Beside this module, not importlib.resources.files("service"): under pytest, tests/service can shadow
    # the package name with a namespace package, and files() would then look in the wrong directory.
    return Path(__file__).with_name(name).read_text(encoding="utf-8")


def _extra_lib(name: str) -> str:
    """complete.lua also writes the window's record (service/records/records_lib.lua), in the same script."""
    if name != "complete":
        return ""
    return (Path(__file__).parents[1] / "records" / "records_lib.lua").read_text(encoding="utf-8") + "\n"


class WindowStore:
    """Open windows, the ready queue and verdicts; async, one instance per process, safe for many workers."""

    def __init__(self, redis: Redis | RedisCluster, config: object | None = None) -> None:
        self.redis: Any = redis
        self.cluster = isinstance(redis, RedisCluster)
        self.config = config if isinstance(config, StoreConfig) else StoreConfig.from_settings(config)
        lib = _load_script("windows_lib.lua")
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(lib + "\n" + _extra_lib(name) + _load_script(f"{name}.lua"))
            for name in ("append", "caps", "close", "sweep", "complete", "drop", "verdict")
        }
        # not a window script: it takes the stream as its key, not the partition's fixed keys (see _run)
        self._drop_consumers = redis.register_script(_load_script("drop_consumers.lua"))
        self._partition_of = {self._stream(p): p for p in range(self.config.partitions)}
        # Entries delivered to a consumer but not yet handed out (a multi-stream read may deliver more).
        self._carry: dict[str, deque[_Entry]] = {}
        self._dropped: Counter[str] = Counter()
        n = self.config.partitions
        self.open_share = math.ceil(self.config.max_open_windows / n)  # the caps, per partition
        self.queue_share = math.ceil(self.config.max_ready_queue / n)

    # --- keys -------------------------------------------------------------------------------------------

    def partition(self, window_key: str) -> int:
        return zlib.crc32(window_key.encode("utf-8")) % self.config.partitions

    def prefix(self, partition: int) -> str:
        return f"{self.config.key_prefix}:{{p{partition}}}:"

    def _stream(self, partition: int) -> str:
        return self.prefix(partition) + "ready"

    async def _run(self, name: str, partition: int, args: Sequence[Any]) -> Any:
        """Call a script by SHA (redis-py loads it again on NOSCRIPT) with the partition's fixed keys."""
        return await self._scripts[name](keys=self._keys(partition), args=[self.prefix(partition), *args])

    def _keys(self, partition: int) -> list[str]:
        """The fixed keys every window script declares: the partition's stream, last-seen set and open counter."""
        return [self._stream(partition), self.prefix(partition) + "lastseen", self.prefix(partition) + "open"]

    async def _run_each(self, name: str, calls: Sequence[tuple[int, Sequence[Any]]]) -> list[Any]:
        """One script call per (partition, args): pipelined on one server, concurrent on a cluster.

        The pipeline sends EVALSHA itself: redis-py's pipelined scripts would first ask SCRIPT EXISTS, one more
        round trip per call. A call answered NOSCRIPT (Redis restarted without its scripts) did not run, so it
        is sent again alone, which loads the script. A cluster pipeline refuses EVALSHA; single calls reload a
        script a failed-over node lacks (NOSCRIPT).
        """
        if self.cluster:  # every call runs to its end before a failure is raised: a retry must not race them
            runs = (self._run(name, p, args) for p, args in calls)
            results = list(await asyncio.gather(*runs, return_exceptions=True))
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            return results
        sha = self._scripts[name].sha
        async with self.redis.pipeline(transaction=False) as pipe:
            for p, args in calls:
                pipe.evalsha(sha, 3, *self._keys(p), self.prefix(p), *args)
            results = list(await pipe.execute(raise_on_error=False))
        for i, ((p, args), result) in enumerate(zip(calls, results, strict=True)):
            if isinstance(result, redis_errors.NoScriptError):
                results[i] = await self._run(name, p, args)
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results

    # --- setup and ingestion ------------------------------------------------------------------------------

    async def setup(self) -> None:
        """Check the key layout, load the scripts and create each partition's consumer group; safe to call again."""
        with _translated():
            await self._check_layout()
            for script in self._scripts.values():
                await self.redis.script_load(script.script)
            for p in range(self.config.partitions):
                try:
                    await self.redis.xgroup_create(self._stream(p), GROUP, id="0", mkstream=True)
                except redis_errors.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise

    async def _check_layout(self) -> None:
        """Record the partition count and id scheme at first start; refuse a start that asks for others.

        Where a window's keys live depends on both, so a restart with another value would orphan open windows,
        queued windows and verdicts. Data written before the record existed is checked by looking for a stream
        past the configured partitions (or a missing last one).
        """
        key = f"{self.config.key_prefix}:layout"
        wanted = {"partitions": str(self.config.partitions), "id_scheme": ID_SCHEME}
        if not await self.redis.exists(key):
            n = self.config.partitions
            if await self.redis.exists(self._stream(n)) or (
                await self.redis.exists(self._stream(0)) and not await self.redis.exists(self._stream(n - 1))
            ):
                raise LayoutMismatch(
                    f"Redis holds windows written with another partition count than partitions={n}"
                    f" (no layout record at {key!r}); start with the partition count they were written with"
                )
            for name, value in wanted.items():
                await self.redis.hsetnx(key, name, value)
        stored = {_text(k): _text(v) for k, v in (await self.redis.hgetall(key)).items()}
        for name, value in wanted.items():
            if stored.get(name, value) != value:
                raise LayoutMismatch(
                    f"Redis holds windows laid out with {name}={stored[name]} under {self.config.key_prefix!r};"
                    f" this start asks for {name}={value}. Start with {name}={stored[name]}, or use another"
                    " key_prefix (the stored windows stay under the old one)"
                )

    async def append(self, items: Sequence[tuple[str, str | bytes]], mode: Literal["session", "fixed"]) -> AppendResult:
        """Buffer (window key, line) items in order, windowed by ``mode`` and the configured sizes; a line is its
        content, or line_codec.encode_line(raw, content) to keep the raw line beside it."""
        cfg = self.config
        windowing = Windowing(
            mode=mode, size=cfg.window_size, step=cfg.window_step, max_session_lines=cfg.max_session_lines
        )
        return await self.append_groups({windowing: items})

    async def append_groups(self, groups: Mapping[Windowing, Sequence[tuple[str, str | bytes]]]) -> AppendResult:
        """Buffer each group's (window key, line) items in order with its own windowing; one call per request.

        ``prepare`` then ``append_prepared``; a caller with a big request runs ``prepare`` in a worker thread.
        """
        return await self.append_prepared(self.prepare(groups))

    def prepare(self, groups: Mapping[Windowing, Sequence[tuple[str, str | bytes]]]) -> PreparedAppend:
        """Split the items by partition and serialize each partition's share (no I/O, thread-safe).

        This is the per-line work of an append on the Python side: it runs off the event loop for big bodies,
        and hands the event loop one MessagePack argument per partition instead of two protocol arguments per line.
        """
        n = self.config.partitions
        partition_of: dict[str, int] = {}
        calls: list[tuple[int, list[Any]]] = []
        owners: list[tuple[Windowing, list[int]]] = []
        for w, items in groups.items():
            by_partition: dict[int, tuple[list[str | bytes], list[int]]] = {}
            for index, (key, content) in enumerate(items):
                p = partition_of.get(key)
                if p is None:
                    p = partition_of[key] = zlib.crc32(key.encode("utf-8")) % n
                share = by_partition.get(p)
                if share is None:
                    share = by_partition[p] = ([], [])
                share[0].extend((key, content))
                share[1].append(index)
            for p, (pairs, indices) in sorted(by_partition.items()):
                args = [w.mode, w.max_session_lines, w.size, w.step, self.open_share, self.queue_share]
                calls.append((p, [*args, msgpack.packb(pairs, use_bin_type=False)]))
                owners.append((w, indices))
        touched: dict[int, list[str]] = {}
        for key, p in partition_of.items():
            touched.setdefault(p, []).append(key)
        return PreparedAppend(calls, owners, touched, sum(len(items) for items in groups.values()))

    async def append_prepared(
        self, prepared: PreparedAppend, request_key: str | None = None, keep: bool = False
    ) -> AppendResult:
        """Store a prepared request.

        A request is one script call per partition, and calls are not one transaction: if one fails (Redis out
        of memory on its node, unreachable), the others may have stored their lines. With ``request_key`` (the
        intake's hash of the body as sent) such a request is idempotent: see ``_append_once``. It is only used
        for requests of several calls (one call is atomic), or always with ``keep`` (a client's
        Idempotency-Key: its markers stay after a success too, so a retry of an answer the client never got
        stores nothing again).

        The caps hold per partition (``open_share``, ``queue_share``: the cap divided by the partitions, rounded
        up) and are checked twice: for every partition the request touches before any line is written, so a
        refused request normally accepts nothing (QueueFull / TooManySessions); and again inside each
        partition's append script, atomically with its writes, so concurrent requests cannot pass them
        together. A partition that refuses in such a race writes nothing and its items come back in
        ``refused``; when every partition refused, the request is refused as a whole.
        """
        if not prepared.calls:
            return AppendResult(0, [])
        await self._check_caps(prepared.touched)
        if request_key is not None and (keep or len(prepared.calls) > 1):
            results = await self._append_once(prepared.calls, request_key, keep)
        else:
            with _translated():
                results = await self._run_each("append", prepared.calls)
        closed: list[str] = []
        refused: list[tuple[Windowing, int, str]] = []
        for (w, indices), result in zip(prepared.owners, results, strict=True):
            status = _text(result[0])
            if status == "ok":
                closed.extend(_text(i) for i in result[1:])
            else:
                refused.extend((w, i, status) for i in indices)
        if len(refused) == prepared.total:
            self._refuse(refused[0][2])
        return AppendResult(prepared.total - len(refused), closed, refused)

    async def _append_once(self, calls: list[tuple[int, list[Any]]], request_key: str, keep: bool) -> list[Any]:
        """The append calls of a request, each applied at most once for its attempts within idempotency_ttl_s.

        Each call carries a marker name (request key and call index): append.lua skips a call whose marker
        exists, answering the reply it stored, and sets the marker atomically with its writes. After every call
        succeeded the markers are deleted (unless ``keep``), so the same body sent again later is new lines
        (repeated heartbeats are not dropped); after a failure they stay, and the retry stores only what is
        missing. An attempt holds a lock on the request key meanwhile (one SET NX), so an identical request
        sent concurrently is told to retry (RequestInFlight -> 429) instead of skipping calls whose attempt may
        yet fail. If the markers cannot be deleted the request fails (503): its retry finds them and stores
        nothing twice.
        """
        lock = self.prefix(self.partition(request_key)) + "req-lock:" + request_key
        ttl = self.config.idempotency_ttl_s
        marked = [(p, [*args, f"{request_key}:{i}", ttl]) for i, (p, args) in enumerate(calls)]
        markers = [] if keep else [self.prefix(p) + "req:" + args[-2] for p, args in marked]
        with _translated():
            if not await self.redis.set(lock, 1, nx=True, px=REQUEST_LOCK_MS):
                raise RequestInFlight(self.config.retry_after_s)
            try:
                results = await self._run_each("append", marked)
            except BaseException:
                with contextlib.suppress(redis_errors.RedisError, OSError):
                    await self.redis.delete(lock)
                raise
            await self.redis.delete(*markers, lock)  # one round trip (split by slot on a cluster)
        return results

    def _refuse(self, reason: str, detail: str = "") -> NoReturn:
        cfg = self.config
        if reason == "queue_full":
            raise QueueFull(self.queue_share, cfg.max_ready_queue, cfg.retry_after_s, cfg.partitions)
        raise TooManySessions(
            f"{detail or 'a partition is at its share of'} max_open_windows={cfg.max_open_windows}"
            f" ({self.open_share} per partition, {cfg.partitions} partitions)"
        )

    async def _check_caps(self, touched: Mapping[int, list[str]]) -> None:
        """One round trip: queue depth and open count of each partition touched, and how many of its keys have
        no open window. One server: caps.lua per partition, which counts the keys only near the cap. Cluster: a
        cluster pipeline (it refuses EVALSHA) of XLEN, GET and one HGET per key; concurrent single script calls
        as a request's first command made redis-py's cluster client fail on connections it was still opening
        (tests/service/test_cluster.py, 40 concurrent requests)."""
        order = sorted(touched)
        with _translated():
            if self.cluster:
                counts = await self._cap_counts_pipelined(touched, order)
            else:
                calls = [(p, [self.open_share, len(touched[p]), orjson.dumps(touched[p])]) for p in order]
                counts = await self._run_each("caps", calls)
        for p, (depth, open_now, new) in zip(order, counts, strict=True):
            if int(depth) >= self.queue_share:
                self._refuse("queue_full")
            if int(new) > 0 and int(open_now) + int(new) > self.open_share:
                self._refuse(
                    "too_many_sessions",
                    f"{open_now} windows open in partition {p}, this request would open {new} more;",
                )

    async def _cap_counts_pipelined(self, touched: Mapping[int, list[str]], order: list[int]) -> list[list[int]]:
        """(depth, open, new keys) per partition in ``order``, from plain commands in one pipeline."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for p in order:
                pipe.xlen(self._stream(p))
                pipe.get(self.prefix(p) + "open")
                for key in touched[p]:
                    pipe.hget(self.prefix(p) + "meta:" + key, "open")
            replies = list(await pipe.execute())
        counts, at = [], 0
        for p in order:
            flags = replies[at + 2 : at + 2 + len(touched[p])]
            new = sum(1 for r in flags if r is None or _text(r) != "1")
            counts.append([int(replies[at]), int(replies[at + 1] or 0), new])
            at += 2 + len(touched[p])
        return counts

    async def close(self, window_key: str) -> str | None:
        """Close the open window of a key; its id, or None if none was open."""
        with _translated():
            closed = await self._run("close", self.partition(window_key), ["explicit", window_key])
        return _text(closed[0]) if closed else None

    async def sweep_idle(self) -> list[str]:
        """Close windows idle for idle_timeout_s by the Redis clock (each script selects and closes atomically)."""
        closed: list[str] = []
        with _translated():
            for p in range(self.config.partitions):
                while True:
                    result = await self._run("sweep", p, [repr(self.config.idle_timeout_s), SWEEP_CHUNK])
                    closed.extend(_text(i) for i in result[1:])
                    if int(result[0]) < SWEEP_CHUNK:
                        break
        return closed

    # --- the ready queue ----------------------------------------------------------------------------------

    async def read_batch(self, consumer: str, max_windows: int, max_lines: int, block_ms: int) -> list[ClosedWindow]:
        """Up to max_windows windows and max_lines lines (a longer window comes alone); [] after block_ms."""
        carry = self._carry.setdefault(consumer, deque())
        if not carry:
            with _translated():
                carry.extend(await self._read_new(consumer, max_windows, block_ms))
        taken: list[_Entry] = []
        lines = 0
        while carry and len(taken) < max_windows:
            if taken and lines + carry[0].n_lines > max_lines:
                break
            entry = carry.popleft()
            taken.append(entry)
            lines += entry.n_lines
        return await self._with_lines(taken)

    async def _read_new(self, consumer: str, count: int, block_ms: int) -> list[_Entry]:
        """Entries never delivered before: one blocking read over all streams on a single server; on a
        cluster, one read per partition (pipelined, each to its node), repeated every CLUSTER_POLL_S."""
        if not self.cluster:
            streams: dict[Any, Any] = {self._stream(p): ">" for p in range(self.config.partitions)}
            reply = await self.redis.xreadgroup(
                GROUP, consumer, streams, count=count, block=block_ms if block_ms > 0 else None
            )
            return self._entries(reply)
        deadline = time.monotonic() + max(block_ms, 0) / 1000
        while True:
            async with self.redis.pipeline() as pipe:
                for p in range(self.config.partitions):
                    pipe.xreadgroup(GROUP, consumer, {self._stream(p): ">"}, count=count)
                replies = await pipe.execute()
            entries = [entry for reply in replies for entry in self._entries(reply)]
            left = deadline - time.monotonic()
            if entries or left <= 0:
                return entries
            await asyncio.sleep(min(CLUSTER_POLL_S, left))

    async def resume(self, consumer: str) -> int:
        """Put entries delivered to this consumer in an earlier life (never acked) ahead of its next reads.

        A restarted worker with a stable name picks its own work up at once instead of after reclaim_idle_ms.
        """
        entries: list[_Entry] = []
        with _translated():
            for p in range(self.config.partitions):
                after = "0"
                while True:
                    streams: dict[Any, Any] = {self._stream(p): after}
                    reply = await self.redis.xreadgroup(GROUP, consumer, streams, count=RESUME_PAGE)
                    page = self._entries(reply)
                    entries.extend(page)
                    if len(page) < RESUME_PAGE:
                        break
                    after = page[-1].entry_id
        self._carry[consumer] = deque(entries)
        return len(entries)

    async def reclaim(self, consumer: str, min_idle_ms: int, count: int) -> list[ClosedWindow]:
        """Take over up to count windows another (dead) worker read but never completed (XAUTOCLAIM)."""
        entries: list[_Entry] = []
        with _translated():
            for p in range(self.config.partitions):
                cursor: Any = "0-0"
                while len(entries) < count:
                    reply = await self.redis.xautoclaim(
                        self._stream(p),
                        GROUP,
                        consumer,
                        min_idle_ms,
                        start_id=cursor,
                        count=count - len(entries),
                    )
                    cursor = _text(reply[0])
                    entries.extend(self._parse(p, entry_id, data) for entry_id, data in reply[1] if data)
                    if cursor == "0-0":
                        break
        return await self._with_lines(entries)

    async def drop_idle_consumers(self, min_idle_ms: int, keep: str) -> list[str]:
        """Remove consumers with nothing pending that have not read for min_idle_ms: dead workers, once their
        windows were reclaimed, so the group does not grow by one name per restart. Atomic per partition."""
        dropped: set[str] = set()
        with _translated():
            for p in range(self.config.partitions):
                names = await self._drop_consumers(keys=[self._stream(p)], args=[GROUP, min_idle_ms, keep])
                dropped.update(_text(name) for name in names)
        return sorted(dropped)

    def _entries(self, reply: Any) -> list[_Entry]:
        """Parse an XREADGROUP reply (RESP2 list or RESP3 dict) into entries."""
        if not reply:
            return []
        streams = reply.items() if isinstance(reply, dict) else ((s, [e]) for s, e in reply)
        out: list[_Entry] = []
        for stream, chunks in streams:
            p = self._partition_of[_text(stream)]
            out.extend(self._parse(p, i, d) for chunk in chunks for i, d in chunk if i is not None and d)
        return out

    @staticmethod
    def _parse(partition: int, entry_id: Any, data: dict[Any, Any]) -> _Entry:
        f = {_text(k): _text(v) for k, v in data.items()}
        return _Entry(
            partition,
            _text(entry_id),
            f["id"],
            f["key"],
            f["reason"],
            float(f["closed_at"]),
            int(f["n_lines"]),
        )

    async def _with_lines(self, entries: list[_Entry]) -> list[ClosedWindow]:
        """The windows of the entries, with their lines and failed attempts; an entry whose lines are gone is
        acked and deleted (``take_dropped`` counts it), so it cannot stay pending forever."""
        if not entries:
            return []
        with _translated():
            async with self.redis.pipeline(transaction=False) as pipe:
                for e in entries:
                    pipe.lrange(self.prefix(e.partition) + "closed:" + e.window_id, 0, -1)
                    pipe.hget(self.prefix(e.partition) + "attempts", e.window_id)
                replies = await pipe.execute()
        windows = []
        missing: dict[int, list[str]] = {}
        for e, lines, attempts in zip(entries, replies[::2], replies[1::2], strict=True):
            if not lines:
                missing.setdefault(e.partition, []).extend((e.entry_id, e.window_id))
                continue
            raw_lines, contents = zip(*map(decode_line, lines), strict=True)
            windows.append(
                ClosedWindow(
                    e.entry_id, e.partition, e.window_id, list(contents), e.reason, e.closed_at,
                    e.window_key, int(attempts or 0), list(raw_lines),
                )
            )  # fmt: skip
        if missing:
            calls = [(p, [GROUP, *pairs]) for p, pairs in sorted(missing.items())]
            with _translated():
                results = await self._run_each("drop", calls)
            for reason in (_text(r) for result in results for r in result):
                if reason:
                    self._dropped[reason] += 1
                    log.warning("dropped a ready-queue entry whose lines are gone (%s)", reason)
        return windows

    def take_dropped(self) -> Counter[str]:
        """Entries dropped since the last call, by reason (lines_missing, already_scored); for the metric."""
        dropped, self._dropped = self._dropped, Counter()
        return dropped

    async def record_failure(self, window: ClosedWindow) -> int:
        """Count one failed model attempt on a window; the count so far (complete and drop clear it)."""
        with _translated():
            return int(await self.redis.hincrby(self.prefix(window.partition) + "attempts", window.window_id, 1))

    async def complete(
        self, verdicts: Sequence[tuple[ClosedWindow, Verdict]], records: Mapping[str, str] | None = None
    ) -> list[str]:
        """Write each verdict with its TTL, drop the lines and ack, atomically per window; idempotent.

        ``scored_at`` is written from the Redis clock (the verdict's own field is not stored), like ``closed_at``.
        A "failed" verdict keeps the lines under ``failed:<id>`` instead. ``records`` (window id -> payload from
        service.records.record_store.record_payload) are written with their verdicts, in the same script.
        Returns the ids whose verdict this call wrote (a re-scored window keeps its first verdict).
        """
        records = records or {}
        by_partition: dict[int, list[Any]] = {}
        for window, v in verdicts:
            by_partition.setdefault(window.partition, []).extend(
                (
                    window.entry_id, window.window_id, window.window_key, v.label, _number(v.score),
                    _number(v.threshold), v.n_lines, v.n_lines if v.n_scored is None else v.n_scored,
                    v.model_version, repr(v.closed_at), v.error, records.get(window.window_id, ""), v.extra_fields(),
                )
            )  # fmt: skip
        if not by_partition:
            return []
        calls = [(p, [GROUP, self.config.verdict_ttl_s, *args]) for p, args in sorted(by_partition.items())]
        with _translated():
            results = await self._run_each("complete", calls)
        return [_text(i) for result in results for i in result]

    async def fail(
        self, windows: Sequence[ClosedWindow], error: str, records: Mapping[str, str] | None = None
    ) -> list[str]:
        """Dead-letter windows the model cannot score: a "failed" verdict with the reason; see ``complete``."""
        now = time.time()
        return await self.complete(
            [
                (w, Verdict(w.window_id, "failed", None, None, len(w.lines), "", w.closed_at, now, error))
                for w in windows
            ],
            records,
        )

    # --- reading state ------------------------------------------------------------------------------------

    async def verdict(self, window_id: str) -> Verdict | Literal["pending"] | None:
        """The verdict, "pending" (open, or closed and awaiting the model), or None (unknown or expired)."""
        ref = parse_window_id(window_id)
        if ref is not None:
            candidates = [(ref.key, ref.kind)]
        else:  # an id written before service/windows/ids.py: a bare session id, or <source>:<start>
            candidates = [(re.sub(r"#\d+$", "", window_id), "session")]
            fixed = re.fullmatch(r"(.+):\d+", window_id)
            if fixed:
                candidates.append((fixed.group(1), "fixed"))
        for key, kind in candidates:
            with _translated():
                found = await self._run("verdict", self.partition(key), [window_id, key, kind])
            if found is None:
                continue
            if not isinstance(found, list):
                return "pending"
            f = {_text(k): _text(v) for k, v in zip(found[::2], found[1::2], strict=True)}
            return Verdict(
                window_id=window_id,
                label=f["label"],
                score=float(f["score"]) if "score" in f else None,
                threshold=float(f["threshold"]) if "threshold" in f else None,
                n_lines=int(f["n_lines"]),
                model_version=f["model_version"],
                closed_at=float(f["closed_at"]),
                scored_at=float(f["scored_at"]),
                error=f.get("error", ""),
                n_scored=int(f["n_scored"]) if "n_scored" in f else None,
                reason=f.get("reason"),
                **_novelty_fields(f.get("novelty")),
            )
        return None

    async def queue_depth(self) -> int:
        """Closed windows not yet completed, all partitions (complete deletes entries from the stream)."""
        with _translated():
            async with self.redis.pipeline(transaction=False) as pipe:
                for p in range(self.config.partitions):
                    pipe.xlen(self._stream(p))
                return sum(int(r) for r in await pipe.execute())

    async def open_windows(self) -> int:
        with _translated():
            async with self.redis.pipeline(transaction=False) as pipe:
                for p in range(self.config.partitions):
                    pipe.get(self.prefix(p) + "open")
                return sum(int(r or 0) for r in await pipe.execute())
