"""What the routes share: settings, metrics, the window store and the model once it is warm."""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from service.http_errors import ApiError
from service.metrics import ServiceMetrics
from service.settings import ServiceSettings

if TYPE_CHECKING:
    from service.intake.formats import SourceFormats
    from service.intake.sources import SourceRegistry
    from service.patterns.pattern_store import PatternStore
    from service.records.record_store import RecordStore
    from service.scoring.classifier import Scorer
    from service.windows.store import WindowStore


@dataclass
class ServiceState:
    """One per app; ``scorer`` is None until the checkpoint is loaded and has scored once."""

    settings: ServiceSettings
    metrics: ServiceMetrics
    store: WindowStore
    scorer: Scorer | None = None
    model_error: str | None = None
    records: RecordStore | None = None
    patterns: PatternStore | None = None
    formats: SourceFormats | None = None  # the decided formats of --log-format auto sources
    sources: SourceRegistry | None = None

    def source_registry(self) -> SourceRegistry:
        """The max_sources cap (made on first use: only the intake needs it)."""
        if self.sources is None:
            from service.intake.sources import SourceRegistry

            self.sources = SourceRegistry(self.store, self.settings.max_sources)
        return self.sources


def get_state(request: Request) -> ServiceState:
    return request.app.state.service  # type: ignore[no-any-return]


State = Annotated[ServiceState, Depends(get_state)]
_bearer = HTTPBearer(
    auto_error=False,
    description="required when the service runs with auth_token set; Basic auth with the token as the password"
    " (any user name) is accepted too, for shippers that only offer Basic (winston-loki, pino-loki)",
)
CHALLENGE = 'Bearer, Basic realm="logllm"'


def basic_password(authorization: str) -> str | None:
    """The password of an ``Authorization: Basic`` header (the user name is not checked), or None when the
    header is not Basic or does not decode to ``user:password``."""
    scheme, _, param = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(param.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _user, colon, password = decoded.partition(":")
    return password if colon else None


def require_token(
    request: Request,
    state: Annotated[ServiceState, Depends(get_state)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """401 unless the request carries the configured token, as a bearer token or as a Basic password; open
    when no token is configured."""
    _check_token(state.settings.auth_token, credentials, request)


def require_metrics_token(request: Request) -> None:
    """GET /metrics: 401 unless it carries metrics_token (a scraper's own credential); open without one. Read
    from the header directly, so the OpenAPI document keeps auth_token's scheme for the API alone."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    credentials = HTTPAuthorizationCredentials(scheme=scheme, credentials=given) if scheme.lower() == "bearer" else None
    _check_token(get_state(request).settings.metrics_token, credentials, request)


def _check_token(token: SecretStr | None, credentials: HTTPAuthorizationCredentials | None, request: Request) -> None:
    if token is None:
        return
    header = request.headers.get("authorization", "")
    given = credentials.credentials if credentials is not None else basic_password(header) or ""
    if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise ApiError(
            401,
            "unauthorized",
            "missing or wrong token" if header else "send Authorization: Bearer <token> (or Basic, token as password)",
            field="Authorization",
            headers={"WWW-Authenticate": CHALLENGE},
        )
