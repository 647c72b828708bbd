"""``--log-format auto``: the format whose header all of a source's first lines have, on the real samples, the
syslog forms and lines of systems no format describes; and the syslog parsers themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.format_detect import DETECTORS, detect_format, lenient_parser
from model.log_formats import LogFormatError, parse_line

REPO = Path(__file__).resolve().parents[2]
RFC3164 = [
    "Dec  5 20:06:23 web1 sshd[1234]: Accepted password for alice from 10.0.0.7 port 52814 ssh2",
    "<13>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
    "2026-12-05T20:06:23.123456+00:00 web1 kernel: [ 12.345678] eth0: link up",
    "Dec 15 01:02:03 web1 last message repeated 3 times",
]
RFC5424 = [
    "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \ufeff'su root' failed for lonvick",
    '<165>1 2003-10-11T22:14:15.003Z host evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="App]x"] An event',
    '<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - [a@1 x="\\"]"][b@2] %% It is time',
    "<165>1 2003-10-11T22:14:15.003Z host app - - -",
]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("BGL/BGL_2k.log", "bgl"),
        ("Thunderbird/Thunderbird_2k.log", "thunderbird"),
        ("HDFS/HDFS_2k.log", "hdfs"),
        ("Apache/Apache_2k.log", "raw"),
        ("Hadoop/Hadoop_2k.log", "raw"),
        ("OpenStack/OpenStack_2k.log", "raw"),
        ("Spark/Spark_2k.log", "raw"),
    ],
)
def test_each_sample_is_detected_from_its_first_lines_and_from_all_of_them(
    shared_data: Path, path: str, expected: str
) -> None:
    lines = (shared_data / path).read_text(encoding="utf-8", errors="replace").splitlines()
    assert detect_format(lines[:20]) == expected
    assert detect_format(lines) == expected  # the header of every line, not only the first ones


def test_liberty_lines_read_as_thunderbird_whose_layout_they_share() -> None:
    lines = (REPO / "tests" / "fixtures" / "liberty" / "Liberty.log").read_text().splitlines()
    assert detect_format(lines) == "thunderbird"
    assert [parse_line(x, "thunderbird").content for x in lines] == [parse_line(x, "liberty").content for x in lines]


def test_syslog_forms_are_detected_and_their_content_is_the_msg_part() -> None:
    assert detect_format(RFC3164) == "rfc3164"
    assert detect_format(RFC5424) == "rfc5424"
    assert [parse_line(x, "rfc3164").content for x in RFC3164] == [
        "Accepted password for alice from 10.0.0.7 port 52814 ssh2",
        "'su root' failed for lonvick on /dev/pts/8",
        "[ 12.345678] eth0: link up",
        "last message repeated 3 times",
    ]
    assert [parse_line(x, "rfc5424").content for x in RFC5424] == [
        "'su root' failed for lonvick",  # the UTF-8 byte order mark before MSG is not content
        "An event",  # a ']' inside a quoted value does not end the structured data
        "%% It is time",  # nor does an escaped quote
        "",
    ]


def test_one_line_of_another_kind_makes_the_source_raw() -> None:
    hdfs = "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_3 terminating"
    assert detect_format([hdfs, hdfs]) == "hdfs"
    assert detect_format([hdfs, "a plain line"]) == "raw"
    assert detect_format([]) == detect_format(["", "  "]) == "raw"
    assert detect_format([RFC3164[0], RFC5424[0]]) == "raw"  # two syslog forms: neither has them all


def test_bad_syslog_lines_name_the_format() -> None:
    with pytest.raises(LogFormatError, match="rfc5424: not"):
        parse_line('<34>1 2003-10-11T22:14:15.003Z host su - ID47 [unclosed x="1"', "rfc5424")
    with pytest.raises(LogFormatError, match="rfc5424: not"):
        parse_line("<34>1 2003-10-11T22:14:15.003Z host su - ID47 -glued", "rfc5424")
    with pytest.raises(LogFormatError, match="rfc3164: not"):
        parse_line("no date here", "rfc3164")


def test_a_detected_format_keeps_a_line_that_does_not_fit_it_whole() -> None:
    parse = lenient_parser("hdfs")
    assert parse("081109 203615 148 INFO dfs.DataNode: Receiving block blk_1") == "Receiving block blk_1"
    assert parse("something else entirely\n") == "something else entirely"


@pytest.mark.parametrize("name", list(DETECTORS))
def test_matchers_finish_on_hostile_lines(name: str) -> None:
    """Every row's pattern is linear: long runs of the characters its repetitions take, with no match at the end,
    are refused, not backtracked over (a catastrophic pattern would not return on these)."""
    hostile = [
        "<1>1 " + "a " * 20_000,
        "- 1117838570 2005.06.03 " + "R" * 50_000,
        "Dec  5 20:06:23 h " + "x" * 50_000 + "[" + "]" * 50_000,
        "081109 203615 148 INFO " + "a b " * 20_000,
        "<1>1 t h a p m [" + '"\\' * 30_000,
    ]
    for line in hostile:
        DETECTORS[name](line)
