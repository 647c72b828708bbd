"""One error shape for every 4xx/5xx: ``{"reason": code, "message": text, "field": where}``.

Clients branch on ``reason`` (a stable code); ``message`` is for people and names the offending value, cut
short.
Backpressure and Redis failures map here too, so no route has to remember them.
"""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from redis import exceptions as redis_errors
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.windows.store import QueueFull, RequestInFlight, StoreUnavailable, TooManySessions

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error a route raises on purpose, with its status and reason code."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.field = field
        self.headers = headers or {}


def error_response(
    status: int, reason: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body: dict[str, str] = {"reason": reason, "message": message}
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status_code=status, headers=headers)


def shorten(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validation_error_response(errors: list[dict[str, object]], prefix: tuple[str, ...] = ()) -> JSONResponse:
    """Pydantic errors as a 422 naming the first bad field (``lines[3].message``), all of them in message."""

    def where(err: dict[str, object]) -> str:
        loc = [str(p) for p in (*prefix, *err.get("loc", ())) if p not in ("body",)]  # type: ignore[misc]
        out = ""
        for part in loc:
            out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
        return out or "body"

    problems = "; ".join(f"{where(e)}: {e.get('msg')} (got {shorten(e.get('input'))})" for e in errors[:5])
    return error_response(422, "invalid_field", problems, field=where(errors[0]) if errors else None)


def retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def install_error_handlers(app: FastAPI, default_retry_after_s: float) -> None:
    """Map route errors, framework errors, backpressure and Redis failures to the one error shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.reason, exc.message, exc.field, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error_response(list(exc.errors()))

    @app.exception_handler(ValidationError)
    async def _model_invalid(_: Request, exc: ValidationError) -> JSONResponse:
        return validation_error_response(list(exc.errors()))  # type: ignore[arg-type]

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        reason = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, reason, str(exc.detail), headers=headers)

    @app.exception_handler(QueueFull)
    async def _queue_full(_: Request, exc: QueueFull) -> JSONResponse:
        wait = float(getattr(exc, "retry_after_s", default_retry_after_s) or default_retry_after_s)
        return error_response(
            429,
            "queue_full",
            f"too many windows await a verdict; retry in {wait:g} s",
            headers=retry_after(wait),
        )

    @app.exception_handler(TooManySessions)
    async def _too_many_sessions(_: Request, exc: TooManySessions) -> JSONResponse:
        return error_response(
            429,
            "too_many_sessions",
            f"the open-window cap is reached ({exc}); close sessions or retry later",
            headers=retry_after(default_retry_after_s),
        )

    @app.exception_handler(RequestInFlight)
    async def _request_in_flight(_: Request, exc: RequestInFlight) -> JSONResponse:
        return error_response(429, "request_in_flight", str(exc), headers=retry_after(exc.retry_after_s))

    @app.exception_handler(redis_errors.RedisError)
    async def _redis_error(_: Request, exc: redis_errors.RedisError) -> JSONResponse:
        if isinstance(exc, redis_errors.OutOfMemoryError) or str(exc).startswith("OOM"):
            reason, text = "redis_oom", "Redis is out of memory"
        elif isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError):
            reason, text = "redis_unavailable", "Redis does not answer"
        else:
            reason, text = "redis_error", "Redis refused the command"
        detail = str(exc) if isinstance(exc, StoreUnavailable) else f"{text}: {exc}"
        log.warning("%s", detail)
        return error_response(503, reason, shorten(detail, 160), headers=retry_after(default_retry_after_s))
