"""Health probes and Prometheus metrics; open even when auth_token is set, as probes carry no token (/metrics
takes its own metrics_token, a scraper's credential that opens nothing else)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from redis.exceptions import RedisError

from service.state import ServiceState, State, require_metrics_token

log = logging.getLogger(__name__)
router = APIRouter(tags=["operations"])
PROBE_TIMEOUT_S = 2.0


async def refresh_gauges(state: ServiceState) -> str | None:
    """Read queue depth and open windows (a real round trip); None when Redis answered, else why not."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            depth = await state.store.queue_depth()
            open_windows = await state.store.open_windows()
    except (RedisError, OSError, TimeoutError) as exc:
        return f"Redis does not answer: {type(exc).__name__}: {str(exc)[:120]}"
    state.metrics.ready_queue_depth.set(depth)
    state.metrics.open_windows.set(open_windows)
    return None


async def readiness(state: ServiceState) -> list[str]:
    """Why the service is not ready (empty when it is); also sets the logllm_ready gauge."""
    problems: list[str] = []
    if state.scorer is None and state.settings.role != "api":  # an api replica never loads the model
        problems.append(state.model_error or "model loading")
    redis_problem = await refresh_gauges(state)
    if redis_problem:
        problems.append(redis_problem)
    state.metrics.ready.set(0 if problems else 1)
    return problems


class NotReady(BaseModel):
    status: str = "not_ready"
    reasons: list[str]


@router.get("/health/live", summary="The process runs and serves HTTP")
async def live() -> dict[str, str]:
    return {"status": "live"}


@router.get(
    "/health/ready",
    summary="Redis answers, and the model is loaded and warm (roles worker and all)",
    responses={503: {"description": "not ready; `reasons` says why", "model": NotReady}},
)
async def ready(state: State) -> JSONResponse:
    problems = await readiness(state)
    if problems:
        return JSONResponse({"status": "not_ready", "reasons": problems}, status_code=503)
    scorer = state.scorer
    body = {"status": "ready"}
    if scorer is not None:  # none on an api replica
        body["model_version"] = getattr(scorer, "version", "unknown")
    return JSONResponse(body)


@router.get(
    "/metrics",
    summary="Prometheus metrics (up to metrics_max_sources source names); needs metrics_token when one is set",
    response_class=Response,
    dependencies=[Depends(require_metrics_token)],
)
async def metrics(state: State) -> Response:
    await readiness(state)
    body, content_type = state.metrics.render()
    return Response(body, media_type=content_type)
