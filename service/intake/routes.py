"""POST /logs: JSON or text/plain lines in, windows out; the store call is the only Redis round trip."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from service.http_errors import ApiError
from service.intake.batch import LogLine, LogsRequest, LogsResponse, SourceName, build_batch, json_lines, text_lines
from service.state import State, require_token

router = APIRouter(dependencies=[Depends(require_token)])


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema with its ``$defs`` substituted, so it can sit in the OpenAPI document as it is."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)  # type: ignore[no-any-return]


_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _inline_refs(LogsRequest.model_json_schema())},
            "text/plain": {"schema": {"type": "string"}, "example": "line one\nline two\n"},
        },
    }
}


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing more than ``limit`` bytes whether or not Content-Length tells the truth."""
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
            raise ApiError(413, "body_too_large", f"body exceeds max_body_bytes={limit}")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        raise ApiError(400, "empty_body", 'the body is empty; send JSON {"lines": [...]} or text lines')
    return body


def _media_type(request: Request) -> tuple[str, str | None]:
    header = request.headers.get("content-type", "")
    media, _, params = header.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "charset":
            charset = value.strip().strip('"') or None
    return media.strip().lower(), charset


@router.post(
    "/logs",
    response_model=LogsResponse,
    summary="Ingest log lines",
    description='JSON `{"lines": [...]}` or `text/plain` (one line per line). Lines that cannot be windowed '
    "are rejected one by one (`rejected`), the rest are stored; `closed`: the windows it closed.",
    openapi_extra=_BODY_DOC,
    responses={
        413: {"description": "body over max_body_bytes"},
        415: {"description": "not JSON or text/plain"},
        422: {"description": "a field has the wrong type"},
        429: {"description": "queue or session cap reached; see Retry-After"},
        503: {"description": "Redis down or out of memory"},
    },
)
async def post_logs(
    request: Request,
    state: State,
    source: Annotated[SourceName | None, Query(description="source of lines that name none (no ':')")] = None,
) -> LogsResponse:
    settings = state.settings
    media, charset = _media_type(request)
    if media not in ("application/json", "text/plain"):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type {media or '(none)'!r}; send application/json or text/plain",
            field="Content-Type",
        )
    body = await read_body(request, settings.max_body_bytes)
    if media == "application/json":
        lines = json_lines(body, source)
        batch = build_batch(lines, settings)
    else:
        raw, replaced = text_lines(body, charset)
        if not raw:
            raise ApiError(400, "empty_body", "the body has no non-blank line")
        batch = build_batch([(i, LogLine(message=line, source=source)) for i, line in raw], settings, replaced)
    closed: list[str] = []
    if batch.groups:
        result = await state.store.append_groups(batch.groups)
        closed = list(result.closed)
        batch.refuse(result.refused)
    metrics = state.metrics
    metrics.lines_ingested.inc(batch.accepted)
    for reason, count in batch.rejected_by_reason().items():
        metrics.lines_rejected.labels(reason=reason).inc(count)
    if closed:
        metrics.windows_closed.labels(reason="size").inc(len(closed))
    return LogsResponse(
        accepted=batch.accepted,
        rejected=batch.rejected,
        truncated=batch.truncated,
        replaced=batch.replaced,
        closed=closed,
    )
