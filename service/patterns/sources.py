"""``GET /sources``: each source as the service reads it, and whether the served model knows its lines.

Per source: its log format and windowing with where each came from (a flag, an env var, the checkpoint, the
default, ``--sources``, or ``auto`` with the format it decided), the lines and windows scored so far, its novelty
warm-up, and its vocabulary coverage: the share of its recent lines (about ``COVERAGE_RECENT_LINES``) whose
template the checkpoint's vocabulary knows, counted by the classifier's pattern step (keeper.py, update.lua).
A source judged (``coverage_min_lines`` lines) under ``coverage_warn_below`` is flagged: the model was not
trained on logs like these, so its verdicts there say little, and the answer is to train one for them.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request

from model.reading import READING_FIELDS
from service.intake.formats import FormatDecision
from service.patterns.keeper import KNOWN_COVERAGE, UNKNOWN_SOURCE
from service.scoring.train_hint import add_training_hints
from service.settings import ServiceSettings
from service.state import ServiceState, State, require_token
from service.windows.ids import DEFAULT_SOURCE

router = APIRouter(dependencies=[Depends(require_token)])
WINDOWING_FIELD = {"log_format": "log_format", "window_mode": "mode", "session_pattern": "session_pattern",
                   "window_size": "size", "window_step": "step"}  # fmt: skip  # settings name -> Windowing field


def reading_of(settings: ServiceSettings, source: str, decision: FormatDecision | None) -> dict[str, Any]:
    """The source's reading settings, each ``{"value", "origin"}``; an auto format adds what it decided."""
    windowing = settings.windowing(None if source == DEFAULT_SOURCE else source)
    override = settings.sources.get(source)
    out: dict[str, Any] = {}
    for name in READING_FIELDS:
        given = override is not None and getattr(override, name) is not None
        out[name] = {"value": getattr(windowing, WINDOWING_FIELD[name]),
                     "origin": "sources" if given else settings.reading_origin(name)}  # fmt: skip
    fmt = out["log_format"]
    if fmt["value"] == "auto":
        fmt["auto_origin"] = fmt["origin"]
        fmt["origin"] = "auto"
        fmt["value"] = decision.format if decision is not None else None  # None: no line of it seen yet
        fmt["detected_from_lines"] = decision.lines if decision is not None else 0
    return out


def _number(value: str | None) -> float | None:
    return float(value) if value else None


def describe(state: ServiceState, source: str, meta: dict[str, str], decision: FormatDecision | None,
             now: float) -> dict[str, Any]:  # fmt: skip
    """One source of ``GET /sources``."""
    settings = state.settings
    first_seen = _number(meta.get("first_seen"))
    judged_lines = _number(meta.get("cov_lines")) or 0.0
    known = _number(meta.get("cov_known"))
    coverage = known / judged_lines if known is not None and judged_lines > 0 else None
    judged = coverage is not None and judged_lines >= settings.coverage_min_lines
    unknown = judged and coverage is not None and coverage < settings.coverage_warn_below
    warm_until = first_seen + settings.novelty_warmup_s if first_seen is not None else None
    covered = judged and (coverage or 0.0) >= KNOWN_COVERAGE  # the worker skips such a source's warm-up (keeper)
    return {
        "source": source,
        "reading": reading_of(settings, source, decision),
        "lines": int(meta.get("lines") or 0),
        "windows": int(meta.get("windows") or 0),
        "first_seen": first_seen,
        "warming_up": warm_until is not None and now < warm_until and not covered,
        "warm_up_until": warm_until,
        "vocabulary_coverage": round(coverage, 4) if coverage is not None else None,
        "coverage_judged": judged,
        "unknown_to_model": unknown,
        "warning": UNKNOWN_SOURCE if unknown else None,
    }


@router.get(
    "/sources",
    summary="Sources: how each is read, what was scored, and whether the model knows its lines",
    description="Every source seen (or configured in --sources): its log format and windowing, each with its"
    " origin (flag, env, checkpoint, default, sources, auto), lines and windows scored, its novelty warm-up, and"
    " its vocabulary coverage (share of its recent lines whose template the checkpoint's vocabulary knows; null"
    " without a vocabulary or before its first scored window). `unknown_to_model`: judged and under"
    " coverage_warn_below. `model`: the pattern of the model registered for the source (null: the default"
    " checkpoint). `train`: for a source unknown to the model and without a model of its own, the `logllm train"
    " --from-service` command that trains and registers one, and what it still lacks (`missing`).",
)
async def list_sources(state: State, request: Request) -> dict[str, Any]:
    decisions = await state.formats.all() if state.formats is not None else {}
    names = set(decisions) | set(state.settings.sources)
    metas: dict[str, dict[str, str]] = {}
    if state.patterns is not None:
        names |= set(await state.patterns.sources())
        metas = await state.patterns.source_meta(sorted(names))
    now = time.time()
    items = [describe(state, name, metas.get(name, {}), decisions.get(name), now) for name in sorted(names)]
    await add_training_hints(state, items, state.settings.public_url or str(request.base_url))
    return {"items": items, "coverage_warn_below": state.settings.coverage_warn_below}
