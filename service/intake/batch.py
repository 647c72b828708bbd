"""From a POST /logs body to (window key, stored line) items; pure, so every rule is testable without
HTTP.

A request is rejected as a whole only when its shape is wrong (415, 413, 400, 422); a line that is
well-formed JSON but cannot be windowed (unparsable for the log format, no session id) is rejected alone, with
its index and reason, and the other lines go through.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from model.log_formats import LogFormatError, parse_line
from model.windows import session_ids
from service.intake.body import decode_text, split_lines
from service.settings import ServiceSettings
from service.windows.ids import (
    DEFAULT_SOURCE,
    MAX_NAME_CHARS,
    SESSION_PATTERN,
    SOURCE_PATTERN,
    BadWindowName,
    fixed_key,
    session_key,
)
from service.windows.line_codec import encode_line
from service.windows.windowing import Windowing

WindowName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_CHARS, pattern=SESSION_PATTERN)]
SourceName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_CHARS, pattern=SOURCE_PATTERN)]


class LogLine(BaseModel):
    """One log line; fields a shipper adds beyond these are ignored."""

    model_config = ConfigDict(extra="ignore")

    message: str = Field(description="the raw log line, parsed with the configured log format")
    session_id: WindowName | None = Field(default=None, description="session window key; else taken from the message")
    timestamp: str | float | None = Field(default=None, description="informational; windows close on arrival time")
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
        " | too_many_sessions | queue_full (a cap reached while the request was being stored)"
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


def text_lines(body: bytes, charset: str | None) -> tuple[list[tuple[int, str]], int]:
    """(index, line) of the non-blank lines, and how many lines had undecodable bytes replaced; the whole body
    is decoded first (body.decode_text), then split."""
    text, replaced_any = decode_text(body, charset)
    lines = [(index, line) for index, line in enumerate(split_lines(text)) if line.strip()]
    replaced = sum("\ufffd" in line for _, line in lines) if replaced_any else 0
    return lines, replaced


def json_lines(body: bytes, default_source: str | None) -> list[tuple[int, LogLine]]:
    """Validate a JSON body; a schema error raises pydantic's ValidationError (-> 422 naming the field)."""
    request = LogsRequest.model_validate_json(body)
    return [
        (i, line if line.source or not default_source else line.model_copy(update={"source": default_source}))
        for i, line in enumerate(request.lines)
    ]


def build_batch(lines: list[tuple[int, LogLine]], settings: ServiceSettings, replaced: int = 0) -> Batch:
    """Truncate, parse and key every line; a line naming several sessions joins each of them."""
    batch = Batch(replaced=replaced)
    for index, line in lines:
        message = line.message.rstrip("\r\n")
        if not message.strip():
            batch.rejected.append(Rejection(index=index, reason="empty", message="blank message"))
            continue
        if len(message) > settings.max_line_chars:
            message = message[: settings.max_line_chars]
            batch.truncated += 1
        windowing = settings.windowing(line.source)
        try:
            content = parse_line(message, windowing.log_format).content
        except LogFormatError as exc:
            batch.rejected.append(Rejection(index=index, reason="bad_format", message=str(exc)[:200]))
            continue
        try:
            keys = window_keys(line, content, windowing, settings.max_sessions_per_line)
        except Unwindowable as exc:
            batch.rejected.append(Rejection(index=index, reason=exc.reason, message=str(exc)[:200]))
            continue
        element = encode_line(message, content)  # content, and the raw line when it differs (for records)
        batch.groups.setdefault(windowing, []).extend((key, element) for key in keys)
        batch.origins.setdefault(windowing, []).extend(index for _ in keys)
        batch.accepted += 1
    return batch


class Unwindowable(ValueError):
    """A line no window can take; ``reason`` is what the response and the rejected-lines metric report."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def window_keys(line: LogLine, content: str, windowing: Windowing, max_sessions: int) -> list[str]:
    """The keys (service/windows/ids.py) of the windows a line joins.

    Session ids found by the pattern pass the same check as a ``session_id`` field. A line naming more than
    ``max_sessions`` ids is rejected rather than cut to the first ones: joining only some of its sessions would
    leave the others' windows silently incomplete, while a rejection tells the sender.
    """
    source = line.source or DEFAULT_SOURCE
    if windowing.mode == "fixed":
        return [fixed_key(source)]
    sessions = [line.session_id] if line.session_id else session_ids(content, windowing.session_pattern)
    if not sessions:
        raise Unwindowable("no_session_id", f"no session_id field and no match of {windowing.session_pattern!r}")
    if len(sessions) > max_sessions:
        raise Unwindowable(
            "too_many_session_ids",
            f"the line names {len(sessions)} session ids (max_sessions_per_line={max_sessions})",
        )
    try:
        return [session_key(source, sid) for sid in sessions]
    except BadWindowName as exc:
        raise Unwindowable("bad_session_id", f"{exc} (found by {windowing.session_pattern!r})") from None
