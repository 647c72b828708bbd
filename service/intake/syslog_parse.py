"""Syslog messages: RFC 6587 frames out of a TCP byte stream, and RFC 5424 / RFC 3164 headers off each message.

Every step is linear in its input and uses no regular expression: a frame is found with one ``find``, a header
with a bounded number of ``find``/``split`` calls, and RFC 5424 structured data with one scan that honours its
escapes. A message whose header does not parse is kept whole as its own message (``kind`` ``raw``): the sender's
line is never lost for a header we did not understand. The header's timestamp goes with the line, as a JSON
line's ``timestamp`` does: RFC 5424's (RFC 3339) as sent, RFC 3164's with the year it lacks (``bsd_timestamp``).

No PyPI parser was fast and complete enough: ``syslog-rfc5424-parser`` builds a lark parse tree per message
(tens of microseconds) and reads no RFC 3164; the others handle one dialect each.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Literal

from service.windows.windowing import SyslogField

_MONTHS = {
    m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)
}
MAX_LENGTH_DIGITS = 10  # an octet count longer than this is no octet count (RFC 6587 MSG-LEN)
_BOM = "\ufeff"

Header = tuple[str, str, str | None, str | None, str | None, str | None, str | None]
"""(kind, message, hostname, app_name, procid, msgid, timestamp) of one line: a plain tuple, the listener's
per-line result (no object per line for the garbage collector to track, no attribute look-ups)."""
FIELDS: dict[SyslogField, int] = {"hostname": 2, "app_name": 3, "procid": 4, "msgid": 5}
"""Where each header field that can pick a source or session sits in a ``Header``."""
Today = tuple[int, int]  # (year, month) of the service's clock, UTC: the year of an RFC 3164 timestamp


@dataclass(slots=True)
class SyslogMessage:
    """The fields that can pick a source or session, the header's timestamp, and the message as the application
    wrote it (``parse_message``; the listener reads ``Header`` tuples)."""

    message: str
    kind: Literal["rfc5424", "rfc3164", "raw"]
    hostname: str | None = None
    app_name: str | None = None
    procid: str | None = None
    msgid: str | None = None
    timestamp: str | None = None

    def field(self, name: SyslogField) -> str | None:
        value: str | None = getattr(self, name)
        return value


def today(now: float | None = None) -> Today:
    """(year, month) of ``now`` (default: the clock), UTC."""
    stamp = time.gmtime(now)
    return stamp.tm_year, stamp.tm_mon


def _structured_data_end(text: str) -> int:
    """The index after RFC 5424 STRUCTURED-DATA at the start of ``text`` (``-`` or ``[...]...``), or -1.

    Inside a quoted PARAM-VALUE, ``\\`` escapes the next character (``"``, ``\\`` and ``]`` per section 6.3.3),
    so a ``]`` in a value does not end the element: a quote ends a value when an even number of backslashes
    precedes it. Linear: every ``find`` starts where the previous one stopped, and the backslashes before a quote
    are counted back only to where that search started.
    """
    if text.startswith("-"):
        return 1
    i, n = 0, len(text)
    close = -1
    while i < n and text[i] == "[":
        while True:
            if close < i:
                close = text.find("]", i)
                if close < 0:
                    return -1
            quote = text.find('"', i, close)
            if quote < 0:
                i = close + 1
                break
            j = quote + 1  # the value: up to the first quote after an even run of backslashes
            while True:
                end = text.find('"', j)
                if end < 0:
                    return -1
                k = end - 1
                while k >= j and text[k] == "\\":
                    k -= 1
                if (end - 1 - k) % 2 == 0:
                    break
                j = end + 1
            i = end + 1
    return i if i > 0 else -1


def _rfc5424(line: str) -> Header | None:
    """``<PRI>1 SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD [SP MSG]``, ``<PRI>1 `` already seen.

    One ``split`` cuts the header; only structured data other than ``-`` needs a scan (``_structured_data_end``).
    """
    parts = line.split(" ", 7)
    if len(parts) < 7 or "" in parts[1:6]:
        return None
    _, stamp, hostname, app_name, procid, msgid, sd = parts[:7]
    if sd == "-":
        message = parts[7] if len(parts) == 8 else ""
    else:
        rest = line[len(parts[0]) + len(stamp) + len(hostname) + len(app_name) + len(procid) + len(msgid) + 6 :]
        end = _structured_data_end(rest)
        if end < 0 or (end < len(rest) and rest[end] != " "):
            return None
        message = rest[end + 1 :]
    if message[:1] == _BOM:
        message = message[1:]
    return (
        "rfc5424",
        message,
        None if hostname == "-" else hostname,
        None if app_name == "-" else app_name,
        None if procid == "-" else procid,
        None if msgid == "-" else msgid,
        None if stamp == "-" else stamp,
    )


@lru_cache(maxsize=4096)
def bsd_timestamp(stamp: str, now: Today) -> str:
    """An RFC 3164 ``Mmm dd hh:mm:ss`` as ISO 8601 ``YYYY-MM-DDThh:mm:ss``, without a zone.

    RFC 3164 carries no year and no zone. The year is the one that puts the month at most six months from the
    service's clock's (``now``: a January service reads a December stamp as last year's, a December one reads
    January as next year's). The zone is the
    sender's local time, which the line does not say, so none is written (not UTC: that would be a guess shown
    as a fact). A stamp that is no date in that year (``Feb 29``, ``Dec 45``) is kept as sent.
    """
    month = _MONTHS[stamp[:3]]
    year = now[0] - (month - now[1] > 6) + (now[1] - month > 6)
    day, clock = stamp[4:6].lstrip(), stamp[7:15]
    hms = clock.split(":")
    if not (day.isdigit() and len(hms) == 3 and all(len(x) == 2 and x.isdigit() for x in hms)):
        return stamp
    try:
        datetime(year, month, int(day), int(hms[0]), int(hms[1]), int(hms[2]))
    except ValueError:
        return stamp
    return f"{year:04d}-{month:02d}-{int(day):02d}T{clock}"


def _timestamp_end(text: str) -> int:
    """The index after an RFC 3164 ``Mmm dd hh:mm:ss`` or an RFC 3339 stamp (rsyslog's forward formats), or -1."""
    if text[:3] in _MONTHS and len(text) >= 15 and text[3] == " " and text[6] == " " and text[9] == ":":
        return 15
    if text[:4].isdigit() and text[4:5] == "-":
        space = text.find(" ", 0, 40)
        return space if space > 0 and "T" in text[:space] else -1
    return -1


def _tag_end(text: str) -> tuple[str, str | None, int]:
    """(app name, procid, index of the message) from ``TAG[PID]: msg`` or ``TAG: msg``; ('', None, 0) when the
    text has no tag (the message starts at once)."""
    colon = text.find(":", 0, 130)
    space = text.find(" ", 0, 130)
    if colon <= 0 or (0 <= space < colon):
        return "", None, 0
    tag = text[:colon]
    procid = None
    bracket = tag.find("[")
    if bracket > 0 and tag.endswith("]"):
        tag, procid = tag[:bracket], tag[bracket + 1 : -1] or None
    end = colon + 1
    if text[end : end + 1] == " ":
        end += 1
    return tag, procid, end


def _rfc3164(line: str, start: int, now: Today) -> Header | None:
    """``TIMESTAMP SP HOSTNAME SP TAG[PID]: MSG`` after the PRI; logger and rsyslog's forward formats. A BSD
    timestamp gets a year (``bsd_timestamp``); an RFC 3339 one is kept as sent."""
    text = line[start:]
    stamp = _timestamp_end(text)
    if stamp < 0 or text[stamp : stamp + 1] != " ":
        return None
    rest = text[stamp + 1 :]
    space = rest.find(" ")
    if space <= 0:
        return None
    hostname, rest = rest[:space], rest[space + 1 :]
    tag, procid, end = _tag_end(rest)
    sent = text[:stamp]
    timestamp = bsd_timestamp(sent, now) if stamp == 15 else sent
    return "rfc3164", rest[end:], hostname, tag or None, procid, None, timestamp


def header(line: str, now: Today) -> Header:
    """The header fields and message of one syslog line (frame already removed, trailing newline stripped);
    kind ``raw`` when no header parses, its message the whole line. ``now``: ``today()``, once per batch.

    ``<PRI>`` is 1 to 3 digits, 0 to 191 (compared as text: three digits sort as their numbers do)."""
    if line[:1] == "<":
        close = line.find(">", 1, 5)
        if close >= 2:
            pri = line[1:close]
            if pri.isdigit() and (close < 4 or pri <= "191"):
                parsed = _rfc5424(line) if line.startswith("1 ", close + 1) else None
                if parsed is None:
                    parsed = _rfc3164(line, close + 1, now)
                if parsed is not None:
                    return parsed
    return "raw", line, None, None, None, None, None


def parse_message(line: str, now: Today | None = None) -> SyslogMessage:
    """``header`` as a ``SyslogMessage``."""
    kind, message, hostname, app_name, procid, msgid, timestamp = header(line, now or today())
    return SyslogMessage(message, kind, hostname, app_name, procid, msgid, timestamp)  # type: ignore[arg-type]


@dataclass
class Frames:
    """What one read of a TCP stream yields: complete messages, the frames refused (too large or malformed),
    and the bytes kept for the next read."""

    messages: list[bytes]
    refused: list[tuple[str, str]]  # (reason, what was wrong)


class FrameReader:
    """RFC 6587 framing of one connection: octet counting (``LEN SP MSG``) or newline-terminated messages.

    The framing is decided per frame, as rsyslog and syslog-ng do: a frame that starts with a non-zero digit
    and has ``digits SP`` is octet-counted, anything else runs to the next newline. A connection whose first
    frame was newline-terminated stays so (a plain log line ``123 text`` is then not read as a length).

    A message longer than ``max_bytes`` is refused alone (``too_large``): its bytes are skipped, counted or up
    to the newline, and the connection goes on. ``refused`` names it; nothing else of the stream is lost.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.buffer = b""
        self.skip = 0  # bytes still to drop of an octet-counted frame refused as too large
        self.skip_line = False  # dropping the rest of a newline frame refused as too large
        self.newline_only: bool | None = None

    def feed(self, data: bytes) -> Frames:
        out = Frames([], [])
        buf = self.buffer + data if self.buffer else data
        pos, n = 0, len(buf)
        while pos < n:
            if self.skip:
                step = min(self.skip, n - pos)
                self.skip -= step
                pos += step
                continue
            if self.skip_line:
                newline = buf.find(b"\n", pos)
                if newline < 0:
                    pos = n
                    break
                self.skip_line = False
                pos = newline + 1
                continue
            first = buf[pos]
            if first in b"\r\n\x00 ":
                pos += 1  # blank separators between frames (a trailer after an octet-counted frame)
                continue
            if self.newline_only is None:
                self.newline_only = not (49 <= first <= 57)
            if not self.newline_only and 49 <= first <= 57:
                run = self._octet_run(buf, pos, n, out.messages)
                if run > pos:
                    pos = run
                    continue
                space = buf.find(b" ", pos, pos + MAX_LENGTH_DIGITS + 1)
                if space < 0 and n - pos <= MAX_LENGTH_DIGITS and buf[pos:n].isdigit():
                    break  # the length is not complete yet
                if space > 0 and buf[pos:space].isdigit():
                    length = int(buf[pos:space])
                    body = space + 1
                    if length > self.max_bytes:
                        out.refused.append(("too_large", f"octet-counted frame of {length} bytes"))
                        self.skip = length
                        pos = body
                        continue
                    if n - body < length:
                        break  # wait for the rest of the frame
                    out.messages.append(buf[body : body + length])
                    pos = body + length
                    continue
            newline = buf.find(b"\n", pos, pos + self.max_bytes + 1)
            if newline < 0:
                if n - pos > self.max_bytes:
                    out.refused.append(("too_large", f"line longer than {self.max_bytes} bytes"))
                    self.skip_line = True
                    pos = n
                break
            out.messages.append(buf[pos:newline])
            pos = newline + 1
        self.buffer = buf[pos:]
        return out

    def _octet_run(self, buf: bytes, pos: int, n: int, messages: list[bytes]) -> int:
        """The hot path: complete octet-counted frames within the limit, one after another, from ``pos``; where
        the run stopped (anything else is left to ``feed``'s general case)."""
        find, limit = buf.find, self.max_bytes
        while pos < n and 49 <= buf[pos] <= 57:
            space = find(b" ", pos, pos + MAX_LENGTH_DIGITS + 1)
            if space < 0:
                break
            digits = buf[pos:space]
            if not digits.isdigit():
                break
            length = int(digits)
            end = space + 1 + length
            if end > n or length > limit:
                break
            messages.append(buf[space + 1 : end])
            pos = end
        return pos

    def close(self) -> Frames:
        """At the end of the stream: a last line without its newline is still a message."""
        rest, self.buffer = self.buffer, b""
        whole = rest.strip() and not (self.skip or self.skip_line)
        return Frames([rest] if whole else [], [])


def decode(message: bytes) -> str:
    """A message's text: UTF-8 (RFC 5424's MSG-UTF8, and what every shipper here sends), invalid bytes replaced;
    trailing newline, carriage return and NUL stripped."""
    return message.rstrip(b"\r\n\x00").decode("utf-8", "replace")
