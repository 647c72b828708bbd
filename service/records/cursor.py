"""Signed page cursors: a client can hand back only a position this service gave it, for the same query.

A cursor is ``<payload>.<signature>``, both base64url: the payload is the query's fingerprint and the
position (time, id) of the last record the page covered; the signature is an HMAC-SHA256 over it with the
service's cursor secret. An edited cursor, one from another query or one from another deployment fails the
check and the route answers 400 instead of silently paging through something else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

VERSION = 1


class BadCursor(ValueError):
    """The cursor was not made by this service for this query."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def fingerprint(query: dict[str, object]) -> str:
    """What a cursor is bound to: the filters, not the page size."""
    return hashlib.sha256(json.dumps(query, sort_keys=True).encode()).hexdigest()[:16]


def _sign(secret: bytes, payload: str) -> str:
    return _b64(hmac.new(secret, payload.encode("ascii"), hashlib.sha256).digest()[:18])


def encode_cursor(secret: bytes, query_fp: str, position: tuple[float, str]) -> str:
    payload = _b64(json.dumps([VERSION, query_fp, repr(position[0]), position[1]]).encode())
    return f"{payload}.{_sign(secret, payload)}"


def decode_cursor(secret: bytes, query_fp: str, cursor: str) -> tuple[float, str]:
    """The position in a cursor; BadCursor if it is malformed, tampered with or made for another query."""
    payload, _, signature = cursor.partition(".")
    if not payload or not signature or not hmac.compare_digest(signature, _sign(secret, payload)):
        raise BadCursor("the cursor was not issued by this service (edited, truncated or from elsewhere)")
    try:
        version, fp, time_text, window_id = json.loads(_unb64(payload))
        position = (float(time_text), str(window_id))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise BadCursor(f"the cursor cannot be read: {exc}") from None
    if version != VERSION or fp != query_fp:
        raise BadCursor("the cursor belongs to another query: send the same filters as for the first page")
    return position
