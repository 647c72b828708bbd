"""One buffered line as one Redis list element: the content the model reads and, when it differs, the line as shipped.

The element is the content alone when the raw line equals it (a ``raw``-format source pays not one byte more),
and otherwise bytes that start with 0xFF. No UTF-8 text starts with that byte, so a marked element can never be
mistaken for content, whatever the line holds, and elements written before raw lines were kept (content only)
still read as they are. Layouts (offsets and lengths count code points of the UTF-8 text after the header):

- ``<content>``: raw line == content, or an element written before this codec;
- ``\\xff<o>:<raw>``: content = raw[o:], the header-strip case of every shipped log format (o = header length);
- ``\\xff<o>,<n>:<raw>``: content = raw[o:o+n], content somewhere inside the raw line;
- ``\\xff!<n>:<content><raw>``: content is not part of the raw line, so both texts are kept.

A line shipped with a ``timestamp`` (JSON, NDJSON, Loki, OTLP, a syslog header) keeps it: the header then ends with
``@<m>`` and the text after ``:`` starts with the timestamp as JSON text (m code points: ``"2024-..."`` or
``1700000000.5``, as sent), the rest as above: ``\xff<o>@<m>:<ts><raw>``, and ``\xff0@<m>:<ts><raw>`` when
raw == content. A line without one is encoded as before, byte for byte.

The header holds only digits, ``,``, ``!`` and ``@``: its first ``:`` ends it. Lua scripts copy elements as opaque
strings (sliding windows, records), so only Python encodes and decodes; append.lua receives them packed with
MessagePack, which carries them byte for byte.
"""

from __future__ import annotations

from typing import Any

import orjson

MARK = b"\xff"
Timestamp = str | int | float  # a line's ``timestamp`` field, kept as sent


def encode_line(raw: str, content: str, timestamp: Timestamp | None = None) -> str | bytes:
    """The list element for one line; ``str`` (sent as is) when nothing but the content needs keeping."""
    if timestamp is not None:
        return _with_timestamp(raw, content, orjson.dumps(timestamp).decode())
    if raw == content:
        return content
    if raw.endswith(content):
        return MARK + f"{len(raw) - len(content)}:{raw}".encode()  # the hot path: one encode, one concatenation
    at = raw.find(content)
    if at >= 0:
        return b"\xff%d,%d:" % (at, len(content)) + raw.encode()
    return b"\xff!%d:" % len(content) + (content + raw).encode()


def _with_timestamp(raw: str, content: str, ts: str) -> bytes:
    if raw.endswith(content):
        return MARK + f"{len(raw) - len(content)}@{len(ts)}:{ts}{raw}".encode()
    at = raw.find(content)
    if at >= 0:
        return MARK + f"{at},{len(content)}@{len(ts)}:{ts}{raw}".encode()
    return MARK + f"!{len(content)}@{len(ts)}:{ts}{content}{raw}".encode()


def decode_line(element: bytes | str) -> tuple[str, str]:
    """(raw line, content) of one element; an unmarked element is content that is also its raw line."""
    raw, content, _ = decode_element(element)
    return raw, content


def decode_element(element: bytes | str) -> tuple[str, str, Any]:
    """(raw line, content, timestamp as sent or None) of one element."""
    if isinstance(element, str):
        return element, element, None
    if not element.startswith(MARK):
        text = element.decode("utf-8", errors="replace")
        return text, text, None
    head, _, body = element.partition(b":")
    text = body.decode("utf-8", errors="replace")
    spec = head[1:]
    timestamp = None
    try:
        if b"@" in spec:
            spec, _, size = spec.partition(b"@")
            m = int(size)
            timestamp, text = orjson.loads(text[:m]), text[m:]
        if spec.startswith(b"!"):
            n = int(spec[1:])
            return text[n:], text[:n], timestamp
        if b"," in spec:
            start, n = (int(x) for x in spec.split(b","))
            return text, text[start : start + n], timestamp
        return text, text[int(spec) :], timestamp
    except (ValueError, orjson.JSONDecodeError):  # not written by encode_line (a hand-made element): show it whole
        whole = element.decode("utf-8", errors="replace")
        return whole, whole, None
