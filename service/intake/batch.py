"""From a POST /logs body to (window key, stored line) items; pure, so every rule is testable without
HTTP.

A request is rejected as a whole only when its shape is wrong (415, 413, 400, 422); a line that is
well-formed JSON but cannot be windowed (unparsable for the log format, no session id) is rejected alone, with
its index and reason, and the other lines go through.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from model.format_detect import DETECT_LINES, lenient_parser
from model.log_formats import LogFormatError, content_parser
from model.windows import session_finder
from service.intake.body import decode_text, split_lines
from service.intake.message import MessageRule, Metadata
from service.settings import ServiceSettings
from service.windows.ids import (
    DEFAULT_SOURCE,
    MAX_NAME_CHARS,
    SESSION_PATTERN,
    SOURCE_PATTERN,
    BadWindowName,
    check_session,
    fixed_key,
    session_prefix,
)
from service.windows.line_codec import Timestamp, encode_line
from service.windows.windowing import Windowing

WindowName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_CHARS, pattern=SESSION_PATTERN)]
SourceName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_CHARS, pattern=SOURCE_PATTERN)]


class LogLine(BaseModel):
    """One log line; fields a shipper adds beyond these are ignored."""

    model_config = ConfigDict(extra="ignore")

    message: str = Field(description="the raw log line, parsed with the configured log format")
    session_id: WindowName | None = Field(default=None, description="session window key; else taken from the message")
    timestamp: str | int | float | None = Field(
        default=None,
        description="kept as sent with the line (records, exports); windows close on arrival time, not on this",
    )
    source: SourceName | None = Field(
        default=None,
        description="where the line comes from (no ':'): picks its windowing (--sources) and is part of every"
        " window id; else ?source= or 'default'",
    )


class LogsRequest(BaseModel):
    lines: list[LogLine] = Field(min_length=1, description="the lines, in the order they happened")


class Rejection(BaseModel):
    index: int = Field(description="position of the line in the request (text: line number from 0)")
    reason: str = Field(
        description="bad_format | no_session_id | bad_session_id | too_many_session_ids | empty"
        " | too_many_sessions | queue_full (a cap reached while the request was being stored) | too_many_sources"
        " (a new source past max_sources)"
    )
    message: str = Field(default="", description="what was wrong, cut short")


class LogsResponse(BaseModel):
    accepted: int = Field(description="lines stored in a window")
    rejected: list[Rejection] = Field(default_factory=list)
    truncated: int = Field(default=0, description="lines cut to max_line_chars")
    replaced: int = Field(default=0, description="text lines with bytes that were not valid in the charset")
    closed: list[str] = Field(default_factory=list, description="ids of windows this request closed")


@dataclass
class Batch:
    """What one request adds: (window key, stored line) items per windowing (the element of
    service/windows/line_codec.py: content, and the raw line when it differs), plus what the response reports."""

    groups: dict[Windowing, list[tuple[str, str | bytes]]] = field(default_factory=dict)
    origins: dict[Windowing, list[int]] = field(default_factory=dict)  # the line index of each group item
    accepted: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    truncated: int = 0
    replaced: int = 0
    sources: dict[str, None] = field(default_factory=dict)  # its lines' valid sources, in order (intake/sources.py)
    samples: dict[str, list[str]] = field(default_factory=dict)  # auto sources with no format yet: first lines

    def rejected_by_reason(self) -> Counter[str]:
        return Counter(r.reason for r in self.rejected)

    def refuse(self, refused: Sequence[tuple[Windowing, int, str]]) -> None:
        """Report the lines of items the store refused (a cap reached in a race) as rejected, not accepted."""
        reasons: dict[int, str] = {}
        refused_items: Counter[int] = Counter()
        for w, item, reason in refused:
            line = self.origins[w][item]
            reasons[line] = reason
            refused_items[line] += 1
        items_of = Counter(line for indices in self.origins.values() for line in indices)
        for index, reason in sorted(reasons.items()):
            kept = "nothing of this line was kept"
            if refused_items[index] < items_of[index]:
                kept = f"the line joined {items_of[index] - refused_items[index]} of its {items_of[index]} sessions"
            message = f"a cap was reached while this request was stored ({kept}); retry it"
            self.rejected.append(Rejection(index=index, reason=reason, message=message))
        self.accepted -= len(reasons)


LineFields = tuple[int, str, str | None, str | None, Timestamp | None]
"""(index, message, session_id, source, timestamp) of one line: what build_batch reads. A plain tuple of strings
and numbers, which the garbage collector stops tracking after one pass: a 10 MiB body holds ~80,000 of them at once, and
tracked objects (models, named tuples) made every full collection of the heap a stall of the event loop."""


def line_fields(lines: Iterable[tuple[int, LogLine]]) -> list[LineFields]:
    """The fields of validated ``LogLine`` models (NDJSON, Loki, OTLP), for build_batch."""
    return [(index, line.message, line.session_id, line.source, line.timestamp) for index, line in lines]


def text_lines(body: bytes, charset: str | None) -> tuple[list[tuple[int, str]], int]:
    """(index, line) of the non-blank lines, and how many lines had undecodable bytes replaced; the whole body
    is decoded first (body.decode_text), then split."""
    text, replaced_any = decode_text(body, charset)
    lines = [(index, line) for index, line in enumerate(split_lines(text)) if line and not line.isspace()]
    replaced = sum("\ufffd" in line for _, line in lines) if replaced_any else 0
    return lines, replaced


_SESSION_NAME = re.compile(SESSION_PATTERN.strip("^$"))
_SOURCE_NAME = re.compile(SOURCE_PATTERN.strip("^$"))


def _plain_name(value: Any, pattern: re.Pattern[str]) -> bool:
    """A name the request model would accept too: a string of the right length that fullmatches its pattern."""
    return type(value) is str and 0 < len(value) <= MAX_NAME_CHARS and pattern.fullmatch(value) is not None


def plain_lines(body: bytes, default_source: str | None) -> list[LineFields] | None:
    """The lines of a JSON body whose every line is plainly valid, or None to let the model decide.

    Plainly valid: ``message`` a string; ``session_id``/``source`` absent, null or a name that fullmatches its
    pattern (Python's \\s covers the model's, so nothing accepted here is refused there); ``timestamp`` absent,
    null, a string or a number (not a bool). Anything else, or JSON orjson will not read, goes to the model.
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    raw = document.get("lines") if type(document) is dict else None
    if type(raw) is not list or not raw:
        return None
    lines: list[LineFields] = []
    for index, item in enumerate(raw):
        if type(item) is not dict:
            return None
        message, session_id, source = item.get("message"), item.get("session_id"), item.get("source")
        if type(message) is not str:
            return None
        if session_id is not None and not _plain_name(session_id, _SESSION_NAME):
            return None
        if source is not None and not _plain_name(source, _SOURCE_NAME):
            return None
        timestamp = item.get("timestamp")
        if timestamp is not None and type(timestamp) not in (str, float, int):
            return None
        lines.append((index, message, session_id, source or default_source, timestamp))
    return lines


