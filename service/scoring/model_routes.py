"""``/models``: register, replace or remove a source's model at run time; see what each worker serves.

The route checks what it can without loading (the pattern, the checkpoint's manifest and files, a glob that matches
no source seen) and writes the registry; every worker loads the change within ``models_poll_s`` and reports it,
and one that fails to load keeps its old model serving and says why in ``GET /models``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from model.checkpoint_files import CheckpointFilesError, check_files
from service.http_errors import ApiError
from service.scoring.model_registry import FromDirectory, ModelRegistry
from service.scoring.models import ModelsError, ModelsSetting, Registration, check_pattern, is_glob, unmatched_globs
from service.state import ServiceState, State, require_token

router = APIRouter(prefix="/models", dependencies=[Depends(require_token)])


class ModelRequest(BaseModel):
    source: str = Field(description="a source name, or a glob over source names (* ? [...])", max_length=256)
    checkpoint: str | None = Field(
        description="checkpoint directory on the workers' file system; null removes the source's model", max_length=4096
    )
    allow_unmatched: bool = Field(
        default=False, description="register a glob that matches no source seen so far (a source still to come)"
    )


def _setting(state: ServiceState) -> ModelsSetting:
    setting = ModelsSetting.parse(state.settings.models)
    if not setting.enabled:
        raise ApiError(
            409, "models_off", "this service serves one model; start it with --models (JSON, '{}' or a directory)"
        )
    return setting


def _registry(state: ServiceState) -> ModelRegistry:
    return ModelRegistry(state.store.redis, state.store.config.key_prefix)


OFF: dict[int | str, dict[str, Any]] = {409: {"description": "the service runs without --models"}}


@router.get(
    "", summary="The registered models, and what each worker serves and failed to load", responses=OFF
)
async def list_models(state: State) -> dict[str, Any]:
    setting = _setting(state)
    registry = _registry(state)
    generation, entries = await registry.entries()
    mapping = {**setting.mapping, **entries}
    sources = await state.patterns.sources() if state.patterns is not None else []
    return {
        "generation": generation,
        "default": str(state.settings.checkpoint),
        "directory": str(setting.directory) if setting.directory is not None else None,
        "models": {p: {"checkpoint": r.checkpoint, "origin": r.origin} for p, r in sorted(mapping.items())},
        "unmatched_globs": unmatched_globs(mapping, sources),
        "workers": await registry.reports(max_age_s=max(30.0, 10 * state.settings.models_poll_s)),
    }


@router.post(
    "",
    status_code=202,
    summary="Register, replace (the same source again) or remove (checkpoint null) a source's model",
    responses={
        409: {"description": "the service runs without --models, or the model comes from the watched directory"},
        422: {"description": "a bad source pattern, a missing or partial checkpoint, or a glob matching no source"},
    },
)
async def register_model(request: ModelRequest, state: State) -> dict[str, Any]:
    _setting(state)
    try:
        pattern = check_pattern(request.source)
    except ModelsError as exc:
        raise ApiError(422, "bad_source", str(exc), field="source") from None
    registry = _registry(state)
    if request.checkpoint is None:
        return {"source": pattern, "removed": True, "generation": await _remove(registry, pattern)}
    path = Path(request.checkpoint).expanduser().resolve()
    try:
        manifest = await asyncio.to_thread(check_files, path)
    except CheckpointFilesError as exc:
        raise ApiError(422, "bad_checkpoint", str(exc), field="checkpoint") from None
    if is_glob(pattern) and not request.allow_unmatched and state.patterns is not None:
        sources = await state.patterns.sources()
        if unmatched_globs([pattern], sources):
            seen = ", ".join(sources[:10]) or "none yet"
            raise ApiError(
                422, "glob_matches_nothing",
                f"source glob {pattern!r} matches no source seen (seen: {seen}); set allow_unmatched to register it"
                " for sources still to come", field="source",
            )  # fmt: skip
    stamp = f"{manifest.get('version')}@{asyncio.get_running_loop().time():.6f}"  # a new stamp: POSTing again reloads
    generation = await registry.register(pattern, Registration(str(path), "api", stamp))
    return {"source": pattern, "checkpoint": str(path), "version": manifest.get("version"), "generation": generation}


@router.delete(
    "/{source}",
    summary="Remove a source's model: its windows go to the default model again",
    responses={
        404: {"description": "no model is registered for this source pattern"},
        409: {"description": "the service runs without --models, or the model comes from the watched directory"},
    },
)
async def remove_model(source: str, state: State) -> dict[str, Any]:
    _setting(state)
    return {"source": source, "removed": True, "generation": await _remove(_registry(state), source)}


async def _remove(registry: ModelRegistry, pattern: str) -> int:
    try:
        generation = await registry.remove(pattern)
    except FromDirectory:
        raise ApiError(
            409, "from_directory", f"the model of {pattern!r} comes from the watched models directory; remove it there",
            field="source",
        ) from None  # fmt: skip
    if generation is None:
        raise ApiError(404, "not_registered", f"no model is registered for {pattern!r}", field="source")
    return generation
