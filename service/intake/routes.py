"""The intake routes: ``POST /logs`` (JSON, NDJSON, text), ``POST /loki/api/v1/push``, ``POST /v1/logs`` (OTLP).

Each route only reads its body and picks a parser; after that every format takes one path: ``build_batch``
(truncation, log format, window keys), ``store_batch`` (the store call with its caps -> 429/503, and the line
counters labelled by format). Parsing a big or compressed body runs in a worker thread so the event loop keeps
serving other requests meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request, Response

from service.http_errors import ApiError
from service.intake import idempotency, loki, otlp
from service.intake.batch import (
    Batch,
    LogLine,
    LogsRequest,
    LogsResponse,
    Rejection,
    SourceName,
    build_batch,
    json_lines,
    line_fields,
    text_lines,
)
from service.intake.body import content_encodings, decode_body, decode_text, media_type, read_raw
from service.intake.dedup import EntryDedup
from service.intake.formats import propose
from service.intake.ndjson import ndjson_lines
from service.settings import ServiceSettings
from service.state import ServiceState, State, require_token
from service.windows.store import PreparedAppend, StoreUnavailable

router = APIRouter(dependencies=[Depends(require_token)])
logger = logging.getLogger(__name__)
OFFLOAD_BYTES = 64 * 1024  # bodies past this (or compressed ones) are parsed off the event loop, except:
INLINE_BYTES = 1024 * 1024  # plain text or JSON up to this size
INLINE_LINES = 2_000  # that cannot hold more lines than this (2,000 HDFS lines: about 8 ms on the 2-core machine)
T = TypeVar("T")


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
            "application/x-ndjson": {"schema": {"type": "string"}, "example": '{"message": "line one"}\n'},
            "text/plain": {"schema": {"type": "string"}, "example": "line one\nline two\n"},
        },
    }
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "malformed body (names what failed), bad Content-Encoding data or Idempotency-Key"},
    413: {"description": "body over max_body_bytes, before or after decompression"},
    415: {"description": "unsupported Content-Type, charset or Content-Encoding"},
    429: {"description": "queue or session cap reached, or an identical request is being stored; see Retry-After"},
    503: {"description": "Redis down or out of memory; retry the same body: no line is stored twice"},
}


async def _read(request: Request, settings: ServiceSettings) -> tuple[bytes, list[str]]:
    """The raw body and its codings; an unknown coding is refused before the body is read."""
    codings = content_encodings(request.headers.get("content-encoding"))
    return await read_raw(request, settings.max_body_bytes), codings


def parse_on_loop(raw: bytes, codings: list[str], plain: bool) -> bool:
    """Whether a body is parsed on the event loop: small ones, and plain (uncompressed text or JSON) ones that
    cannot hold more than ``INLINE_LINES`` lines, whatever their size up to ``INLINE_BYTES``.

    Parsing a mid-size body (1,000 lines, about 4 ms) inline blocks the loop less than the stall budget (50 ms),
    while handing it to a thread and back costs the request more than that parse (ingest 1.10x / 1.12x for JSON /
    text bodies of 1,000 lines, bench/README.md). A body's line count is bounded from above by its newlines, ``{``
    and ``[`` (one of them opens every line of text, NDJSON, a /logs JSON array, Loki JSON values and OTLP JSON
    records), counted in C. Compressed and protobuf bodies do not show their lines, so they keep the byte rule.
    """
    if codings:
        return False
    if len(raw) <= OFFLOAD_BYTES:
        return True
    if not plain or len(raw) > INLINE_BYTES:
        return False
    return max(raw.count(b"\n"), raw.count(b"{"), raw.count(b"[")) <= INLINE_LINES


async def _off_loop(raw: bytes, codings: list[str], parse: Callable[[], T], plain: bool = True) -> T:
    if parse_on_loop(raw, codings, plain):
        return parse()
    return await asyncio.to_thread(parse)


async def _decided(
    state: ServiceState, raw: bytes, codings: list[str], parse: Callable[[], T], plain: bool = True
) -> T:
    """``_off_loop(parse)``; when the body brought lines of ``auto`` sources with no format yet, their formats are
    decided from those lines (service/intake/formats.py, shared through Redis) and the body is parsed again with
    the decisions, before anything is stored: every line is read with its source's format."""
    parsed = await _off_loop(raw, codings, parse, plain)
    batch = parsed[0] if isinstance(parsed, tuple) else parsed
    if isinstance(batch, Batch) and batch.samples and state.formats is not None:
        await state.formats.settle({source: propose(lines) for source, lines in batch.samples.items()})
        parsed = await _off_loop(raw, codings, parse, plain)
    return parsed


def _known_formats(state: ServiceState) -> dict[str, str] | None:
    return dict(state.formats.known()) if state.formats is not None else None


def _prepared(state: ServiceState, batch: Batch) -> tuple[Batch, PreparedAppend]:
    """The batch with its store call prepared (split by partition, serialized): the per-line part of storing
    it, done inside ``parse`` so that a big body does it in the worker thread as well."""
    return batch, state.store.prepare(batch.groups)


def _model_batch(
    state: ServiceState,
    lines: list[tuple[int, LogLine]],
    rejected: list[Rejection],
    metadata: dict[int, list[tuple[str, str]]] | None = None,
) -> tuple[Batch, PreparedAppend]:
    """build_batch of lines a format validated as ``LogLine`` models, with that format's own rejections."""
    batch = build_batch(line_fields(lines), state.settings, formats=_known_formats(state), metadata=metadata)
    return _prepared(state, _merge(batch, rejected))


async def _store_once(
    state: ServiceState,
    batch: Batch,
    prepared: PreparedAppend,
    entries: loki.LokiLines | otlp.OtlpLines,
    fmt: str,
    request: Request,
    raw: bytes,
) -> Batch:
    """store_batch of a Loki or OTLP batch without the entries stored before (service/intake/dedup.py): those
    are counted in ``logllm_lines_deduplicated_total`` and answered as stored; the others are remembered once
    stored."""
    window = state.settings.entry_dedup_window_s
    dedup = EntryDedup(state.store, window) if window > 0 else None
    repeats = await dedup.repeated(entries.digests) if dedup is not None else set()
    if repeats:
        kept = [(i, line) for i, line in entries.lines if i not in repeats]
        batch, prepared = await asyncio.to_thread(_model_batch, state, kept, entries.rejected, entries.metadata)
    await store_batch(state, batch, prepared, fmt, request, raw)
    if repeats:
        state.metrics.lines_deduplicated.labels(format=fmt).inc(len(repeats))
    if dedup is not None:
        refused = {r.index for r in batch.rejected} | repeats
        try:
            await dedup.remember([(i, d) for i, d in entries.digests if i not in refused])
        except StoreUnavailable as exc:  # stored already: a 503 now would only make the shipper send it again
            logger.warning("stored entries not remembered for deduplication: %s", exc)
    return batch


def _merge(batch: Batch, rejected: list[Rejection]) -> Batch:
    """Rejections found before build_batch (undecodable entries) joined with its own, in index order."""
    if rejected:
        batch.rejected = sorted([*rejected, *batch.rejected], key=lambda r: r.index)
    return batch


async def store_batch(
    state: ServiceState, batch: Batch, prepared: PreparedAppend, fmt: str, request: Request | None = None,
    raw: bytes = b"",
) -> list[str]:
    """The one path to the store for every format: caps (429), Redis failures (503), counters by format.

    With the request and its body as sent, a request of several store calls (or one sent with an
    Idempotency-Key) is stored idempotently: its retry after a 503 stores no line twice (intake/idempotency.py).
    """
    closed: list[str] = []
    if batch.groups:  # lines of a new source past max_sources are rejected first
        prepared = await state.source_registry().admit(batch, prepared)
    if batch.groups:
        key, keep = None, False
        if request is not None and (len(prepared.calls) > 1 or idempotency.HEADER in request.headers):
            key, keep = idempotency.request_key(request, raw)
        result = await state.store.append_prepared(prepared, key, keep)
        closed = list(result.closed)
        batch.refuse(result.refused)
    metrics = state.metrics
    metrics.lines_ingested.labels(format=fmt).inc(batch.accepted)
    for reason, count in batch.rejected_by_reason().items():
        metrics.lines_rejected.labels(reason=reason, format=fmt).inc(count)
    if closed:
        metrics.windows_closed.labels(reason="size").inc(len(closed))
    return closed


def _logs_batch(
    body: bytes,
    media: str,
    charset: str | None,
    source: str | None,
    settings: ServiceSettings,
    formats: dict[str, str] | None = None,
) -> Batch:
    if media == "application/json":
        return build_batch(json_lines(body, source), settings, formats=formats)
    if media == "application/x-ndjson":
        text, _ = decode_text(body, charset)
        lines, rejected = ndjson_lines(text, source)
        if not lines and not rejected:
            raise ApiError(400, "empty_body", "the body has no non-blank line")
        return _merge(build_batch(line_fields(lines), settings, formats=formats), rejected)
    raw, replaced = text_lines(body, charset)
    if not raw:
        raise ApiError(400, "empty_body", "the body has no non-blank line")
    return build_batch([(i, line, None, source, None) for i, line in raw], settings, replaced, formats)


LOGS_MEDIA = {"application/json": "json", "application/x-ndjson": "ndjson", "text/plain": "text"}


@router.post(
    "/logs",
    response_model=LogsResponse,
    summary="Ingest log lines",
    description='JSON `{"lines": [...]}`, NDJSON (`application/x-ndjson`, one line object per line) or '
    "`text/plain` (one log line per line); `Content-Encoding` gzip, deflate or zstd. Lines that cannot be "
    "windowed are rejected one by one (`rejected`), the rest are stored; `closed`: the windows it closed.",
    openapi_extra=_BODY_DOC,
    responses={**_ERRORS, 422: {"description": "a field has the wrong type"}},
)
async def post_logs(
    request: Request,
    state: State,
    source: Annotated[SourceName | None, Query(description="source of lines that name none (no ':')")] = None,
) -> LogsResponse:
    settings = state.settings
    media, charset = media_type(request)
    if media not in LOGS_MEDIA:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type {media or '(none)'!r}; send application/json, application/x-ndjson or text/plain",
            field="Content-Type",
        )
    if media != "application/json" and charset:
        decode_text(b"", charset)  # an unknown charset is 415 before the body is read
    raw, codings = await _read(request, settings)

    def parse() -> tuple[Batch, PreparedAppend]:
        body = decode_body(raw, codings, settings.max_body_bytes)
        return _prepared(state, _logs_batch(body, media, charset, source, settings, _known_formats(state)))

    batch, prepared = await _decided(state, raw, codings, parse)
    closed = await store_batch(state, batch, prepared, LOGS_MEDIA[media], request, raw)
    return LogsResponse(
        accepted=batch.accepted,
        rejected=batch.rejected,
        truncated=batch.truncated,
        replaced=batch.replaced,
        closed=closed,
    )


