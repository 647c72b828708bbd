"""Correcting verdicts: labels on records, their export as training data, and mutes of false positives."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from model.vocab import Novelty
from service.http_errors import ApiError
from service.records.query_routes import records_of
from service.state import ServiceState, State, require_token
from service.windows.ids import DEFAULT_SOURCE

router = APIRouter(dependencies=[Depends(require_token)])
MAX_EXPORT = 100_000


class FeedbackBody(BaseModel):
    label: Literal["normal", "anomalous"] = Field(description="what the window really was")
    note: str | None = Field(default=None, max_length=2000)
    mute: bool = Field(
        default=False, description="label normal on an anomalous window: later windows with the same set of"
        " distinct messages get status muted",
    )  # fmt: skip


@router.post(
    "/sequences/{window_id:path}/feedback",
    summary="Label a window (the last label wins); mute a false positive",
    responses={404: {"description": "no record"}, 409: {"description": "mute on a window that cannot be muted"}},
)
async def post_feedback(window_id: str, body: FeedbackBody, state: State) -> dict[str, Any]:
    records = records_of(state)
    current = await records.get(window_id, with_lines=False)
    if current is None:
        raise ApiError(404, "unknown_record", f"no record of window {window_id[:200]!r} (not scored yet, or expired)")
    if body.mute:
        if body.label != "normal":
            raise ApiError(400, "invalid_mute", "mute applies to false positives: send label 'normal'", field="mute")
        if current["status"] not in ("anomalous", "muted") or not current["lines_kept"]:
            raise ApiError(
                409, "not_mutable", f"window {window_id[:200]!r} has status {current['status']!r} and"
                f"{'' if current['lines_kept'] else ' no kept lines'}; only anomalous windows can be muted",
                field="mute",
            )  # fmt: skip
    now = time.time()
    stored = await records.set_feedback(window_id, body.label, body.note or "", now)
    if stored is None:  # expired between the two calls
        raise ApiError(404, "unknown_record", f"no record of window {window_id[:200]!r} (expired)")
    state.metrics.feedback.labels(label=body.label).inc()
    mute_id = None
    if body.mute:
        mute_id = await records.add_mute(stored, body.note or "", now)
        state.metrics.mutes_created.inc()
    learned = await learn_novelty(state, stored, "mute" if body.mute else "feedback") if body.label == "normal" else []
    return {"id": window_id, "label": body.label, "at": now, "mute_id": mute_id, "learned": learned}


async def learn_novelty(state: ServiceState, record: dict[str, str], how: str) -> list[str]:
    """A window said to be normal teaches its source the templates, session paths, counts and steps the novelty rule
    found in it; their ids (a path's is ``idA>idB``, a count's ``#idA-idB=d``, a missing step's ``idA~idB``).

    Not in feedback.lua: a source's patterns live in its own partition slot, the record in its window's."""
    if state.patterns is None or not record.get("novelty"):
        return []
    found = Novelty.from_json(json.loads(record["novelty"]))
    source = record.get("source") or DEFAULT_SOURCE
    learned = await state.patterns.learn(source, [*found.known_anomalous, *found.novel], how)
    findings = await state.patterns.learn_session_findings(source, found.transitions, found.counts, found.missing)
    return learned + findings


@router.get(
    "/feedback",
    summary="Labeled windows as generic training JSONL (logllm train --dataset generic)",
    response_class=Response,
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
async def export_feedback(
    state: State,
    since: Annotated[float, Query(ge=0, description="labeled at or after (unix seconds)")] = 0.0,
    limit: Annotated[int, Query(ge=1, le=MAX_EXPORT)] = 10_000,
) -> Response:
    """One JSON object per line: ``{"sequence_id", "message", "label"}`` and the line's ``timestamp`` when it was
    sent with one (the generic format takes it); a window's lines share its id.

    Labeled windows whose lines were not kept (normal windows, by default) cannot be exported; the header
    ``X-Logllm-Without-Lines`` counts them.
    """
    labeled = await records_of(state).feedback_since(since, limit)
    out: list[str] = []
    without = 0
    for record in labeled:
        if not record["lines"]:
            without += 1
            continue
        label = record["feedback"]["label"]
        out.extend(
            json.dumps(
                {"sequence_id": record["id"], "message": line["line"], "label": label}
                | ({"timestamp": line["timestamp"]} if "timestamp" in line else {})
            )
            + "\n"
            for line in record["lines"]
        )
    return Response(
        "".join(out),
        media_type="application/x-ndjson",
        headers={"X-Logllm-Windows": str(len(labeled) - without), "X-Logllm-Without-Lines": str(without)},
    )


@router.get("/mutes", summary="Active mutes: sets of distinct messages whose windows are not anomalies")
async def list_mutes(state: State) -> dict[str, Any]:
    return {"mutes": await records_of(state).mutes()}


@router.delete("/mutes/{mute_id}", summary="Remove a mute", responses={404: {"description": "no such mute"}})
async def delete_mute(mute_id: str, state: State) -> dict[str, Any]:
    if not await records_of(state).delete_mute(mute_id):
        raise ApiError(404, "unknown_mute", f"no mute {mute_id[:80]!r}", field="mute_id")
    return {"id": mute_id, "deleted": True}
