"""Verdicts and explicit closes. Ids may contain ``/`` (source names) and ``#`` (send it as ``%23``)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from service.http_errors import ApiError
from service.state import State, require_token

router = APIRouter(prefix="/sequences", dependencies=[Depends(require_token)])


class VerdictResponse(BaseModel):
    id: str
    status: Literal["pending", "normal", "anomalous", "failed"] = Field(
        description="pending = open or awaiting the model; failed = the model failed on it max_deliveries times"
    )
    score: float | None = Field(default=None, description="P(anomalous)")
    threshold: float | None = None
    n_lines: int | None = None
    model_version: str | None = None
    closed_at: float | None = Field(default=None, description="unix seconds")
    scored_at: float | None = Field(default=None, description="unix seconds")
    error: str | None = Field(default=None, description="why the window failed (status failed only)")


class CloseResponse(BaseModel):
    id: str = Field(description="id of the window closed (its verdict id)")


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
        status="anomalous" if found.label == "anomalous" else "normal",
        score=found.score,
        threshold=found.threshold,
        n_lines=found.n_lines,
        model_version=found.model_version,
        closed_at=found.closed_at,
        scored_at=found.scored_at,
    )


@router.post(
    "/{window_key:path}/close",
    response_model=CloseResponse,
    summary="Close the open window of a session (or of a source, in fixed mode)",
    responses={404: {"description": "no open window for this key"}},
)
async def close_window(window_key: str, state: State) -> CloseResponse:
    closed = await state.store.close(window_key)
    if closed is None:
        raise ApiError(404, "no_open_window", f"no open window for {window_key[:200]!r}")
    state.metrics.windows_closed.labels(reason="explicit").inc()
    return CloseResponse(id=closed)
