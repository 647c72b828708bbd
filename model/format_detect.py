"""``--log-format auto``: the known format whose header every one of a source's first lines has, else ``raw``.

A table, format name -> matcher, tried in order (the strictest headers first); a new format is one more row.
The matchers check the header only, more strictly than the parsers (which cut by field count), so that a line
of another system is not taken for one: a BGL line has ten fields too, but not a Thunderbird date. Thunderbird
and Liberty share one layout and one content rule, so their lines are reported as ``thunderbird``. All patterns
are anchored with no nested repetition: linear-time on any input.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from model.log_formats import LogFormatError, content_parser

Matcher = Callable[[str], bool]
DETECT_LINES = 20  # the first lines of a source that decide its format


def _header(pattern: str) -> Matcher:
    return re.compile(pattern).match  # type: ignore[return-value]


def _parses(fmt: str) -> Matcher:
    parse = content_parser(fmt)

    def matches(line: str) -> bool:
        try:
            parse(line)
        except LogFormatError:
            return False
        return True

    return matches


_LABEL_EPOCH_DATE = r"^\S+ \d{9,11} \d{4}\.\d{2}\.\d{2} \S+ "
DETECTORS: dict[str, Matcher] = {
    "hdfs": _parses("hdfs"),  # 081109 203615 148 INFO dfs.DataNode$PacketResponder: ...
    "bgl": _header(_LABEL_EPOCH_DATE + r"\d{4}-\d{2}-\d{2}-\d{2}\.\d{2}\.\d{2}\.\d+ \S+ \S+ \S+ \S+"),
    "thunderbird": _header(_LABEL_EPOCH_DATE + r"[A-Z][a-z]{2} +\d{1,2} \d{2}:\d{2}:\d{2} \S+"),  # and Liberty
    "rfc5424": _parses("rfc5424"),  # <165>1 2003-10-11T22:14:15.003Z host app - ID47 - ...
    "rfc3164": _header(
        r"^(?:<\d{1,3}>)?(?:[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}|\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\S*) \S+ "
    ),
}


def detect_format(lines: Iterable[str]) -> str:
    """The first format of ``DETECTORS`` whose header all the (non-blank) ``lines`` have; ``raw`` when none
    does or there is no line."""
    sample = [line.rstrip("\r\n") for line in lines if line.strip()]
    if not sample:
        return "raw"
    for name, matches in DETECTORS.items():
        if all(matches(line) for line in sample):
            return name
    return "raw"


def lenient_parser(fmt: str) -> Callable[[str], str]:
    """The content parser of a detected format that keeps a line which does not fit it whole (as ``raw`` would):
    a detection is a guess from a few lines, and a guess must not cost a line."""
    parse = content_parser(fmt)
    if fmt == "raw":
        return parse

    def content(line: str) -> str:
        try:
            return parse(line)
        except LogFormatError:
            return line.rstrip("\r\n")

    return content
