"""The OpenAPI document as this configuration behaves: what FastAPI generates, corrected once when first served.

FastAPI declares the bearer scheme on every route that depends on ``require_token``, even when no token is set,
and knows nothing of the errors our handlers answer (service/http_errors.py). Routes document their own special
cases (404, 413, 429...); the errors every route of a kind shares are added here, so a new route gets them too:
- routes behind the token (they are the ones that read or write the window store): 401 when a token is set, and
  503 when Redis is down or full;
- routes with a request body: 400 (a body that cannot be read: empty, bad Content-Length, undecodable) and 422;
- routes with parameters: 422;
- every error without a body schema of its own gets the one error shape ``{reason, message, field}``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["reason", "message"],
    "properties": {
        "reason": {"type": "string", "description": "stable code to branch on, e.g. invalid_field"},
        "message": {"type": "string", "description": "for people; names the offending value, cut short"},
        "field": {"type": "string", "description": "where: a field (lines[3].message), a header or a parameter"},
    },
}
ERROR_REF = {"$ref": "#/components/schemas/Error"}
SHARED_ERRORS = {
    400: "the body cannot be read: empty, a bad Content-Length or not decodable",
    401: "missing or wrong bearer token",
    422: "a field or parameter is invalid; `field` names it",
    503: "Redis does not answer or is out of memory; see Retry-After",
}
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def install_openapi(app: FastAPI, auth: bool) -> None:
    """Serve the corrected document from ``app.openapi()`` (and so from /openapi.json and /docs)."""
    generate = app.openapi
    corrected: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not corrected:
            corrected.update(truthful(generate(), auth))
        return corrected

    app.openapi = openapi  # type: ignore[method-assign]


def truthful(document: dict[str, Any], auth: bool) -> dict[str, Any]:
    """The document with security only when ``auth``, the shared errors added, and one error shape."""
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    for path_item in document.get("paths", {}).values():
        for method, operation in path_item.items():
            if method in HTTP_METHODS:
                _correct(operation, auth)
    if not auth:
        components.pop("securitySchemes", None)
    for unused in ("HTTPValidationError", "ValidationError"):  # replaced by Error; FastAPI's 422 shape is not ours
        if unused in schemas and unused not in repr(document["paths"]):
            del schemas[unused]
    return document


def _correct(operation: dict[str, Any], auth: bool) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    codes: set[int] = set()
    if operation.get("security"):
        codes.add(503)
        if auth:
            codes.add(401)
        else:
            del operation["security"]
    if "requestBody" in operation:
        codes |= {400, 422}
    if operation.get("parameters"):
        codes.add(422)
    for code in sorted(codes):
        responses.setdefault(str(code), {"description": SHARED_ERRORS[code]})
    for status, response in responses.items():
        if not status.startswith(("4", "5")):
            continue
        content = response.get("content", {}).get("application/json", {})
        if not content or "HTTPValidationError" in repr(content):
            if status == "422":
                response["description"] = SHARED_ERRORS[422]
            response["content"] = {"application/json": {"schema": ERROR_REF}}
