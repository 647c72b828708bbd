"""Finding records: ``GET /anomalies`` (paged, newest first), ``GET /sequences/{id}``, a session's windows."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from service.http_errors import ApiError
from service.records.cursor import BadCursor
from service.records.query import RecordQuery, query_records
from service.records.record_models import RecordResponse
from service.records.record_store import RecordStore
from service.records.routes import BareSessionSource, resolve_key
from service.state import ServiceState, State, require_token
from service.windows.ids import SOURCE_PATTERN

router = APIRouter(dependencies=[Depends(require_token)])
MAX_LIMIT = 500


@contextmanager
def cursor_checked() -> Iterator[None]:
    """A cursor this service did not issue for this query is the client's error: 400 naming ``cursor``."""
    try:
        yield
    except BadCursor as exc:
        raise ApiError(400, "invalid_cursor", str(exc), field="cursor") from None


def records_of(state: ServiceState) -> RecordStore:
    if state.records is None:
        raise ApiError(503, "records_unavailable", "this service keeps no records")
    return state.records


@router.get(
    "/anomalies",
    summary="Records of scored windows, newest first (anomalous unless status says)",
    responses={400: {"description": "since after until, or a cursor this service did not issue for this query"}},
)
async def list_anomalies(
    state: State,
    source: Annotated[str | None, Query(pattern=SOURCE_PATTERN, max_length=200)] = None,
    since: Annotated[float | None, Query(ge=0, description="scored at or after (unix seconds)")] = None,
    until: Annotated[float | None, Query(ge=0, description="scored at or before (unix seconds)")] = None,
    min_score: Annotated[float | None, Query(ge=0, le=1)] = None,
    status: Literal["anomalous", "failed", "muted", "normal"] = "anomalous",
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> dict[str, Any]:
    if since is not None and until is not None and since > until:
        raise ApiError(400, "invalid_range", f"since ({since:g}) is after until ({until:g})", field="since")
    query = RecordQuery(status=status, source=source, since=since, until=until, min_score=min_score)
    with cursor_checked():
        page = await query_records(records_of(state), query, limit, cursor)
    return {"items": page.items, "next_cursor": page.next_cursor}


@router.get(
    "/sequences/{window_id:path}",
    summary="A window's record with its lines (raw and content) and explanation",
    response_model=RecordResponse,
    response_model_exclude_unset=True,
    responses={404: {"description": "no record (never scored, or expired)"}},
)
async def get_record(window_id: str, state: State) -> dict[str, Any]:
    found = await records_of(state).get(window_id)
    if found is None:
        raise ApiError(404, "unknown_record", f"no record of window {window_id[:200]!r} (not scored yet, or expired)")
    return found


@router.get(
    "/sessions/{key:path}/windows",
    summary="A session's windows in order (#1, #2...): scored, pending and open",
    responses={404: {"description": "no window of this session is known"}},
)
async def session_windows(
    key: str,
    state: State,
    source: BareSessionSource = None,
) -> dict[str, Any]:
    given = key
    key = resolve_key(given, source)
    windows = await records_of(state).session_windows(key)
    if not windows and key != given:  # a session windowed under a key written before the id scheme
        key = given
        windows = await records_of(state).session_windows(key)
    if not windows:
        raise ApiError(404, "unknown_session", f"no window of session {key[:200]!r} is known", field="key")
    return {"key": key, "windows": windows}