def json_lines(body: bytes, default_source: str | None) -> list[LineFields]:
    """Validate a JSON body; a schema error raises pydantic's ValidationError (-> 422 naming the field).

    Bodies whose every line is plainly valid (json_fast.plain_lines) skip the pydantic model; any other body is
    validated by the model, so what is accepted and every error message stay the model's.
    """
    plain = plain_lines(body, default_source)
    if plain is not None:
        return plain
    request = LogsRequest.model_validate_json(body)
    return [
        (i, line.message, line.session_id, line.source or default_source, line.timestamp)
        for i, line in enumerate(request.lines)
    ]


def build_batch(
    lines: Iterable[LineFields],
    settings: ServiceSettings,
    replaced: int = 0,
    formats: Mapping[str, str] | None = None,
    metadata: Mapping[int, Metadata] | None = None,
) -> Batch:
    """Truncate, parse and key every line; a line naming several sessions joins each of them.

    ``formats``: the decided format of each ``auto`` source (service/intake/formats.py). An auto source not in it
    is read as raw here and its first lines are kept in ``Batch.samples``: the route decides its format from them
    and builds the batch again with the decision, before anything is stored.
    ``metadata``: the (key, value) pairs a protocol carried beside a line (Loki structured metadata, OTLP
    attributes), by line index; its source's ``MessageRule`` decides what of them the model reads.
    """
    batch = Batch(replaced=replaced)
    max_chars = settings.max_line_chars
    routes: dict[str | None, SourceRoute] = {}
    formats = formats or {}
    for index, message, session_id, source, timestamp in lines:
        message = message.rstrip("\r\n")
        if not message or message.isspace():
            batch.rejected.append(Rejection(index=index, reason="empty", message="blank message"))
            continue
        if len(message) > max_chars:
            message = message[:max_chars]
            batch.truncated += 1
        route = routes.get(source)
        if route is None:
            route = routes[source] = SourceRoute(settings, source, batch, formats)
        raw = message
        if route.rule is not None or metadata:
            message, raw = route.message(message, metadata.get(index) if metadata else None)
            if not message or message.isspace():
                batch.rejected.append(Rejection(index=index, reason="empty", message="blank message field"))
                continue
        if route.sample is not None and len(route.sample) < DETECT_LINES:
            route.sample.append(message)
        try:
            content = route.content(message)
        except LogFormatError as exc:
            batch.rejected.append(Rejection(index=index, reason="bad_format", message=str(exc)[:200]))
            continue
        try:
            keys = route.keys(session_id, content)
        except Unwindowable as exc:
            batch.rejected.append(Rejection(index=index, reason=exc.reason, message=str(exc)[:200]))
            continue
        route.add(index, keys, raw, content, timestamp)
        batch.accepted += 1
    return batch


