"""Request bodies in: read with a size cap, Content-Encoding undone, text decoded; one place for every route.

``max_body_bytes`` caps the bytes on the wire *and* the bytes after decompression. Decompression is
streamed with an output limit, so a small bomb that would inflate to gigabytes costs at most
``max_body_bytes + 1`` bytes of memory before it is refused with 413.
Text is decoded as a whole before it is split into lines: splitting UTF-16 bytes on b"\\n" cuts characters.
"""

from __future__ import annotations

import codecs
import io
import re
import zlib
from collections.abc import Callable

import zstandard
from fastapi import Request

from service.http_errors import ApiError

CHUNK = 64 * 1024
ENCODINGS = ("gzip", "x-gzip", "deflate", "zstd", "identity")
_BOMS = (  # longest first: the UTF-32 LE BOM starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_NEWLINE = re.compile(r"\r\n|\r|\n")


def too_large(limit: int, what: str = "body") -> ApiError:
    return ApiError(413, "body_too_large", f"{what} exceeds max_body_bytes={limit}")


def media_type(request: Request) -> tuple[str, str | None]:
    """(media type in lower case, charset parameter or None) of the Content-Type header."""
    header = request.headers.get("content-type", "")
    media, _, params = header.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "charset":
            charset = value.strip().strip('"') or None
    return media.strip().lower(), charset


async def read_raw(request: Request, limit: int) -> bytes:
    """The body as sent, refusing more than ``limit`` bytes whether or not Content-Length tells the truth."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "bad_content_length", f"Content-Length {declared[:20]!r} is not a number")
        if int(declared) > limit:
            raise ApiError(413, "body_too_large", f"body of {declared} bytes exceeds max_body_bytes={limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def content_encodings(header: str | None) -> list[str]:
    """The codings in the order they were applied (the header lists them so); 415 names an unknown one."""
    codings = [c.strip().lower() for c in (header or "").split(",") if c.strip()]
    for coding in codings:
        if coding not in ENCODINGS:
            raise ApiError(
                415,
                "unsupported_encoding",
                f"Content-Encoding {coding[:40]!r} is not supported; send {', '.join(ENCODINGS[:-1])} or none",
                field="Content-Encoding",
            )
    return [c for c in codings if c != "identity"]


def _inflate_zlib(data: bytes, limit: int, wbits: int, name: str) -> bytes:
    """zlib/gzip/raw deflate with at most ``limit + 1`` bytes out; concatenated gzip members are all read."""
    out = bytearray()
    while data:
        inflater = zlib.decompressobj(wbits)
        try:
            out += inflater.decompress(data, limit + 1 - len(out))
            while inflater.unconsumed_tail and len(out) <= limit:
                out += inflater.decompress(inflater.unconsumed_tail, limit + 1 - len(out))
        except zlib.error as exc:
            raise ApiError(400, "bad_encoding", f"body is not valid {name}: {exc}", field="Content-Encoding") from None
        if len(out) > limit:
            raise too_large(limit, f"{name}-decoded body")
        if not inflater.eof:
            raise ApiError(400, "bad_encoding", f"{name} body is truncated", field="Content-Encoding")
        data = inflater.unused_data if wbits > 16 else b""
    return bytes(out)


def _deflate(data: bytes, limit: int) -> bytes:
    """HTTP 'deflate' is zlib-wrapped (RFC 9110); some clients send raw deflate, so both are read."""
    wbits = zlib.MAX_WBITS if data[:1] and (data[0] & 0x0F) == 8 and int.from_bytes(data[:2]) % 31 == 0 else -15
    return _inflate_zlib(data, limit, wbits, "deflate")


def _zstd(data: bytes, limit: int) -> bytes:
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
    out = bytearray()
    try:
        while len(out) <= limit:
            chunk = reader.read(min(CHUNK, limit + 1 - len(out)))
            if not chunk:
                break
            out += chunk
    except zstandard.ZstdError as exc:
        raise ApiError(400, "bad_encoding", f"body is not valid zstd: {exc}", field="Content-Encoding") from None
    if len(out) > limit:
        raise too_large(limit, "zstd-decoded body")
    return bytes(out)


_DECODERS: dict[str, Callable[[bytes, int], bytes]] = {
    "gzip": lambda data, limit: _inflate_zlib(data, limit, 16 + zlib.MAX_WBITS, "gzip"),
    "x-gzip": lambda data, limit: _inflate_zlib(data, limit, 16 + zlib.MAX_WBITS, "gzip"),
    "deflate": _deflate,
    "zstd": _zstd,
}


def decompress(data: bytes, codings: list[str], limit: int) -> bytes:
    """Undo the codings, last applied first, each output capped at ``limit`` bytes."""
    for coding in reversed(codings):
        data = _DECODERS[coding](data, limit)
    return data


def decode_body(raw: bytes, codings: list[str], limit: int, text: bool = True) -> bytes:
    """The body with its codings undone (at most ``limit`` bytes); 400 when empty (blank, for ``text``)."""
    body = decompress(raw, codings, limit)
    if not (body.strip() if text else body):
        raise ApiError(400, "empty_body", "the body is empty; send log lines")
    return body


def decode_text(body: bytes, charset: str | None) -> tuple[str, bool]:
    """The body as text and whether bytes invalid in the charset were replaced. A BOM wins over the charset
    parameter (it is what the bytes say); without either, UTF-8."""
    encoding = charset or "utf-8"
    for bom, name in _BOMS:
        if body.startswith(bom):
            encoding = name
            break
    else:
        try:
            encoding = codecs.lookup(encoding).name
        except LookupError:
            raise ApiError(
                415, "unsupported_charset", f"charset {encoding[:40]!r} is unknown", field="Content-Type"
            ) from None
        if encoding in ("utf-16", "utf-32"):  # no BOM: RFC 2781 says big-endian
            encoding += "-be"
    try:
        return body.decode(encoding), False
    except UnicodeDecodeError:
        return body.decode(encoding, errors="replace"), True


def split_lines(text: str) -> list[str]:
    """Lines split on \\n, \\r\\n or \\r only (str.splitlines would also cut on form feeds and U+2028).
    Without a \\r, str.split does the same several times faster (and holds the GIL that much shorter)."""
    lines = _NEWLINE.split(text) if "\r" in text else text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines
