"""A dead-lettered window's record is built off the event loop: its lines are preprocessed in a worker thread, as
a scored window's are, so a crafted line cannot stall the loop (issue: preprocessing on the loop)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence

import pytest

from service.records.keeper import RecordKeeper
from service.records.record_store import RecordStore
from service.scoring.classifier import ClassifierConfig, ClassifierLoop
from service.windows.store import Verdict, WindowStore

pytestmark = pytest.mark.anyio


class AlwaysFails:
    threshold = 0.5
    version = "always-fails"

    def score(self, sequences: Sequence[Sequence[str]]) -> list[float]:
        raise RuntimeError("NaN in the logits")


async def test_a_failed_windows_lines_are_preprocessed_off_the_event_loop(
    make_store: Callable[..., Awaitable[WindowStore]],
) -> None:
    store = await make_store()
    await store.append([("bad", "poison pill"), ("bad", "second line")], "session")
    await store.close("bad")
    threads: list[int] = []

    def preprocess(line: str) -> str:
        threads.append(threading.get_ident())
        return "pre: " + line

    settings = ClassifierConfig(max_batch_wait_ms=20, reclaim_idle_ms=1, max_deliveries=2, consumer="test")
    keeper = RecordKeeper(RecordStore(store), preprocess)
    loop = ClassifierLoop(store, AlwaysFails(), settings, preprocess=preprocess, records=keeper)
    await loop._process(await store.read_batch("test", 8, 1000, 0))
    for _ in range(3):  # handed out again (XAUTOCLAIM) until the delivery count passes max_deliveries
        await asyncio.sleep(0.01)
        await loop._reclaim()
    failed = await store.verdict("bad")
    assert isinstance(failed, Verdict) and failed.label == "failed"
    assert threads, "nothing was preprocessed"
    on_loop = threading.get_ident()
    assert on_loop not in threads, f"{threads.count(on_loop)} of {len(threads)} lines preprocessed on the event loop"
