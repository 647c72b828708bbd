"""The OpenAPI document tells the truth: schemathesis drives every documented operation of the live app (real
HTTP on loopback, the real Redis of conftest.py, a keyword scorer) with auth off and on, and every answer must be
documented (status, content type, body schema) and none may be a server error.

The operations come from the served document, so routes added later are covered without touching this file.
Requests are generated from the document (positive data); MAX_EXAMPLES bounds each operation.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.app import create_app
from service.settings import ServiceSettings
from service.windows.embedded_redis import free_port
from tests.service.test_app import KeywordScorer

TOKEN = "test-token"
MAX_EXAMPLES = 25  # per operation: the whole run stays well under a minute
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
HYPOTHESIS = settings(
    max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)


class LiveServer:
    """uvicorn serving the app in a thread on a free loopback port, until stopped."""

    def __init__(self, **overrides: Any) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        app = create_app(ServiceSettings(**overrides), scorer=KeywordScorer())
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.__exit__()
        raise AssertionError(f"the app at {self.url} did not become ready")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def module_redis_url(redis_server: Any) -> str:
    import redis

    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return str(redis_server.url)


def drive(redis_url: str, tmp_path: Path, token: str | None, headers: dict[str, str]) -> list[str]:
    """Every operation of the served document, MAX_EXAMPLES generated requests each, all CHECKS on every answer;
    returns the operations driven. (schemathesis' pytest loader does not run on pytest 9, so hypothesis drives
    each operation's strategy here.)"""
    options = {
        "redis_url": redis_url, "checkpoint": tmp_path, "max_session_lines": 5, "sweep_interval_s": 0.05,
        "auth_token": token,
    }  # fmt: skip
    driven = []
    with LiveServer(**options) as server:
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        for result in schema.get_all_operations():
            operation = result.ok()
            if "text/event-stream" in operation.definition.raw.get("responses", {}).get("200", {}).get("content", {}):
                continue  # an answered stream never ends; tests/service/test_delivery_stream.py covers its 4xx

            @HYPOTHESIS
            @given(case=operation.as_strategy())
            def call(case: Any) -> None:
                response = case.call_and_validate(checks=CHECKS, headers=headers)
                if token is not None and not headers and "security" in case.operation.definition.raw:
                    assert response.status_code == 401, response.text

            try:
                call()
            except Exception as exc:
                raise AssertionError(f"{operation.label}: {exc}") from exc
            driven.append(operation.label)
    return driven


EXPECTED = {"POST /logs", "GET /sequences/{window_id}/verdict", "GET /health/ready", "GET /metrics"}


def test_every_answer_without_auth_is_documented(module_redis_url: str, tmp_path: Path) -> None:
    assert set(drive(module_redis_url, tmp_path, None, {})) >= EXPECTED


def test_every_answer_with_the_token_is_documented(module_redis_url: str, tmp_path: Path) -> None:
    assert set(drive(module_redis_url, tmp_path, TOKEN, {"Authorization": f"Bearer {TOKEN}"})) >= EXPECTED


def test_every_answer_without_the_token_is_documented_and_refused(module_redis_url: str, tmp_path: Path) -> None:
    assert set(drive(module_redis_url, tmp_path, TOKEN, {})) >= EXPECTED


def test_security_is_declared_only_with_a_token(tmp_path: Path) -> None:
    for token, declared in ((None, False), (TOKEN, True)):
        document = create_app(ServiceSettings(checkpoint=tmp_path, auth_token=token)).openapi()
        secured = [
            (path, method)
            for path, item in document["paths"].items()
            for method, operation in item.items()
            if operation.get("security")
        ]
        assert bool(secured) == declared, (token, secured)
        assert ("securitySchemes" in document["components"]) == declared
        for path, method in secured:
            assert "401" in document["paths"][path][method]["responses"], (path, method)
        assert "400" in document["paths"]["/logs"]["post"]["responses"]