_PROTOBUF = ("application/x-protobuf", "application/protobuf")


def _protobuf_or_json(request: Request, protobuf: str) -> str:
    """The media type of a protocol body (protobuf or JSON); anything else is 415 before the body is read."""
    media, _ = media_type(request)
    if media != "application/json" and media not in _PROTOBUF:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type {media or '(none)'!r}; send {protobuf} or application/json",
            field="Content-Type",
        )
    return media


@router.post(
    "/loki/api/v1/push",
    status_code=204,
    summary="Loki push API",
    description="Loki's push body: protobuf `PushRequest` in a snappy block (`application/x-protobuf`, Loki's "
    "default) or JSON `{streams: [{stream: {labels}, values: [[ns, line, {metadata}?]]}]}`. 204 when every entry "
    "was stored; 400 naming the rejected entries (the others are stored), as Loki answers partial rejections.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
                "application/json": {"schema": _inline_refs(loki.LokiJsonPush.model_json_schema())},
            },
        }
    },
    responses={**_ERRORS, 204: {"description": "every entry stored"}},
)
async def loki_push(request: Request, state: State) -> Response:
    settings = state.settings
    media = _protobuf_or_json(request, "application/x-protobuf (snappy)")
    raw, codings = await _read(request, settings)
    fmt = "loki_json" if media == "application/json" else "loki_protobuf"

    def parse() -> tuple[Batch, PreparedAppend, loki.LokiLines]:
        body = decode_body(raw, codings, settings.max_body_bytes, text=fmt == "loki_json")
        if fmt == "loki_json":
            streams = loki.streams_from_json(body)
        else:
            streams = loki.streams_from_protobuf(body, settings.max_body_bytes)
        entries = loki.loki_lines(streams, settings)
        return *_model_batch(state, entries.lines, entries.rejected, entries.metadata), entries

    batch, prepared, entries = await _decided(state, raw, codings, parse, plain=fmt == "loki_json")
    batch = await _store_once(state, batch, prepared, entries, fmt, request, raw)
    where = entries.where
    if batch.rejected:
        first = batch.rejected[0]
        problems = "; ".join(f"{where[r.index]}: {r.reason} ({r.message})" for r in batch.rejected[:5])
        raise ApiError(
            400,
            "entries_rejected",
            f"{len(batch.rejected)} of {len(where)} entries rejected, the other {len(where) - len(batch.rejected)}"
            f" stored (now or, sent again, before): {problems}",
            field=where[first.index],
        )
    return Response(status_code=204)


