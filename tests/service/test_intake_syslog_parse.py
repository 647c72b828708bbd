"""Syslog frames and headers (service/intake/syslog_parse.py): the dialects real senders write, and bad input."""

from __future__ import annotations

import time

import pytest

from service.intake.syslog_parse import FrameReader, decode, parse_message

HDFS = "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_38865049064139660"


def test_rfc5424_as_logger_writes_it_with_escaped_structured_data() -> None:
    line = (
        '<13>1 2026-12-05T20:21:45.000538+00:00 vm hdfs 2750 MID [timeQuality tzKnown="1" isSynced="0"]'
        f'[x@1 a="b\\]c" q="say \\"hi\\""] {HDFS}'
    )
    m = parse_message(line)
    assert (m.kind, m.hostname, m.app_name, m.procid, m.msgid) == ("rfc5424", "vm", "hdfs", "2750", "MID")
    assert m.message == HDFS


def test_rfc5424_nil_fields_bom_and_no_message() -> None:
    m = parse_message(f"<165>1 - - - - - - \ufeff{HDFS}")
    assert (m.kind, m.hostname, m.app_name, m.procid, m.msgid, m.message) == ("rfc5424", None, None, None, None, HDFS)
    assert parse_message("<165>1 2026-01-01T00:00:00Z h a p m -").message == ""


@pytest.mark.parametrize(
    ("line", "host", "app", "procid", "message"),
    [
        (f"<13>Dec  5 20:11:42 vm hdfs[13765]: {HDFS}", "vm", "hdfs", "13765", HDFS),  # logger --rfc3164
        (f"<30>Dec 15 01:02:03 host app: {HDFS}", "host", "app", None, HDFS),
        # rsyslog RSYSLOG_ForwardFormat (omfwd's default on TCP is the traditional one, both occur)
        (f"<13>2026-12-05T20:11:42.123456+00:00 vm hdfs[1]: {HDFS}", "vm", "hdfs", "1", HDFS),
        (f"<13>Dec  5 20:11:42 vm {HDFS}", "vm", None, None, HDFS),  # no tag: the message starts at once
        ("<13>Dec  5 20:11:42 vm tag:  two spaces kept", "vm", "tag", None, " two spaces kept"),
    ],
)
def test_rfc3164_and_rsyslog_forward_formats(
    line: str, host: str, app: str | None, procid: str | None, message: str
) -> None:
    m = parse_message(line)
    assert (m.kind, m.hostname, m.app_name, m.procid, m.message) == ("rfc3164", host, app, procid, message)


@pytest.mark.parametrize(
    "line",
    [HDFS, "<999>1 x", "<13>1 2026 only three", "<13>garbage", "<13>1 - - - - - [unterminated sd", "", "<>", "<13"],
)
def test_a_line_without_a_header_is_kept_whole(line: str) -> None:
    m = parse_message(line)
    assert (m.kind, m.message) == ("raw", line)


def test_header_parsing_is_linear_on_hostile_input() -> None:
    """Quadratic scans would take seconds on these; a linear parser takes milliseconds."""
    hostile = [
        "<13>1 - - - - - " + "[" * 200_000,
        "<13>1 - - - - - [a " + 'b="\\' * 100_000,
        "<13>Dec  5 20:11:42 " + "a" * 200_000,
        "<13>" + ":" * 200_000,
    ]
    started = time.perf_counter()
    for line in hostile:
        assert parse_message(line).message
    assert time.perf_counter() - started < 0.5


def test_octet_counting_across_reads_and_newline_frames() -> None:
    frames = FrameReader(max_bytes=1024)
    one, two = b"<13>1 - h a - - - first", b"<13>1 - h a - - - second\nwith a newline"
    stream = f"{len(one)} ".encode() + one + f"{len(two)} ".encode() + two
    got = [m for i in range(0, len(stream), 7) for m in frames.feed(stream[i : i + 7]).messages]
    assert got == [one, two]
    plain = FrameReader(max_bytes=1024)
    assert plain.feed(b"<13>a\n123 not a length\nrest").messages == [b"<13>a", b"123 not a length"]
    assert plain.close().messages == [b"rest"]


def test_a_frame_over_the_limit_is_refused_alone() -> None:
    frames = FrameReader(max_bytes=16)
    big = b"x" * 40
    got = frames.feed(b"5 hello" + f"{len(big)} ".encode() + big[:10])
    assert got.messages == [b"hello"] and got.refused == [("too_large", "octet-counted frame of 40 bytes")]
    assert frames.feed(big[10:] + b"3 abc").messages == [b"abc"]
    lines = FrameReader(max_bytes=16)
    got = lines.feed(b"<1>short\n" + b"y" * 30)
    assert got.messages == [b"<1>short"] and got.refused[0][0] == "too_large"
    assert lines.feed(b"yyy\n<1>next\n").messages == [b"<1>next"]


def test_decode_replaces_bad_bytes_and_strips_the_trailer() -> None:
    assert decode(b"caf\xc3\xa9 \xff\r\n\x00") == "caf\u00e9 \ufffd"


def test_the_header_time_goes_with_the_message() -> None:
    """RFC 5424's timestamp as sent (NIL: none); rsyslog's RFC 3339 stamp in the RFC 3164 layout as sent."""
    assert parse_message(f"<13>1 2026-12-05T20:21:45.000538+00:00 vm hdfs - - - {HDFS}").timestamp == (
        "2026-12-05T20:21:45.000538+00:00"
    )
    assert parse_message(f"<13>1 - vm hdfs - - - {HDFS}").timestamp is None
    assert parse_message(f"<13>2026-12-05T20:11:42.123456+00:00 vm hdfs[1]: {HDFS}").timestamp == (
        "2026-12-05T20:11:42.123456+00:00"
    )
    assert parse_message(HDFS).timestamp is None  # no header, no time


@pytest.mark.parametrize(
    ("stamp", "now", "expected"),
    [
        ("Dec  5 20:11:42", (2026, 12), "2026-12-05T20:11:42"),
        ("Dec 15 01:02:03", (2027, 1), "2026-12-15T01:02:03"),  # read in January: last December
        ("Jan  2 00:00:01", (2026, 12), "2027-01-02T00:00:01"),  # a sender's clock past New Year
        ("Jul 31 12:00:00", (2026, 1), "2026-07-31T12:00:00"),  # six months ahead: this year
        ("Aug  1 12:00:00", (2026, 1), "2025-08-01T12:00:00"),  # seven: last year
        ("Feb 29 10:00:00", (2028, 3), "2028-02-29T10:00:00"),
        ("Feb 29 10:00:00", (2026, 3), "Feb 29 10:00:00"),  # no such day this year: kept as sent
        ("Dec  5 25:00:00", (2026, 12), "Dec  5 25:00:00"),
    ],
)
def test_an_rfc3164_time_gets_the_year_nearest_the_clock_and_no_zone(
    stamp: str, now: tuple[int, int], expected: str
) -> None:
    assert parse_message(f"<13>{stamp} vm hdfs[1]: {HDFS}", now).timestamp == expected
