"""The Elasticsearch routes: ``/_bulk``, ``/{index}/_bulk``, ``/{index}/_doc``, and ``GET /`` for the version.

They take the path every intake takes (``build_batch``, ``store_batch``: 429 and 503 as for ``POST /logs``,
lines counted as format ``es_bulk``), behind the same token. ``GET /`` is open: clients ask it before they send
anything, and it tells only a version. Every answer carries ``X-Elastic-Product: Elasticsearch``, which the
official clients (Filebeat, Logstash) require.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import JSONResponse

from service.http_errors import ApiError, retry_after
from service.intake.batch import Batch, build_batch
from service.intake.body import content_encodings, decode_body, decode_text, read_raw
from service.intake.es_bulk import BulkItem, BulkRequest, apply_batch, bulk_answer, parse_bulk, root_answer
from service.intake.routes import parse_on_loop, store_batch
from service.state import ServiceState, State, require_token
from service.windows.store import PreparedAppend, QueueFull, TooManySessions

PRODUCT = {"X-Elastic-Product": "Elasticsearch"}


async def _product_header(response: Response) -> None:
    response.headers.update(PRODUCT)


root = APIRouter(dependencies=[Depends(_product_header)])
router = APIRouter(dependencies=[Depends(require_token), Depends(_product_header)])
IndexName = Annotated[str, Path(description="the index: the documents' source unless --es-source-field names one")]
_ES_ERROR: dict[str, Any] = {
    "anyOf": [
        {
            "type": "object",
            "required": ["error", "status"],
            "properties": {"error": {"type": "object"}, "status": {"type": "integer"}},
        },
        {"$ref": "#/components/schemas/Error"},
    ]
}
_DOC_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "the document was refused (Elasticsearch's error shape), or the body cannot be read",
          "content": {"application/json": {"schema": _ES_ERROR}}},
    429: {"description": "queue or session cap reached; see Retry-After",
          "content": {"application/json": {"schema": _ES_ERROR}}},
}  # fmt: skip
_BULK_ERRORS: dict[int | str, dict[str, Any]] = {
    429: {"description": "queue or session cap reached, nothing stored; see Retry-After. The body is a bulk answer"
          " with every item 429 (what rsyslog's omelasticsearch reads)",
          "content": {"application/json": {"schema": {"type": "object", "required": ["errors", "items"]}}}},
}  # fmt: skip
_DOC_BODY: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"description": "body over max_body_bytes, before or after decompression"},
    415: {"description": "unsupported Content-Encoding or charset"},
    429: {"description": "queue or session cap reached; see Retry-After"},
    503: {"description": "Redis down or out of memory"},
}


@root.get("/", summary="Elasticsearch version", description="What Elasticsearch answers at `/` (`--es-version`), for"
          " clients that check it before they send; no token needed.")  # fmt: skip
async def es_root(state: State) -> dict[str, Any]:
    return root_answer(state.settings.es_version)


@root.head("/", include_in_schema=False)
async def es_root_head() -> Response:
    return Response(headers=PRODUCT)


async def _bulk(request: Request, state: ServiceState, index: str | None, single: str = "") -> BulkRequest:
    """Read, parse and store one bulk body (``single``: one document, wrapped in that action line); the items
    carry what became of each action, and ``request.state.took_ms`` the time it took."""
    settings = state.settings
    started = time.perf_counter()
    codings = content_encodings(request.headers.get("content-encoding"))
    raw = await read_raw(request, settings.max_body_bytes)

    def parse() -> tuple[BulkRequest, Batch, PreparedAppend]:
        text, _ = decode_text(decode_body(raw, codings, settings.max_body_bytes), None)
        if single:  # JSON strings hold no raw newline, so the document fits on one line
            text = single + "\n" + text.replace("\r", " ").replace("\n", " ")
        bulk = parse_bulk(text, index, settings)
        batch = build_batch(bulk.lines, settings)
        return bulk, batch, state.store.prepare(batch.groups)

    if parse_on_loop(raw, codings, plain=True):
        bulk, batch, prepared = parse()
    else:
        bulk, batch, prepared = await asyncio.to_thread(parse)
    if not bulk.items:
        raise ApiError(400, "empty_body", "the bulk body has no action line", field="body")
    try:
        await store_batch(state, batch, prepared, "es_bulk")
    except (QueueFull, TooManySessions) as exc:
        raise BulkRefused(bulk, str(exc), retry_after(getattr(exc, "retry_after_s", settings.retry_after_s))) from None
    apply_batch(bulk, batch)
    _count_refusals(state, bulk, batch)
    request.state.took_ms = int((time.perf_counter() - started) * 1000)
    return bulk


class BulkRefused(Exception):
    """The store refused the whole body at a cap: nothing of it was stored."""

    def __init__(self, bulk: BulkRequest, message: str, headers: dict[str, str]) -> None:
        super().__init__(message)
        self.bulk, self.message, self.headers = bulk, message, headers

    def response(self) -> JSONResponse:
        """HTTP 429 with Retry-After, which Filebeat, Logstash, Fluent Bit and Vector retry; and the body of a bulk
        answer with every item 429, which rsyslog's omelasticsearch reads instead of the status (it parses
        ``items`` and, with ``retryfailures="on"``, sends the refused records again)."""
        for item in self.bulk.items:
            if item.error is None:
                item.refuse(429, "es_rejected_execution_exception", self.message)
        body = bulk_answer(self.bulk, 0) | {
            "error": {"type": "es_rejected_execution_exception", "reason": self.message},
            "status": 429,
        }
        return JSONResponse(body, status_code=429, headers={**PRODUCT, **self.headers})


def _count_refusals(state: ServiceState, bulk: BulkRequest, batch: Batch) -> None:
    """Actions refused before build_batch (malformed lines, unsupported actions) in the rejected-lines counter;
    build_batch's own rejections were counted by store_batch."""
    windowed = {r.index for r in batch.rejected}
    for position, item in enumerate(bulk.items):
        if item.error is not None and position not in windowed:
            reason = "bad_action" if item.error[0] == "illegal_argument_exception" else "bad_document"
            state.metrics.lines_rejected.labels(reason=reason, format="es_bulk").inc()


