"""Body decoding (service/intake/body.py): Content-Encoding undone with the size cap applied after it, text
decoded in its charset before it is split into lines; the functions alone, then POST /logs on the live app."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import zstandard

from model.preprocess import preprocess
from service.http_errors import ApiError
from service.intake.body import content_encodings, decode_text, decompress, split_lines
from service.intake.routes import INLINE_LINES, parse_on_loop
from tests.service.live_app import LiveApp, live_app

LINES = [f"081109 2035{i:02d} 148 INFO dfs.DataNode: packet {i} of blk_{i % 3}" for i in range(30)]
TEXT = "\n".join(LINES) + "\n"


def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-15)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize(
    ("coding", "pack"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),  # RFC 9110's deflate: zlib-wrapped
        ("deflate", raw_deflate),  # what some clients send instead
        ("zstd", lambda data: zstandard.ZstdCompressor().compress(data)),
    ],
)
def test_each_coding_round_trips(coding: str, pack: object) -> None:
    data = TEXT.encode()
    assert decompress(pack(data), content_encodings(coding), 10_000) == data  # type: ignore[operator]


def test_stacked_codings_are_undone_last_first_and_gzip_members_all_read() -> None:
    data = TEXT.encode()
    stacked = zstandard.ZstdCompressor().compress(gzip.compress(data))
    assert decompress(stacked, content_encodings("gzip, zstd"), 10_000) == data
    members = gzip.compress(data[:100]) + gzip.compress(data[100:])
    assert decompress(members, ["gzip"], 10_000) == data


@pytest.mark.parametrize("coding", ["gzip", "deflate", "zstd"])
def test_a_bomb_is_refused_without_inflating_it(coding: str) -> None:
    zeros = b"\0" * (64 * 2**20)
    packed = {
        "gzip": gzip.compress(zeros, 1),
        "deflate": zlib.compress(zeros, 1),
        "zstd": zstandard.ZstdCompressor(level=1).compress(zeros),
    }[coding]
    del zeros
    limit = 2**20
    tracemalloc.start()
    try:
        with pytest.raises(ApiError) as refused:
            decompress(packed, [coding], limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (refused.value.status, refused.value.reason) == (413, "body_too_large")
    assert peak < 8 * limit, f"peak {peak} bytes while refusing a 64 MiB bomb with a 1 MiB limit"


def test_unknown_and_broken_codings() -> None:
    with pytest.raises(ApiError) as unknown:
        content_encodings("gzip, br")
    assert (unknown.value.status, unknown.value.reason, unknown.value.field) == (
        415,
        "unsupported_encoding",
        "Content-Encoding",
    )
    with pytest.raises(ApiError) as broken:
        decompress(b"not gzip at all", ["gzip"], 1000)
    assert (broken.value.status, broken.value.reason) == (400, "bad_encoding")
    with pytest.raises(ApiError) as cut:
        decompress(gzip.compress(TEXT.encode())[:-30], ["gzip"], 10_000)
    assert cut.value.status == 400


@pytest.mark.parametrize(
    ("body", "charset"),
    [
        (TEXT.encode("utf-16"), None),  # BOM says it
        (TEXT.encode("utf-16-le"), "utf-16le"),
        (TEXT.encode("utf-16-be"), "UTF-16"),  # no BOM: big-endian, as RFC 2781 says
        (TEXT.encode("utf-32"), None),
        (b"\xef\xbb\xbf" + TEXT.encode(), None),  # UTF-8 BOM dropped
        (TEXT.encode("latin-1"), "iso-8859-1"),
        (TEXT.encode("cp1252"), "windows-1252"),
    ],
)
def test_text_is_decoded_before_it_is_split(body: bytes, charset: str | None) -> None:
    text, replaced = decode_text(body, charset)
    assert (split_lines(text), replaced) == (LINES, False)


def test_split_lines_cuts_on_newlines_only() -> None:
    assert split_lines("a\r\nb\rc\nd\x0ce\u2028f\n") == ["a", "b", "c", "d\x0ce\u2028f"]
    # without a \r the fast path (str.split) cuts the same places, blank lines and a missing last \n included
    assert split_lines("a\n\nd\x0ce\u2028f\n") == ["a", "", "d\x0ce\u2028f"]
    assert split_lines("a\nb") == ["a", "b"]
    assert split_lines("") == []


def hdfs_lines(n: int) -> list[str]:
    return [f"081109 2035{i % 60:02d} 148 INFO dfs.DataNode$DataXceiver: Receiving block blk_{i % 50} src:"
            f" /10.250.19.102:{54000 + i % 999} dest: /10.250.19.102:50010" for i in range(n)]  # fmt: skip


def json_body(lines: list[str]) -> bytes:
    return orjson.dumps({"lines": [{"message": m} for m in lines]})


def test_mid_size_plain_bodies_are_parsed_on_the_loop_and_others_in_a_thread() -> None:
    """A body that cannot hold more than INLINE_LINES lines is parsed on the event loop (about 4 ms for 1,000
    lines, cheaper than a thread hand-off); more lines, compression or protobuf: a worker thread."""
    thousand, many = hdfs_lines(1000), hdfs_lines(INLINE_LINES + 1)
    text = ("\n".join(thousand) + "\n").encode()
    assert len(json_body(thousand)) > 64 * 1024 and len(text) > 64 * 1024  # past the plain byte rule
    assert parse_on_loop(json_body(thousand), [], plain=True)
    assert parse_on_loop(text, [], plain=True)
    assert not parse_on_loop(json_body(many), [], plain=True)
    assert not parse_on_loop(("\n".join(many) + "\n").encode(), [], plain=True)
    assert not parse_on_loop(b"x\n" * 40_000, [], plain=True)  # 80 KiB of tiny lines: the line count decides
    loki = orjson.dumps({"streams": [{"stream": {"job": "a"}, "values": [["1", m] for m in many]}]})
    assert not parse_on_loop(loki, [], plain=True)  # Loki JSON: one '[' per entry
    assert not parse_on_loop(gzip.compress(text), ["gzip"], plain=True)
    assert not parse_on_loop(b"\x00" * (64 * 1024 + 1), [], plain=False)  # protobuf: the byte rule
    assert parse_on_loop(b"\x00" * 1024, [], plain=False)


# --- on the live app ----------------------------------------------------------------------------------------


@pytest.fixture
def app(redis_url: str, tmp_path: Path) -> Iterator[LiveApp]:
    with live_app(redis_url, tmp_path, log_format="hdfs", max_body_bytes=2**20) as running:
        yield running


def post(app: LiveApp, content: bytes, **headers: str) -> httpx.Response:
    return httpx.post(f"{app.url}/logs", content=content, headers=headers)


def test_compressed_and_utf16_bodies_reach_their_windows(app: LiveApp) -> None:
    utf16 = post(
        app, gzip.compress(TEXT.encode("utf-16")), **{"content-type": "text/plain", "content-encoding": "gzip"}
    )
    assert utf16.status_code == 200, utf16.text
    assert (utf16.json()["accepted"], utf16.json()["rejected"], utf16.json()["replaced"]) == (30, [], 0)
    zstd = post(
        app,
        zstandard.ZstdCompressor().compress(TEXT.encode()),
        **{"content-type": "text/plain; charset=utf-8", "content-encoding": "zstd"},
    )
    assert (zstd.status_code, zstd.json()["accepted"]) == (200, 30)
    verdicts = app.verdicts(lines=60)
    assert sorted(v["n_lines"] for v in verdicts.values()) == [20, 20, 20]
    contents = [preprocess(line.split(": ", 1)[1]) for line in LINES]  # the model sees preprocessed content
    assert sorted(m for s in app.scored_messages() for m in s) == sorted(contents * 2)


def test_bodies_parsed_on_the_loop_and_in_a_thread_store_every_line(app: LiveApp) -> None:
    inline, threaded = hdfs_lines(1000), hdfs_lines(INLINE_LINES + 500)
    for body, lines in ((json_body(inline), 1000), (json_body(threaded), INLINE_LINES + 500)):
        answer = post(app, body, **{"content-type": "application/json"})
        assert answer.status_code == 200, answer.text
        assert (answer.json()["accepted"], answer.json()["rejected"]) == (lines, [])
    text = ("\n".join(inline) + "\n").encode()
    answer = post(app, text, **{"content-type": "text/plain"})
    assert (answer.status_code, answer.json()["accepted"]) == (200, 1000)


def test_bad_bodies_get_413_415_400_and_nothing_is_stored(app: LiveApp) -> None:
    bomb = gzip.compress(b"x blk_1\n" * (8 * 2**20), 9)  # 64 MiB of lines in ~70 KB
    refused = post(app, bomb, **{"content-type": "text/plain", "content-encoding": "gzip"})
    assert (refused.status_code, refused.json()["reason"]) == (413, "body_too_large"), refused.text
    unknown = post(app, TEXT.encode(), **{"content-type": "text/plain", "content-encoding": "br"})
    assert (unknown.status_code, unknown.json()["reason"], unknown.json()["field"]) == (
        415,
        "unsupported_encoding",
        "Content-Encoding",
    )
    broken = post(app, b"\x1f\x8b garbage", **{"content-type": "text/plain", "content-encoding": "gzip"})
    assert (broken.status_code, broken.json()["reason"]) == (400, "bad_encoding")
    assert 'logllm_lines_ingested_total{format="text"}' not in app.metrics()
