"""From a POST /logs body to (window key, message content) items; pure, so every rule is testable without
HTTP.

A request is rejected as a whole only when its shape is wrong (415, 413, 400, 422); a line that is
well-formed JSON but cannot be windowed (unparsable for the log format, no session id) is rejected alone, with
its index and reason, and the other lines go through.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from model.log_formats import LogFormatError, parse_line
from model.windows import session_ids
from service.intake.body import decode_text, split_lines
from service.settings import ServiceSettings
from service.windows.windowing import Windowing

WindowName = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\s#]+$")]


class LogLine(BaseModel):
    """One log line; fields a shipper adds beyond these are ignored."""

    model_config = ConfigDict(extra="ignore")

    message: str = Field(description="the raw log line, parsed with the configured log format")
    session_id: WindowName | None = Field(default=None, description="session window key; else taken from the message")
    timestamp: str | float | None = Field(default=None, description="informational; windows close on arrival time")
    source: WindowName | None = Field(
        default=None,
        description="where the line comes from: picks its windowing (--sources) and keys fixed windows;"
        " else ?source= or 'default'",
    )


class LogsRequest(BaseModel):
    lines: list[LogLine] = Field(min_length=1, description="the lines, in the order they happened")


class Rejection(BaseModel):
    index: int = Field(description="position of the line in the request (text: line number from 0)")
    reason: str = Field(description="bad_format | no_session_id | empty")
    message: str = Field(default="", description="what was wrong, cut short")


class LogsResponse(BaseModel):
    accepted: int = Field(description="lines stored in a window")
    rejected: list[Rejection] = Field(default_factory=list)
    truncated: int = Field(default=0, description="lines cut to max_line_chars")
    replaced: int = Field(default=0, description="text lines with bytes that were not valid in the charset")
    closed: list[str] = Field(default_factory=list, description="ids of windows this request closed")


@dataclass
class Batch:
    """What one request adds: (window key, content) items per windowing, plus what the response reports."""

    groups: dict[Windowing, list[tuple[str, str]]] = field(default_factory=dict)
    accepted: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    truncated: int = 0
    replaced: int = 0

    def rejected_by_reason(self) -> Counter[str]:
        return Counter(r.reason for r in self.rejected)


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
        keys = window_keys(line, content, windowing)
        if not keys:
            batch.rejected.append(
                Rejection(
                    index=index,
                    reason="no_session_id",
                    message=f"no session_id field and no match of {windowing.session_pattern!r}",
                )
            )
            continue
        batch.groups.setdefault(windowing, []).extend((key, content) for key in keys)
        batch.accepted += 1
    return batch


def window_keys(line: LogLine, content: str, windowing: Windowing) -> list[str]:
    if windowing.mode == "fixed":
        return [line.source or "default"]
    if line.session_id:
        return [line.session_id]
    return list(dict.fromkeys(session_ids(content, windowing.session_pattern)))