_BULK_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-ndjson": {"schema": {"type": "string"}, "example": '{"index": {}}\n{"message": "x"}\n'},
            "application/json": {"schema": {"type": "string"}},
        },
    }
}  # fmt: skip


@router.put("/_bulk", include_in_schema=False)
@router.post(
    "/_bulk",
    summary="Elasticsearch bulk API",
    description="NDJSON action and document pairs; each document's `--es-message-field` is one log line, its "
    "source `--es-source-field` or the action's `_index`. Answers `{took, errors, items}` with one item per "
    "action (status 201, or 400/429 with `error` for that action alone).",
    openapi_extra=_BULK_DOC,
    responses={**_ERRORS, **_BULK_ERRORS},
)
async def bulk(request: Request, state: State) -> Any:
    try:
        items = await _bulk(request, state, None)
    except BulkRefused as refused:
        return refused.response()
    return bulk_answer(items, request.state.took_ms)


@router.put("/{index}/_bulk", include_in_schema=False)
@router.post(
    "/{index}/_bulk",
    summary="Elasticsearch bulk API, default index in the path",
    openapi_extra=_BULK_DOC,
    responses={**_ERRORS, **_BULK_ERRORS},
)
async def bulk_index(request: Request, state: State, index: IndexName) -> Any:
    try:
        items = await _bulk(request, state, index)
    except BulkRefused as refused:
        return refused.response()
    return bulk_answer(items, request.state.took_ms)


async def _single(request: Request, state: ServiceState, index: str, doc_id: str | None, action: str) -> Response:
    """One document, as ``/{index}/_doc``: the bulk path with one action, answered as Elasticsearch answers."""
    meta = orjson.dumps({action: {"_id": doc_id}}).decode()
    try:
        item: BulkItem = (await _bulk(request, state, index, single=meta)).items[0]
    except BulkRefused as refused:
        error = {"type": "es_rejected_execution_exception", "reason": refused.message}
        return JSONResponse({"error": error, "status": 429}, status_code=429, headers={**PRODUCT, **refused.headers})
    answer = item.answer(0)
    status = answer.pop("status")
    if item.error is not None:
        return JSONResponse({"error": answer["error"], "status": status}, status_code=status, headers=PRODUCT)
    return JSONResponse(answer, status_code=201, headers=PRODUCT)


@router.post("/{index}/_doc", summary="Elasticsearch single document", status_code=201,
             responses={**_ERRORS, **_DOC_ERRORS}, openapi_extra=_DOC_BODY)  # fmt: skip
async def doc(request: Request, state: State, index: IndexName) -> Response:
    return await _single(request, state, index, None, "index")


@router.post("/{index}/_doc/{doc_id}", include_in_schema=False)
@router.put("/{index}/_doc/{doc_id}", summary="Elasticsearch document with an id",
                  status_code=201, responses={**_ERRORS, **_DOC_ERRORS}, openapi_extra=_DOC_BODY)  # fmt: skip
async def doc_with_id(request: Request, state: State, index: IndexName, doc_id: str) -> Response:
    return await _single(request, state, index, doc_id, "index")


@router.post("/{index}/_create/{doc_id}", include_in_schema=False)
@router.put("/{index}/_create/{doc_id}", summary="Elasticsearch create",
                  status_code=201, responses={**_ERRORS, **_DOC_ERRORS}, openapi_extra=_DOC_BODY)  # fmt: skip
async def create(request: Request, state: State, index: IndexName, doc_id: str) -> Response:
    return await _single(request, state, index, doc_id, "create")
