"""Syslog messages: RFC 6587 frames out of a TCP byte stream, and RFC 5424 / RFC 3164 headers off each message.

Every step is linear in its input and uses no regular expression: a frame is found with one ``find``, a header
with a bounded number of ``find``/``split`` calls, and RFC 5424 structured data with one scan that honours its
escapes. A message whose header does not parse is kept whole as its own message (``kind`` ``raw``): the sender's
line is never lost for a header we did not understand.

No PyPI parser was fast and complete enough: ``syslog-rfc5424-parser`` builds a lark parse tree per message
(tens of microseconds) and reads no RFC 3164; the others handle one dialect each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from service.windows.windowing import SyslogField

_MONTHS = frozenset(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"))
MAX_LENGTH_DIGITS = 10  # an octet count longer than this is no octet count (RFC 6587 MSG-LEN)
_BOM = "\ufeff"


@dataclass(slots=True)
class SyslogMessage:
    """The fields that can pick a source or session, and the message as the application wrote it."""

    message: str
    kind: Literal["rfc5424", "rfc3164", "raw"]
    hostname: str | None = None
    app_name: str | None = None
    procid: str | None = None
    msgid: str | None = None

    def field(self, name: SyslogField) -> str | None:
        value: str | None = getattr(self, name)
        return value


def _nil(value: str) -> str | None:
    return None if value == "-" or not value else value


def _priority_end(line: str) -> int:
    """The index after ``<PRI>`` (1 to 3 digits, 0-191), or -1 when the line does not start with one."""
    if not line.startswith("<"):
        return -1
    close = line.find(">", 1, 5)
    if close < 2 or not line[1:close].isdigit() or int(line[1:close]) > 191:
        return -1
    return close + 1


def _structured_data_end(text: str) -> int:
    """The index after RFC 5424 STRUCTURED-DATA at the start of ``text`` (``-`` or ``[...]...``), or -1.

    One pass: inside a quoted PARAM-VALUE, ``\\`` escapes the next character (``"``, ``\\`` and ``]`` per
    section 6.3.3), so a ``]`` in a value does not end the element.
    """
    if text.startswith("-"):
        return 1
    i, n = 0, len(text)
    while i < n and text[i] == "[":
        i += 1
        quoted = False
        while i < n:
            c = text[i]
            if quoted:
                if c == "\\":
                    i += 1
                elif c == '"':
                    quoted = False
            elif c == '"':
                quoted = True
            elif c == "]":
                break
            i += 1
        if i >= n:
            return -1
        i += 1  # past "]"
    return i if i > 0 else -1


def _rfc5424(line: str, start: int) -> SyslogMessage | None:
    """``VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD [SP MSG]`` after the PRI."""
    parts = line[start:].split(" ", 6)
    if len(parts) < 7 or parts[0] != "1" or not all(parts[1:6]):
        return None
    _, _, hostname, app_name, procid, msgid, rest = parts
    end = _structured_data_end(rest)
    if end < 0 or (end < len(rest) and rest[end] != " "):
        return None
    message = rest[end + 1 :]
    if message.startswith(_BOM):
        message = message[1:]
    return SyslogMessage(message, "rfc5424", _nil(hostname), _nil(app_name), _nil(procid), _nil(msgid))


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


def _rfc3164(line: str, start: int) -> SyslogMessage | None:
    """``TIMESTAMP SP HOSTNAME SP TAG[PID]: MSG`` after the PRI; logger and rsyslog's forward formats."""
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
    return SyslogMessage(rest[end:], "rfc3164", hostname, tag or None, procid)


def parse_message(line: str) -> SyslogMessage:
    """The message of one syslog line (frame already removed, trailing newline stripped); kind ``raw`` when
    no header parses, its message the whole line."""
    start = _priority_end(line)
    if start > 0:
        parsed = _rfc5424(line, start) if line[start : start + 2] == "1 " else None
        if parsed is None:
            parsed = _rfc3164(line, start)
        if parsed is not None:
            return parsed
    return SyslogMessage(line, "raw")


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

    def close(self) -> Frames:
        """At the end of the stream: a last line without its newline is still a message."""
        rest, self.buffer = self.buffer, b""
        whole = rest.strip() and not (self.skip or self.skip_line)
        return Frames([rest] if whole else [], [])


def decode(message: bytes) -> str:
    """A message's text: UTF-8 (RFC 5424's MSG-UTF8, and what every shipper here sends), invalid bytes replaced;
    trailing newline, carriage return and NUL stripped."""
    return message.rstrip(b"\r\n\x00").decode("utf-8", "replace")
