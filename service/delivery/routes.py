"""Reading verdicts as they come (``GET /anomalies/stream``, SSE), the chart's counts, and the page at /ui.

The page is three static files (no build step). Log lines are untrusted: the page only ever sets
``textContent`` and is served with a Content-Security-Policy that allows scripts, styles and requests from
this origin only, so a planted ``<script>`` or ``onerror=`` can neither be parsed as markup nor run.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, StreamingResponse

from service.delivery.service import Delivery
from service.delivery.stream import StreamEntry
from service.http_errors import ApiError
from service.state import require_token
from service.windows.ids import SOURCE_PATTERN

router = APIRouter()
UI_DIR = Path(__file__).with_name("ui")
UI_FILES = {"index.html": "text/html", "app.js": "text/javascript", "app.css": "text/css"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self';"
    " base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
STREAM_ID = re.compile(r"\d{1,20}-\d{1,20}")
KEEPALIVE_S = 15.0
BLOCK_MS = 1000


def delivery_of(request: Request) -> Delivery:
    return request.app.state.delivery  # type: ignore[no-any-return]


def _matches(entry: StreamEntry, status: str, source: str | None, since: float | None, until: float | None,
             min_score: float | None) -> bool:  # fmt: skip
    f = entry.fields
    scored = f.get("scored_at") or 0.0
    return (
        f.get("label") == status
        and (source is None or f.get("source") == source)
        and (since is None or scored >= since)
        and (until is None or scored <= until)
        and (min_score is None or (f.get("score") is not None and f["score"] >= min_score))
    )


@router.get(
    "/anomalies/stream",
    dependencies=[Depends(require_token)],
    tags=["delivery"],
    summary="Verdicts as Server-Sent Events (same filters as /anomalies); resumes after Last-Event-ID",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}},
        400: {"description": "Last-Event-ID is not a stream id, or since is after until"},
    },
)
async def anomaly_stream(
    request: Request,
    source: Annotated[str | None, Query(pattern=SOURCE_PATTERN, max_length=200)] = None,
    since: Annotated[float | None, Query(ge=0, description="scored at or after (unix seconds)")] = None,
    until: Annotated[float | None, Query(ge=0, description="scored at or before (unix seconds)")] = None,
    min_score: Annotated[float | None, Query(ge=0, le=1)] = None,
    status: Literal["anomalous", "failed", "muted", "normal"] = "anomalous",
    last_event_id: Annotated[str | None, Header(description="resume after this event id (a stream id)")] = None,
) -> StreamingResponse:
    if since is not None and until is not None and since > until:
        raise ApiError(400, "invalid_range", f"since ({since:g}) is after until ({until:g})", field="since")
    if last_event_id is not None and not STREAM_ID.fullmatch(last_event_id.strip()):
        raise ApiError(
            400, "invalid_event_id", f"Last-Event-ID {last_event_id[:60]!r} is not a stream id like 1700000000000-0",
            field="Last-Event-ID",
        )  # fmt: skip
    delivery = delivery_of(request)
    after = last_event_id.strip() if last_event_id else await delivery.stream.last_id()

    async def events() -> AsyncIterator[str]:
        nonlocal after
        yield "retry: 2000\n\n"
        idle = 0.0
        while not await request.is_disconnected():
            entries = await delivery.stream.read(after, count=200, block_ms=BLOCK_MS)
            for entry in entries:
                after = entry.entry_id
                if _matches(entry, status, source, since, until, min_score):
                    data = json.dumps(entry.fields, separators=(",", ":"))
                    yield f"id: {entry.entry_id}\nevent: verdict\ndata: {data}\n\n"
            idle = 0.0 if entries else idle + BLOCK_MS / 1000
            if idle >= KEEPALIVE_S:
                idle = 0.0
                yield ": keep-alive\n\n"
            await asyncio.sleep(0)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


@router.get(
    "/verdicts/per-minute",
    dependencies=[Depends(require_token)],
    tags=["delivery"],
    summary="Verdicts per minute by label over the last minutes (from the verdict stream)",
)
async def verdicts_per_minute(request: Request, minutes: Annotated[int, Query(ge=1, le=1440)] = 60) -> dict[str, Any]:
    return await delivery_of(request).stream.per_minute(minutes)


@router.get("/ui", include_in_schema=False)
async def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/", headers=SECURITY_HEADERS)


@router.get("/ui/", include_in_schema=False)
async def ui_index() -> FileResponse:
    return ui_file("index.html")


@router.get("/ui/{name}", include_in_schema=False)
async def ui_asset(name: str) -> FileResponse:
    if name not in UI_FILES:
        raise ApiError(404, "not_found", f"no page file {name[:60]!r}", field="name")
    return ui_file(name)


def ui_file(name: str) -> FileResponse:
    return FileResponse(UI_DIR / name, media_type=UI_FILES[name], headers=SECURITY_HEADERS)
