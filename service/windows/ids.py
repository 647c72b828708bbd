"""Window ids and window keys: each names its kind and its source, so no two kinds of window can collide.

| what | window key (where its lines are buffered) | window id (what a verdict is read by) |
|---|---|---|
| session window | ``session:<source>:<session id>`` | the key, then ``<key>#1``, ``<key>#2``... for later windows |
| fixed window | ``fixed:<source>`` | ``fixed:<source>:<index of its first line>`` |

A source name may not contain ``:`` (so the parts split unambiguously) and no name may contain ``#`` or white
space. Ids written before this scheme (a bare session id, ``<source>:<start>``) parse as ``legacy``: the store
still reads them (service/DESIGN.md, "Window ids").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

DEFAULT_SOURCE = "default"
MAX_NAME_CHARS = 256  # a source or session id; keeps keys short and matches the request schema
SOURCE_PATTERN = r"^[^\s#:]+$"
SESSION_PATTERN = r"^[^\s#]+$"
_SOURCE = re.compile(SOURCE_PATTERN)
_SESSION = re.compile(SESSION_PATTERN)
_SESSION_ID = re.compile(r"session:([^\s#:]+):([^\s#]+?)(?:#(\d+))?")
_FIXED_ID = re.compile(r"fixed:([^\s#:]+):(\d+)")
_KEY = re.compile(r"session:[^\s#:]+:[^\s#]+|fixed:[^\s#:]+")

WindowKind = Literal["session", "fixed"]


class BadWindowName(ValueError):
    """A source or session name that cannot be part of a window key; the message says which character."""


def check_source(source: str) -> str:
    if not _SOURCE.match(source) or len(source) > MAX_NAME_CHARS:
        raise BadWindowName(
            f"source {source[:80]!r} must be 1 to {MAX_NAME_CHARS} characters, without white space, '#' or ':'"
        )
    return source


def check_session(session_id: str) -> str:
    if not _SESSION.match(session_id) or len(session_id) > MAX_NAME_CHARS:
        raise BadWindowName(
            f"session id {session_id[:80]!r} must be 1 to {MAX_NAME_CHARS} characters, without white space or '#'"
        )
    return session_id


def session_prefix(source: str) -> str:
    """``session:<source>:``, what every session key of a source starts with."""
    return f"session:{check_source(source)}:"


def session_key(source: str, session_id: str) -> str:
    return session_prefix(source) + check_session(session_id)


def fixed_key(source: str) -> str:
    return f"fixed:{check_source(source)}"


@dataclass(frozen=True)
class WindowRef:
    """What a window id says: its kind, source, session id (session) and number (session: n; fixed: start)."""

    kind: WindowKind
    source: str
    session_id: str | None
    number: int

    @property
    def key(self) -> str:
        return fixed_key(self.source) if self.kind == "fixed" else session_key(self.source, self.session_id or "")


def is_window_key(name: str) -> bool:
    """Whether ``name`` is a window key of this scheme (not a bare session id or a legacy key)."""
    return _KEY.fullmatch(name) is not None


def parse_window_id(window_id: str) -> WindowRef | None:
    """The parts of a window id of this scheme; None for a legacy id or anything else."""
    m = _SESSION_ID.fullmatch(window_id)
    if m:
        return WindowRef("session", m.group(1), m.group(2), int(m.group(3) or 0))
    m = _FIXED_ID.fullmatch(window_id)
    if m:
        return WindowRef("fixed", m.group(1), None, int(m.group(2)))
    return None
