"""``GET /patterns`` (paged, newest first seen first), ``GET /patterns/{id}``, ``POST /patterns/{id}/learn``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from service.http_errors import ApiError
from service.patterns.pattern_store import ID_PATTERN, PatternQuery, PatternStore
from service.records.query_routes import MAX_LIMIT, cursor_checked, records_of
from service.state import ServiceState, State, require_token
from service.windows.ids import DEFAULT_SOURCE, SOURCE_PATTERN

router = APIRouter(prefix="/patterns", dependencies=[Depends(require_token)])
LEARNED_BY_API = "api"

Source = Annotated[str | None, Query(pattern=SOURCE_PATTERN, max_length=200, description="a source's name")]
PatternId = Annotated[str, Path(pattern=ID_PATTERN, description="the template's id (16 hex digits)")]


def patterns_of(state: ServiceState) -> PatternStore:
    if state.patterns is None:
        raise ApiError(503, "patterns_unavailable", "this service keeps no patterns")
    return state.patterns


@router.get(
    "",
    summary="Templates per source, newest first seen first",
    responses={400: {"description": "a cursor this service did not issue for this query"}},
)
async def list_patterns(
    state: State,
    source: Source = None,
    since: Annotated[float | None, Query(ge=0, description="first seen at or after (unix seconds)")] = None,
    new_only: Annotated[
        bool, Query(description="only templates in neither the checkpoint's normal vocabulary nor learned")
    ] = False,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> dict[str, Any]:
    query = PatternQuery(source=source, since=since, new_only=new_only)
    with cursor_checked():
        page = await patterns_of(state).query(query, limit, cursor, records_of(state).secret)
    return {"items": page.items, "next_cursor": page.next_cursor}


async def _holders(state: ServiceState, pattern_id: str, source: str | None) -> list[dict[str, Any]]:
    """The template in each source holding it (or in ``source``); 404 when none does."""
    found = await patterns_of(state).get(pattern_id, source)
    if not found:
        where = f" in source {source!r}" if source else ""
        raise ApiError(404, "unknown_pattern", f"no template {pattern_id}{where}", field="pattern_id")
    return found


@router.get(
    "/{pattern_id}",
    summary="One template in each source that holds it, with the latest windows that held it",
    responses={404: {"description": "no source holds this template (or not the one asked for)"}},
)
async def get_pattern(pattern_id: PatternId, state: State, source: Source = None) -> dict[str, Any]:
    found = await _holders(state, pattern_id, source)
    return {"id": pattern_id, "template": found[0]["template"], "sources": found}


@router.post(
    "/{pattern_id}/learn",
    summary="Learn a template for a source: windows holding it are no longer novel there",
    responses={404: {"description": "the source holds no such template"}},
)
async def learn_pattern(
    pattern_id: PatternId,
    state: State,
    source: Annotated[str, Query(pattern=SOURCE_PATTERN, max_length=200)] = DEFAULT_SOURCE,
) -> dict[str, Any]:
    (found,) = await _holders(state, pattern_id, source)
    await patterns_of(state).learn(source, [found["template"]], LEARNED_BY_API)
    (learned,) = await _holders(state, pattern_id, source)
    return learned