class Unwindowable(ValueError):
    """A line no window can take; ``reason`` is what the response and the rejected-lines metric report."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


MAX_CHECKED_SESSIONS = 100_000
_CHECKED_SESSIONS: set[str] = set()
"""Session ids that passed ids.check_session lately: most lines name a session seen a moment ago, and a set
lookup costs a tenth of the check. Cleared when full; safe to share between the parse threads (one set
operation at a time under the GIL, and a miss only means checking again)."""


class SourceRoute:
    """Where the lines of one source go in one batch: its windowing, content parser, key prefix and group.

    Everything that depends on the source alone is worked out once per batch, not once per line.
    """

    def __init__(
        self, settings: ServiceSettings, source: str | None, batch: Batch, formats: Mapping[str, str] | None = None
    ) -> None:
        self.windowing = windowing = settings.windowing(source)
        self.sample: list[str] | None = None  # an auto source's first lines, while it has no format
        if windowing.log_format == "auto":
            name = source or DEFAULT_SOURCE
            decided = (formats or {}).get(name)
            if decided is None:
                self.sample = batch.samples.setdefault(name, [])
            self.content = lenient_parser(decided or "raw")
        else:
            self.content = content_parser(windowing.log_format)
        self.max_sessions = settings.max_sessions_per_line
        json_fields, keys = settings.json_message_fields(source), settings.metadata_keys(source)
        # None when lines go to the model as they are (no JSON field, no metadata key): the hot path's one check
        self.rule = MessageRule(json_fields, keys) if json_fields or keys else None
        self._plain = MessageRule((), frozenset())
        self.find = session_finder(windowing.session_pattern)
        self.items = batch.groups.setdefault(windowing, [])
        self.origins = batch.origins.setdefault(windowing, [])
        name = source or DEFAULT_SOURCE
        self.fixed: str | None = None
        self.prefix = ""
        self.bad_source: BadWindowName | None = None  # raised for every line, as session_key/fixed_key would
        try:
            if windowing.mode == "fixed":
                self.fixed = fixed_key(name)
            else:
                self.prefix = session_prefix(name)
            batch.sources[name] = None
        except BadWindowName as exc:
            self.bad_source = exc

    def keys(self, session_id: str | None, content: str) -> list[str]:
        """The keys (service/windows/ids.py) of the windows a line joins.

        Session ids found by the pattern pass the same check as a ``session_id`` field. A line naming more than
        ``max_sessions`` ids is rejected rather than cut to the first ones: joining only some of its sessions
        would leave the others' windows silently incomplete, while a rejection tells the sender.
        """
        if self.fixed is not None:
            return [self.fixed]
        if self.windowing.mode == "fixed":
            raise self.bad_source or BadWindowName("no fixed key")
        sessions = [session_id] if session_id else self.find(content)
        if len(sessions) == 1 and sessions[0] in _CHECKED_SESSIONS and self.bad_source is None:
            return [self.prefix + sessions[0]]  # the common line: one id, already checked (same answer)
        if not sessions:
            raise Unwindowable(
                "no_session_id", f"no session_id field and no match of {self.windowing.session_pattern!r}"
            )
        if len(sessions) > self.max_sessions:
            raise Unwindowable(
                "too_many_session_ids",
                f"the line names {len(sessions)} session ids (max_sessions_per_line={self.max_sessions})",
            )
        try:
            if self.bad_source is not None:
                raise self.bad_source
            keys = [self.prefix + check_session(sid) for sid in sessions]
        except BadWindowName as exc:
            raise Unwindowable("bad_session_id", f"{exc} (found by {self.windowing.session_pattern!r})") from None
        if len(_CHECKED_SESSIONS) >= MAX_CHECKED_SESSIONS:
            _CHECKED_SESSIONS.clear()
        _CHECKED_SESSIONS.update(sessions)
        return keys

    def message(self, line: str, metadata: Metadata | None) -> tuple[str, str]:
        """(message for the model, line as shipped) of a line under this source's MessageRule."""
        return (self.rule or self._plain).apply(line, metadata)

    def add(self, index: int, keys: list[str], raw: str, content: str, timestamp: Timestamp | None = None) -> None:
        """The line's items: one (window key, stored element) per window it joins."""
        element = encode_line(raw, content, timestamp)  # content, the raw line when it differs, the timestamp sent
        if len(keys) == 1:
            self.items.append((keys[0], element))
            self.origins.append(index)
        else:
            self.items.extend((key, element) for key in keys)
            self.origins.extend(index for _ in keys)