@router.post(
    "/v1/logs",
    summary="OTLP/HTTP logs",
    description="An OTLP `ExportLogsServiceRequest` in protobuf (`application/x-protobuf`) or JSON. Answers an "
    "`ExportLogsServiceResponse` in the same encoding; rejected records are counted in `partial_success`.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
                "application/json": {"schema": {"type": "object"}},
            },
        }
    },
    responses={
        **_ERRORS,
        200: {
            "description": "ExportLogsServiceResponse",
            "content": {"application/x-protobuf": {}, "application/json": {}},
        },
    },
)
async def otlp_logs(request: Request, state: State) -> Response:
    settings = state.settings
    media = _protobuf_or_json(request, "application/x-protobuf")
    raw, codings = await _read(request, settings)
    as_json = media == "application/json"

    def parse() -> tuple[Batch, PreparedAppend, otlp.OtlpLines]:
        body = decode_body(raw, codings, settings.max_body_bytes, text=as_json) if raw or as_json else raw
        message = otlp.request_from_json(body) if as_json else otlp.request_from_protobuf(body)
        records = otlp.otlp_lines(message, settings)
        return *_model_batch(state, records.lines, records.rejected, records.metadata), records

    batch, prepared, records = await _decided(state, raw, codings, parse, plain=as_json)
    fmt = "otlp_json" if as_json else "otlp_protobuf"
    batch = await _store_once(state, batch, prepared, records, fmt, request, raw)
    content, content_type = otlp.response(batch.rejected, records.where, as_json)
    return Response(content=content, media_type=content_type)
