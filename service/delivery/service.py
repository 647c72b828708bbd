"""One app's delivery: the verdict stream the classifier publishes to, and the background delivery loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from service.delivery.outbox import Outbox
from service.delivery.records import RecordSource, VerdictRecords
from service.delivery.stream import VerdictStream
from service.delivery.worker import DeliveryLoop
from service.state import ServiceState

log = logging.getLogger(__name__)
STOP_TIMEOUT_S = 30.0


class Delivery:
    """Records come from ``state.records`` (the anomaly records, #12) when the app has them, else verdicts."""

    def __init__(self, state: ServiceState, records: RecordSource | None = None) -> None:
        settings, store = state.settings, state.store
        self.records: RecordSource = records or getattr(state, "records", None) or VerdictRecords(store)
        self.stream = VerdictStream(store.redis, store.config.key_prefix, settings.verdict_stream_maxlen)
        self.outbox = Outbox(store.redis, store.config.key_prefix, done_ttl_s=settings.verdict_ttl_s)
        self.loop = DeliveryLoop(self.stream, self.outbox, self.records, settings, state.metrics)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.loop.enabled:
            self.task = asyncio.create_task(self.loop.run(), name="logllm-delivery")

    async def stop(self) -> None:
        """Let the sends in flight finish; anything not sent stays in the outbox for the next start."""
        if self.task is None:
            return
        self.loop.stop()
        done, _ = await asyncio.wait([self.task], timeout=STOP_TIMEOUT_S)
        if not done:
            log.warning("delivery did not stop within %.0f s; cancelling (its jobs come back)", STOP_TIMEOUT_S)
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
