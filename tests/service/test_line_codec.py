"""Raw lines kept beside their content (service/windows/line_codec.py) through a real Redis window store: every
layout round-trips, content-only elements (a raw-format source, or written before) cost and read as before, and
sessions, `#n` windows, idle sweeps and sliding fixed windows all hand the scorer the content and keep the raw."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from service.windows.line_codec import decode_line, encode_line
from service.windows.store import ClosedWindow, WindowStore

pytestmark = pytest.mark.anyio
MakeStore = Callable[..., Awaitable[WindowStore]]

HDFS = "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_1 terminating"
CASES = [  # (raw, content): every layout, and texts that look like a header or a marker
    (HDFS, HDFS.split(": ", 1)[1]),  # the header-strip case: content is the tail
    ("- 1117838570 R02 RAS KERNEL INFO ", ""),  # a BGL line without content: the empty tail
    ("[web-1] GET /x 200 (12ms) trailer", "GET /x 200"),  # content inside the raw line
    ("2024-01-01 host: user=Zoë", "user=Zoe"),  # content rewritten: not part of the raw line at all
    ("ÿ12:ÿ raw", "ÿ raw"),  # U+00FF is 0xC3 0xBF in UTF-8, never the 0xFF marker
    ("\xff3,4:日本語 ok", "日本語 ok"),  # multi-byte text after a header-like prefix: offsets count code points
    ("!5:x", "x!5:x"),  # content longer than raw, and containing it
    ("same line", "same line"),
]


def test_every_layout_decodes_to_what_was_encoded() -> None:
    for raw, content in CASES:
        element = encode_line(raw, content)
        wire = element if isinstance(element, bytes) else element.encode()
        assert decode_line(wire) == (raw, content), (raw, content, wire)
    layouts = [encode_line(raw, content) for raw, content in CASES[:4]]
    assert [e[:4] for e in layouts if isinstance(e, bytes)] == [b"\xff53:", b"\xff33:", b"\xff8,1", b"\xff!8:"]


def test_equal_raw_and_content_cost_nothing_and_old_elements_read_as_content() -> None:
    assert encode_line("plain line", "plain line") == "plain line"  # the element is the content, byte for byte
    assert decode_line("ÿ old content".encode()) == ("ÿ old content", "ÿ old content")
    assert decode_line(HDFS.encode()) == (HDFS, HDFS)  # an element written before raw lines were kept


def test_the_header_strip_case_costs_the_header_and_a_few_bytes() -> None:
    raw, content = CASES[0]
    element = encode_line(raw, content)
    assert isinstance(element, bytes)
    header = len(raw) - len(content)
    assert len(element) - len(content.encode()) == header + len(f"\xff{header}:".encode("latin-1"))


async def drain(store: WindowStore) -> dict[str, ClosedWindow]:
    return {w.window_id: w for w in await store.read_batch("c", 100, 10_000, 0)}


async def test_sessions_numbered_windows_and_idle_sweeps_keep_the_raw_lines(make_store: MakeStore) -> None:
    store = await make_store(max_session_lines=3, idle_timeout_s=0.3)
    items = [("s", encode_line(raw, content)) for raw, content in CASES[:4]]
    assert (await store.append(items, "session")).closed == ["s"]  # size close at 3 lines
    assert await store.close("s") == "s#1"
    await store.append([("t", encode_line(*CASES[4])), ("t", encode_line(*CASES[5]))], "session")
    await asyncio.sleep(0.4)
    assert await store.sweep_idle() == ["t"]
    windows = await drain(store)
    assert windows["s"].lines == [c for _, c in CASES[:3]]  # what the scorer reads: the content, as before
    assert windows["s"].raw_lines == [r for r, _ in CASES[:3]]
    assert (windows["s#1"].lines, windows["s#1"].raw_lines) == ([CASES[3][1]], [CASES[3][0]])
    assert windows["t"].reason == "idle" and windows["t"].raw_lines == [CASES[4][0], CASES[5][0]]
    assert [windows["t"].raw_line(i) for i in range(2)] == [CASES[4][0], CASES[5][0]]


async def test_sliding_fixed_windows_keep_raw_lines_across_the_overlap(make_store: MakeStore) -> None:
    store = await make_store(window_size=4, window_step=2)
    raws = [f"2024-01-0{i} 10:00:0{i} web-{i} INFO request {i} served" for i in range(6)]
    contents = [raw.split(" INFO ", 1)[1] for raw in raws]
    items = [("fixed:web", encode_line(r, c)) for r, c in zip(raws, contents, strict=True)]
    assert (await store.append(items, "fixed")).closed == ["fixed:web:0", "fixed:web:2"]
    await store.close("fixed:web")  # the tail (lines 4, 5) was covered by fixed:web:2: nothing new to score
    windows = await drain(store)
    assert windows["fixed:web:2"].lines == contents[2:6]
    assert windows["fixed:web:2"].raw_lines == raws[2:6]  # lines 2, 3 were copied out of the overlap in Lua
    assert windows["fixed:web:0"].raw_lines == raws[0:4]


async def test_content_only_elements_read_as_before(make_store: MakeStore) -> None:
    """Windows buffered before this change hold bare content; they read with raw = content."""
    store = await make_store()
    old = ["receiving blk_1", "ÿ starts with y-diaeresis", "12:34 looks like a header"]
    await store.append([("s", line) for line in old], "session")
    await store.close("s")
    window = (await drain(store))["s"]
    assert window.lines == old and window.raw_lines == old
    key = store.prefix(store.partition("s")) + "lines:s"
    await store.append([("s", "plain raw-format line")], "session")
    assert await store.redis.lrange(key, 0, -1) == [b"plain raw-format line"]  # no extra byte for raw == content


def test_a_timestamp_rides_with_every_layout_as_sent() -> None:
    from service.windows.line_codec import decode_element

    for timestamp in ("2024-05-01T10:00:00Z", 1714557600.5, 1714557600, "ünï:@\"q\"", ""):
        for raw, content in CASES:
            element = encode_line(raw, content, timestamp)
            assert isinstance(element, bytes) and element.startswith(b"\xff")
            assert decode_element(element) == (raw, content, timestamp), (raw, content, timestamp)
            assert decode_line(element) == (raw, content)
    assert decode_element(encode_line(*CASES[0])) == (*CASES[0], None)  # no timestamp: none, as before
