"""Verdicts and explicit closes. Ids (service/windows/ids.py) may contain ``/`` and ``#`` (send it as ``%23``)."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from service.http_errors import ApiError
from service.state import State, require_token
from service.windows.ids import DEFAULT_SOURCE, BadWindowName, is_window_key, session_key

router = APIRouter(prefix="/sequences", dependencies=[Depends(require_token)])


Reason = Literal[
    "model", "novel_template", "known_anomalous_template", "novel_transition", "missing_step", "novel_count"
]
REASONS = get_args(Reason)


class NoveltyFound(BaseModel):
    novel: list[str] = Field(description="templates in neither the checkpoint's normal vocabulary nor learned")
    known_anomalous: list[str] = Field(description="templates training saw only in anomalous windows")
    transitions: list[tuple[str | None, str | None]] = Field(
        default_factory=list,
        description="session paths (template, next template; null is the session's start or end) that fewer normal"
        " training sessions took than the checkpoint's rare_transition, and the source has not learned",
    )
    counts: list[tuple[str, str | None, int]] = Field(
        default_factory=list,
        description="session counts no normal training session showed and the source has not learned: [template,"
        " null, n] is how often the template occurred, [template, other, d] its count minus the other's; in a fixed"
        " window, [template, null, n]: more than any normal training window held (plus the checkpoint's slack)",
    )
    missing: list[tuple[str, str]] = Field(
        default_factory=list,
        description="fixed windows: [template, step] where every normal training window followed the template by the"
        " step within a few lines, and this window did not (the source has not learned it)",
    )


class VerdictResponse(BaseModel):
    id: str
    status: Literal["pending", "normal", "anomalous", "muted", "failed"] = Field(
        description="pending = open or awaiting the model; muted = the model said anomalous but a mute (feedback on"
        " a window with the same messages) says it is not; failed = the model failed on it max_deliveries times"
    )
    score: float | None = Field(default=None, description="P(anomalous)")
    threshold: float | None = None
    n_lines: int | None = None
    n_scored: int | None = Field(
        default=None, description="lines the model saw (all of them, in chunks when longer than the model's limit)"
    )
    model_version: str | None = None
    closed_at: float | None = Field(default=None, description="unix seconds")
    scored_at: float | None = Field(default=None, description="unix seconds")
    error: str | None = Field(default=None, description="why the window failed (status failed only)")
    reason: Reason | None = Field(
        default=None,
        description="why it is anomalous: the model's score, or a template neither the checkpoint nor the source knew"
        " (novel_template) or that training saw only in anomalous windows (known_anomalous_template), or a session"
        " path of known templates that normal training sessions (almost) never took (novel_transition), or a count"
        " of templates (or difference of two counts) no normal training session showed, or more of one template than"
        " any normal training window held (novel_count), or a step that always followed a template left out of a"
        " fixed window (missing_step)",
    )
    novelty: NoveltyFound | None = Field(default=None, description="the templates the novelty rule found")


class CloseResponse(BaseModel):
    id: str = Field(description="id of the window closed (its verdict id)")


BareSessionSource = Annotated[
    str | None, Query(description="source of a bare session id (default 'default'); ignored for a full key")
]


def resolve_key(name: str, source: str | None) -> str:
    """A window key as given, or the session key of a bare session id in ``source`` (default 'default')."""
    if is_window_key(name):
        return name
    try:
        return session_key(source or DEFAULT_SOURCE, name)
    except BadWindowName as exc:
        field = "query.source" if str(exc).startswith("source") else "path.key"
        raise ApiError(422, "bad_window_key", str(exc), field=field) from None


@router.get(
    "/{window_id:path}/verdict",
    response_model=VerdictResponse,
    summary="Verdict of a window",
    responses={404: {"description": "no window with this id (or its verdict expired)"}},
)
async def get_verdict(window_id: str, state: State) -> VerdictResponse:
    found = await state.store.verdict(window_id)
    if found is None:
        raise ApiError(404, "unknown_window", f"no window {window_id[:200]!r} (never seen, or its verdict expired)")
    if found == "pending":
        return VerdictResponse(id=window_id, status="pending")
    if found.label == "failed":
        return VerdictResponse(
            id=window_id,
            status="failed",
            n_lines=found.n_lines,
            closed_at=found.closed_at,
            scored_at=found.scored_at,
            error=found.error,
        )
    return VerdictResponse(
        id=window_id,
        status=found.label if found.label in ("anomalous", "muted") else "normal",
        score=found.score,
        threshold=found.threshold,
        n_lines=found.n_lines,
        n_scored=found.n_scored,
        model_version=found.model_version,
        closed_at=found.closed_at,
        scored_at=found.scored_at,
        reason=found.reason if found.reason in REASONS else None,  # type: ignore[arg-type]
        novelty=NoveltyFound(**novelty) if (novelty := found.novelty()) is not None else None,
    )


@router.post(
    "/{window_key:path}/close",
    response_model=CloseResponse,
    summary="Close the open window of a key (session:<source>:<id>, fixed:<source>) or of a bare session id",
    responses={
        404: {"description": "no open window for this key"},
        422: {"description": "not a window key, and not a valid session id"},
    },
)
async def close_window(
    window_key: str,
    state: State,
    source: BareSessionSource = None,
) -> CloseResponse:
    key = resolve_key(window_key, source)
    closed = await state.store.close(key)
    if closed is None and key != window_key:  # a window opened under a key written before the id scheme
        closed = await state.store.close(window_key)
    if closed is None:
        raise ApiError(404, "no_open_window", f"no open window for {key[:200]!r}")
    state.metrics.windows_closed.labels(reason="explicit").inc()
    return CloseResponse(id=closed)
