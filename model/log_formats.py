"""Cut the message content (and the label, where the format has one) out of a raw log line.

LogLLM reads the content only; headers (dates, nodes, levels) are dropped. The layouts are the public Loghub
ones: HDFS ``<Date> <Time> <Pid> <Level> <Component>: <Content>``; BGL ``<Label> <Timestamp> <Date> <Node>
<Time> <NodeRepeat> <Type> <Component> <Level> <Content>``; Thunderbird and Liberty ``<Label> <Timestamp>
<Date> <User> <Month> <Day> <Time> <Location> <Component>(\\[<PID>\\])?: <Content>`` (a line without the
component part keeps everything after the 8th field). In BGL, Thunderbird and Liberty the label ``-`` means
normal and anything else names an alert category. Syslog: ``rfc3164`` ``(<PRI>)?<Mmm dd hh:mm:ss> <Host>
(<Tag>(\\[<PID>\\])?: )?<Content>`` (the ``<PRI>`` a relay adds or the ISO timestamp of rsyslog's files are taken
too), ``rfc5424`` ``<PRI>VERSION <Timestamp> <Host> <App> <ProcID> <MsgID> <StructuredData>( <Content>)?``; the
content is the MSG part. Every pattern here is linear-time on any input (anchored, no nested repetition).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

LogFormat = Literal["raw", "hdfs", "bgl", "thunderbird", "liberty", "rfc3164", "rfc5424"]
FORMATS: tuple[str, ...] = ("raw", "hdfs", "bgl", "thunderbird", "liberty", "rfc3164", "rfc5424")

_HDFS = re.compile(r"^\d{6} \d{6} \d+ \w+ [^:]+: (?P<content>.*)$")
_COMPONENT = re.compile(r"^(?P<component>.*?)(?:\[\d+\])?: (?P<content>.*)$")  # Loghub: first ": " ends it
_RFC3164 = re.compile(
    r"^(?:<\d{1,3}>)?(?:[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}|\d{4}-\d{2}-\d{2}T\S+) \S+ "
    r"(?:[^\s:\[\]]+(?:\[[^\s\]]*\])?: )?(?P<content>.*)$"
)
_RFC5424 = re.compile(r"^<\d{1,3}>\d{1,2} \S+ \S+ \S+ \S+ \S+ ")


class LogFormatError(ValueError):
    """A line does not have the layout of its format."""


@dataclass(frozen=True)
class ParsedLine:
    content: str
    label: str | None = None
    timestamp: str | None = None

    @property
    def is_anomalous(self) -> bool:
        return is_anomalous_label(self.label)


def is_anomalous_label(label: str | None) -> bool:
    """Line-labeled logs mark normal lines with ``-``; anything else is an alert category."""
    return label is not None and label != "-"


def _short(line: str) -> str:
    return line if len(line) <= 80 else line[:77] + "..."


def _fields(line: str, count: int, fmt: str) -> list[str]:
    parts = line.split(maxsplit=count)
    if len(parts) < count:
        raise LogFormatError(f"{fmt}: expected at least {count} header fields, got {len(parts)}: {_short(line)!r}")
    return parts


def _hdfs_match(line: str) -> re.Match[str]:
    match = _HDFS.match(line)
    if match is None:
        expected = "<date> <time> <pid> <level> <component>: ..."
        raise LogFormatError(f"hdfs: not '{expected}': {_short(line)!r}")
    return match


def _component_content(parts: list[str]) -> str:
    """Thunderbird/Liberty: the content after ``<Component>(\\[<PID>\\])?: `` of the 9th field on."""
    rest = parts[8] if len(parts) > 8 else ""
    match = _COMPONENT.match(rest)
    return match["content"] if match else rest


def _rfc3164_content(line: str) -> str:
    match = _RFC3164.match(line.rstrip("\r\n"))
    if match is None:
        raise LogFormatError(f"rfc3164: not '<Mmm dd hh:mm:ss> <host> <tag>: ...': {_short(line)!r}")
    return match["content"]


def _structured_data_end(line: str, start: int) -> int:
    """Where RFC 5424's STRUCTURED-DATA that starts at ``start`` ends: ``-`` or ``[id param="v" ...]`` elements,
    values quoted with ``\\`` escapes (a ``]`` inside quotes does not end one); -1 when it is not there. One pass."""
    if line.startswith("-", start):
        return start + 1
    i, n = start, len(line)
    if i >= n or line[i] != "[":
        return -1
    while i < n and line[i] == "[":
        i += 1
        quoted = False
        while i < n:
            char = line[i]
            if quoted and char == "\\":
                i += 2
                continue
            if char == '"':
                quoted = not quoted
            elif char == "]" and not quoted:
                break
            i += 1
        if i >= n:
            return -1
        i += 1
    return i


def _rfc5424_content(line: str) -> str:
    line = line.rstrip("\r\n")
    header = _RFC5424.match(line)
    end = _structured_data_end(line, header.end()) if header is not None else -1
    if end < 0 or (end < len(line) and line[end] != " "):
        expected = "<PRI>1 <time> <host> <app> <procid> <msgid> <structured data> ..."
        raise LogFormatError(f"rfc5424: not '{expected}': {_short(line)!r}")
    return line[end + 1 :].removeprefix("\ufeff")  # MSG may start with a UTF-8 byte order mark


def parse_line(line: str, fmt: str) -> ParsedLine:
    """The content of one line in format ``fmt``; raises LogFormatError naming the format and the line."""
    line = line.rstrip("\r\n")
    if fmt == "raw":
        return ParsedLine(line)
    if fmt == "hdfs":
        return ParsedLine(_hdfs_match(line)["content"], None, line[:13])
    if fmt == "bgl":
        parts = _fields(line, 9, fmt)
        return ParsedLine(parts[9] if len(parts) > 9 else "", parts[0], parts[1])
    if fmt in ("thunderbird", "liberty"):
        parts = _fields(line, 8, fmt)
        return ParsedLine(_component_content(parts), parts[0], parts[1])
    if fmt == "rfc3164":
        return ParsedLine(_rfc3164_content(line))
    if fmt == "rfc5424":
        return ParsedLine(_rfc5424_content(line))
    raise LogFormatError(f"unknown log format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _raw_content(line: str) -> str:
    return line.rstrip("\r\n")


def _hdfs_content(line: str) -> str:
    return _hdfs_match(line.rstrip("\r\n"))["content"]


def _bgl_content(line: str) -> str:
    parts = _fields(line.rstrip("\r\n"), 9, "bgl")
    return parts[9] if len(parts) > 9 else ""


def _component_parser(fmt: str) -> Callable[[str], str]:
    return lambda line: _component_content(_fields(line.rstrip("\r\n"), 8, fmt))


def content_parser(fmt: str) -> Callable[[str], str]:
    """``parse_line(line, fmt).content`` as one function per format, without building a ParsedLine: the
    service's intake calls it for every line it ingests. Same content, same LogFormatError."""
    if fmt == "raw":
        return _raw_content
    if fmt == "hdfs":
        return _hdfs_content
    if fmt == "bgl":
        return _bgl_content
    if fmt in ("thunderbird", "liberty"):
        return _component_parser(fmt)
    if fmt == "rfc3164":
        return _rfc3164_content
    if fmt == "rfc5424":
        return _rfc5424_content
    raise LogFormatError(f"unknown log format {fmt!r}; choose one of {', '.join(FORMATS)}")
