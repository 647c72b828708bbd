"""Syslog listeners: TCP (RFC 6587), TLS (RFC 5425) and UDP (RFC 5426), into the path every HTTP body takes.

Each read of a connection (or each burst of datagrams) is one batch: its frames are cut (syslog_parse.FrameReader),
their headers parsed, the source and session picked from header fields, and then ``build_batch`` and
``routes.store_batch`` store it exactly as a ``POST /logs`` body, counted under format ``syslog_tcp``,
``syslog_tls`` or ``syslog_udp``.

Pressure: where HTTP answers 429 or 503, a TCP or TLS connection stops reading and retries the same lines
(backoff up to retry_after_s) until the store takes them, so the kernel's buffers fill and the sender waits;
nothing it sent is dropped. UDP cannot make a sender wait: datagrams the store refuses, or that arrive while
``UDP_BACKLOG`` wait already, are dropped and counted by reason (``logllm_syslog_udp_dropped_total``).

Stop: the listeners close first (before the classifier and the store), and a connection's lines in hand are
stored once more; only lines that the store still refuses then are lost, and logged with their count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from typing import Any

from redis.exceptions import RedisError

from service.intake.batch import Batch, LineFields, Rejection, build_batch
from service.intake.routes import INLINE_LINES, store_batch
from service.intake.syslog_parse import FIELDS, FrameReader, header, today
from service.settings import host_port
from service.state import ServiceState
from service.windows.ids import BadWindowName, check_source
from service.windows.store import PreparedAppend, QueueFull, TooManySessions

log = logging.getLogger(__name__)
READ_BYTES = 256 * 1024  # one read of a connection: up to ~2,000 HDFS lines, parsed and stored as one batch
STREAM_LIMIT = 1024 * 1024  # asyncio buffers at most twice this per connection before it stops reading the socket
BACKOFF_S = 0.05  # first wait before a refused batch is tried again; doubles up to retry_after_s
UDP_BACKLOG = 20_000  # datagrams waiting for the store; more are dropped (backlog_full)
UDP_RECEIVE_BUFFER = 8 * 1024 * 1024  # asked of the kernel (capped by net.core.rmem_max)
CAP_REASONS = ("queue_full", "too_many_sessions")


def pressure_reason(exc: BaseException) -> str:
    if isinstance(exc, QueueFull):
        return "queue_full"
    if isinstance(exc, TooManySessions):
        return "too_many_sessions"
    return "store_unavailable"


class SyslogIntake:
    """Syslog messages -> batches -> the store; shared by every listener of one app."""

    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self.stopping = asyncio.Event()

    def line_fields(self, messages: list[bytes]) -> tuple[list[LineFields], list[Rejection]]:
        """(index, message, session, source, header timestamp) per message; a source a header names but no window
        key can hold (``:``, ``#``, white space) is rejected alone (``invalid_source``), as Loki labels are.

        The per-line hot loop of the syslog path: headers are plain tuples (``syslog_parse.header``), the fields
        that pick source and session are tuple positions, and what depends on the source alone is looked up once
        per source and batch."""
        settings = self.state.settings
        source_at = FIELDS[settings.syslog_source_field] if settings.syslog_source_field else 0
        default_session = settings.syslog_session_field
        session_at: dict[str | None, int] = {}  # source -> position of its session field (0: none)
        lines: list[LineFields] = []
        rejected: list[Rejection] = []
        bad: dict[str | None, str] = {}  # sources that cannot name a window, and why
        now = today()
        for index, raw in enumerate(messages):
            fields = header(raw.rstrip(b"\r\n\x00").decode("utf-8", "replace"), now)  # = decode(raw)
            source = fields[source_at] if source_at else None
            at = session_at.get(source)
            if at is None:
                if source is not None:
                    try:
                        check_source(source)
                    except BadWindowName as exc:
                        bad[source] = str(exc)[:200]
                override = settings.sources.get(source) if source else None
                chosen = (override.syslog_session_field if override else None) or default_session
                at = session_at[source] = FIELDS[chosen] if chosen else 0
            if source in bad:
                rejected.append(Rejection(index=index, reason="invalid_source", message=bad[source]))
                continue
            lines.append((index, fields[1], fields[at] if at else None, source, fields[6]))
        return lines, rejected

    def batch(self, messages: list[bytes]) -> tuple[Batch, PreparedAppend]:
        """build_batch of the messages, with the header rejections; the store call prepared (pure CPU)."""
        lines, rejected = self.line_fields(messages)
        batch = build_batch(lines, self.state.settings)
        if rejected:
            batch.rejected = sorted([*rejected, *batch.rejected], key=lambda r: r.index)
        return batch, self.state.store.prepare(batch.groups)

    async def built(self, messages: list[bytes]) -> tuple[Batch, PreparedAppend]:
        if len(messages) <= INLINE_LINES:
            return self.batch(messages)
        return await asyncio.to_thread(self.batch, messages)

    async def store_stream(
        self, messages: list[bytes], transport: str, built: tuple[Batch, PreparedAppend] | None = None
    ) -> None:
        """Store a connection's messages (``built``: their batch, made while the previous one was stored),
        waiting while the store refuses them; returns once all were stored or rejected for what they are, or
        when the service stops."""
        delay = BACKOFF_S
        retry_after = self.state.settings.retry_after_s
        while messages:
            batch, prepared = built or await self.built(messages)
            built = None
            try:
                await store_batch(self.state, batch, prepared, transport)
            except (QueueFull, TooManySessions, RedisError) as exc:
                reason = pressure_reason(exc)
            else:
                # lines a partition refused in a race at a cap (counted as rejected then) are tried again
                again = {r.index for r in batch.rejected if r.reason in CAP_REASONS}
                messages = [m for i, m in enumerate(messages) if i in again]
                if not messages:
                    return
                reason = next(r.reason for r in batch.rejected if r.reason in CAP_REASONS)
            self.state.metrics.syslog_tcp_paused.labels(transport=transport, reason=reason).inc()
            if self.stopping.is_set():
                log.warning("%s: stopping with %d lines the store refused (%s); they are lost", transport,
                            len(messages), reason)  # fmt: skip
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
            delay = min(delay * 2, retry_after)

    def refused(self, refused: list[tuple[str, str]], transport: str, peer: Any) -> None:
        """Frames refused by the framing (too large): counted as rejected lines and logged with the peer."""
        for reason, what in refused:
            self.state.metrics.lines_rejected.labels(reason=reason, format=transport).inc()
            log.warning("%s from %s: %s refused (%s)", transport, peer, what, reason)


class UdpBatcher(asyncio.DatagramProtocol):
    """Datagrams in as they come; one flusher stores what gathered while the previous store call ran."""

    def __init__(self, intake: SyslogIntake) -> None:
        self.intake = intake
        self.metrics = intake.state.metrics
        self.max_bytes = intake.state.settings.syslog_max_message_bytes
        self.pending: list[bytes] = []
        self.wake = asyncio.Event()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) > self.max_bytes:
            self.metrics.syslog_udp_dropped.labels(reason="too_large").inc()
        elif len(self.pending) >= UDP_BACKLOG:
            self.metrics.syslog_udp_dropped.labels(reason="backlog_full").inc()
        else:
            self.pending.append(data)
            self.wake.set()

    async def flush_forever(self) -> None:
        while not self.intake.stopping.is_set() or self.pending:
            if not self.pending:
                waiter = asyncio.ensure_future(self.wake.wait())
                stop = asyncio.ensure_future(self.intake.stopping.wait())
                await asyncio.wait([waiter, stop], return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stop.cancel()
                self.wake.clear()
                continue
            await self.flush()

    async def flush(self) -> None:
        """Store what gathered, once: UDP has no way to make the sender wait, so a refusal drops it, counted."""
        messages, self.pending = self.pending, []
        batch, prepared = await asyncio.to_thread(self.intake.batch, messages)  # keeps the socket drained
        try:
            await store_batch(self.intake.state, batch, prepared, "syslog_udp")
        except (QueueFull, TooManySessions, RedisError) as exc:
            self.metrics.syslog_udp_dropped.labels(reason=pressure_reason(exc)).inc(batch.accepted)
            return
        for reason in CAP_REASONS:
            refused = sum(r.reason == reason for r in batch.rejected)
            if refused:
                self.metrics.syslog_udp_dropped.labels(reason=reason).inc(refused)


class SyslogListeners:
    """The listeners ``--syslog-tcp``, ``--syslog-tls`` and ``--syslog-udp`` ask for (roles api and all)."""

    def __init__(self, state: ServiceState) -> None:
        self.intake = SyslogIntake(state)
        self.settings = state.settings
        self.servers: list[asyncio.Server] = []
        self.udp: asyncio.DatagramTransport | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.writers: set[asyncio.StreamWriter] = set()
        self.addresses: dict[str, tuple[str, int]] = {}  # transport -> where it listens (port 0 resolved)

    async def start(self) -> None:
        settings = self.settings
        if settings.syslog_tcp:
            await self._stream("syslog_tcp", settings.syslog_tcp, None)
        if settings.syslog_tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(settings.syslog_tls_cert), str(settings.syslog_tls_key))
            await self._stream("syslog_tls", settings.syslog_tls, context)
        if settings.syslog_udp:
            host, port = host_port(settings.syslog_udp)
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
            sock.bind((host, port))
            loop = asyncio.get_running_loop()
            batcher = UdpBatcher(self.intake)
            transport, _ = await loop.create_datagram_endpoint(lambda: batcher, sock=sock)
            self.udp = transport
            self.addresses["syslog_udp"] = sock.getsockname()[:2]
            self._task(batcher.flush_forever())
        for name, address in self.addresses.items():
            log.info("%s listening on %s:%d", name, *address)

    async def _stream(self, transport: str, where: str, context: ssl.SSLContext | None) -> None:
        host, port = host_port(where)

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._serve(reader, writer, transport)

        server = await asyncio.start_server(serve, host, port, ssl=context, limit=STREAM_LIMIT)
        self.servers.append(server)
        self.addresses[transport] = server.sockets[0].getsockname()[:2]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, transport: str) -> None:
        """One connection: read, cut frames, build the batch, hand it to the connection's storer. The storer
        stores batches in order, one at a time; one more may wait for it, and then reading stops until it is
        taken (backpressure). So the next batch is parsed while the previous one is being stored."""
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        self.writers.add(writer)
        peer = writer.get_extra_info("peername")
        frames = FrameReader(self.settings.syslog_max_message_bytes)
        handoff: asyncio.Queue[tuple[list[bytes], tuple[Batch, PreparedAppend]] | None] = asyncio.Queue(maxsize=1)
        storer = asyncio.create_task(self._store_in_order(handoff, transport), name="logllm-syslog-store")
        try:
            while not storer.done():
                try:
                    data = await reader.read(READ_BYTES)
                except (ConnectionError, ssl.SSLError, OSError) as exc:
                    log.info("%s from %s: %s", transport, peer, exc)
                    data = b""
                got = frames.feed(data) if data else frames.close()
                self.intake.refused(got.refused, transport, peer)
                if got.messages:
                    await handoff.put((got.messages, await self.intake.built(got.messages)))
                if not data:
                    break
        finally:
            if not storer.done():
                await handoff.put(None)
            await storer
            self.writers.discard(writer)
            if task is not None:
                self.tasks.discard(task)
            writer.close()

    async def _store_in_order(
        self, handoff: asyncio.Queue[tuple[list[bytes], tuple[Batch, PreparedAppend]] | None], transport: str
    ) -> None:
        while (item := await handoff.get()) is not None:
            messages, built = item
            await self.intake.store_stream(messages, transport, built)

    def _task(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine, name="logllm-syslog")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def stop(self) -> None:
        """Stop listening, end open connections (what they sent is stored first), flush UDP."""
        self.intake.stopping.set()
        for server in self.servers:
            server.close()
        if self.udp is not None:
            self.udp.close()
        for writer in list(self.writers):
            writer.close()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=10)
        for server in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1)
