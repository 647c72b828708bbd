"""``GET /sources/{source}/training-sample``: what ``logllm train --from-service`` trains a source's own model on.

Two kinds of windows, one JSON object per line: the source's kept normal windows (``--keep-normal-sample``,
normal_sample.py) and the windows operators labeled (``POST /sequences/{id}/feedback``) that still hold their lines.
A label wins over the sample: a kept window labeled since comes once, with its label.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from fastapi.responses import StreamingResponse

from service.http_errors import ApiError
from service.records.feedback_routes import MAX_EXPORT
from service.records.normal_sample import NormalSample
from service.records.query_routes import records_of
from service.state import ServiceState, State, require_token

router = APIRouter(dependencies=[Depends(require_token)])
SOURCE = Path(description="the source's name", pattern=r"^[^\s#:]+$", max_length=256)


async def known_sources(state: ServiceState) -> set[str]:
    """Every source the service has seen or configured: patterns, auto format decisions, --sources."""
    names = set(state.settings.sources)
    if state.patterns is not None:
        names |= set(await state.patterns.sources())
    if state.formats is not None:
        names |= set(await state.formats.all())
    return names


async def labeled_windows(state: ServiceState, source: str) -> tuple[list[dict[str, Any]], int]:
    """The source's labeled windows with their lines, oldest label first, and how many labeled ones had none."""
    labeled = [r for r in await records_of(state).feedback_since(0.0, MAX_EXPORT) if r["source"] == source]
    with_lines = [r for r in labeled if r.get("lines")]
    return with_lines, len(labeled) - len(with_lines)


def _line(x: dict[str, Any]) -> dict[str, Any]:
    return {"raw": x["raw"], "content": x["content"]} | ({"timestamp": x["timestamp"]} if "timestamp" in x else {})


@router.get(
    "/sources/{source:path}/training-sample",
    summary="A source's kept normal windows and its labeled windows, lines as shipped (NDJSON)",
    description="One JSON object per window: `{window_id, source, label, from, closed_at, lines: [{raw, content,"
    " timestamp?}]}`; `from` is `sample` (a window judged normal, kept by --keep-normal-sample: a uniform"
    " reservoir of at most N per source) or `feedback` (an operator's label, normal or anomalous, on a window whose"
    " lines were kept). Headers: X-Logllm-Sample-Windows, X-Logllm-Sample-Seen (normal windows offered to the"
    " sample so far), X-Logllm-Feedback-Windows, X-Logllm-Without-Lines (labeled windows whose lines were not kept),"
    " X-Logllm-Keep-Normal-Sample (this replica's setting). `logllm train --from-service` reads it.",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/x-ndjson": {}}},
        404: {"description": "the service has never seen this source"},
    },
)
async def training_sample(source: Annotated[str, SOURCE], state: State) -> StreamingResponse:
    sample = NormalSample(state.store, state.settings.keep_normal_sample)
    kept, seen = await sample.size(source)
    labeled, without = await labeled_windows(state, source)
    if not kept and not labeled and not without and source not in (known := await known_sources(state)):
        names = sorted(known)
        listed = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        raise ApiError(404, "unknown_source", f"no source {source!r} seen (sources: {listed or 'none yet'})",
                       field="source")  # fmt: skip
    labeled_ids = {r["id"] for r in labeled}

    async def body() -> AsyncIterator[bytes]:
        async for window in sample.windows(source):
            if window["window_id"] not in labeled_ids:
                yield _dump({"window_id": window["window_id"], "source": source, "label": "normal",
                             "from": "sample", "closed_at": window["closed_at"], "lines": window["lines"]})  # fmt: skip
        for record in labeled:
            yield _dump({"window_id": record["id"], "source": source, "label": record["feedback"]["label"],
                         "from": "feedback", "closed_at": record["closed_at"],
                         "lines": [_line(x) for x in record["lines"]]})  # fmt: skip

    headers = {
        "X-Logllm-Sample-Windows": str(kept),
        "X-Logllm-Sample-Seen": str(seen),
        "X-Logllm-Feedback-Windows": str(len(labeled)),
        "X-Logllm-Without-Lines": str(without),
        "X-Logllm-Keep-Normal-Sample": str(state.settings.keep_normal_sample),
    }
    return StreamingResponse(body(), media_type="application/x-ndjson", headers=headers)


def _dump(window: dict[str, Any]) -> bytes:
    return (json.dumps(window, ensure_ascii=False) + "\n").encode()
