"""``application/x-ndjson``: one JSON object per line, each with the fields of the JSON shape's lines.

A line that is not JSON, or not a valid line object, is rejected alone with its index (line number from 0,
blank lines counted), like a line that cannot be windowed; the other lines go through.
"""

from __future__ import annotations

from pydantic import ValidationError

from service.http_errors import shorten
from service.intake.batch import LogLine, Rejection
from service.intake.body import split_lines


def _problem(exc: ValidationError) -> tuple[str, str]:
    """(reason, message) of a line's validation error: not JSON at all, or a field that is wrong."""
    error = exc.errors()[0]
    if error["type"] == "json_invalid":
        return "bad_json", f"not a JSON object: {error['msg']}"
    where = ".".join(str(p) for p in error["loc"]) or "line"
    return "invalid_field", f"{where}: {error['msg']} (got {shorten(error.get('input'))})"


def ndjson_lines(text: str, default_source: str | None) -> tuple[list[tuple[int, LogLine]], list[Rejection]]:
    """(index, line) of the valid lines and the rejections of the others."""
    lines: list[tuple[int, LogLine]] = []
    rejected: list[Rejection] = []
    for index, raw in enumerate(split_lines(text)):
        if not raw.strip():
            continue
        try:
            line = LogLine.model_validate_json(raw)
        except ValidationError as exc:
            reason, message = _problem(exc)
            rejected.append(Rejection(index=index, reason=reason, message=message[:200]))
            continue
        if default_source and not line.source:
            line = line.model_copy(update={"source": default_source})
        lines.append((index, line))
    return lines, rejected
