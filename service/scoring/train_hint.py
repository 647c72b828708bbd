"""Which model each source is scored by, and for a source the model does not know, the command that trains its own.

``GET /sources`` (and the Sources table of ``/ui``) adds to every source ``model`` (the pattern of the model
registered for it, null: the default checkpoint) and, for a source whose vocabulary coverage is judged low
(``unknown_to_model``) and which has no model of its own, ``train``: the exact ``logllm train --from-service``
command, plus what is still missing for it to work (the sample off, the service started without ``--models``).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

from service.records.normal_sample import NormalSample
from service.scoring.model_registry import ModelRegistry
from service.scoring.models import ModelsError, ModelsSetting, best_match
from service.state import ServiceState

TRAIN_HINT = "train a model for this source"


def models_enabled(state: ServiceState) -> ModelsSetting | None:
    try:
        setting = ModelsSetting.parse(state.settings.models)
    except ModelsError:  # checked at start; a directory gone since serves the models already loaded
        return None
    return setting if setting.enabled else None


async def model_patterns(state: ServiceState, setting: ModelsSetting | None) -> list[str]:
    """The source patterns that have a model of their own: ``--models``' mapping (``setting``) and the registry's."""
    if setting is None:
        return []
    _, entries = await ModelRegistry(state.store.redis, state.store.config.key_prefix).entries()
    return sorted({*setting.mapping, *entries})


def train_command(base_url: str, source: str, auth: bool) -> str:
    """The command, as the operator would paste it; the token comes from an env var, never from here."""
    words = ["logllm", "train", "--from-service", base_url.rstrip("/"), "--source", source, "--unlabeled",
             "--register", "--output", f"runs/{source}"]  # fmt: skip
    command = shlex.join(words)
    return command + ' --token "$LOGLLM_TOKEN"' if auth else command


async def add_training_hints(state: ServiceState, items: Sequence[dict[str, Any]], base_url: str) -> None:
    """``model`` on every item; ``train`` on the ones that need a model of their own."""
    setting = models_enabled(state)
    patterns = await model_patterns(state, setting)
    sample = NormalSample(state.store, state.settings.keep_normal_sample)
    for item in items:
        item["model"] = best_match(item["source"], patterns)
        item["train"] = None
        if not item.get("unknown_to_model") or item["model"] is not None:
            continue
        kept, _ = await sample.size(item["source"])
        missing = []
        if not kept:
            missing.append("no normal window of it kept yet: start the service with --keep-normal-sample N")
        if setting is None:
            missing.append("--register needs the service started with --models")
        item["train"] = {
            "hint": TRAIN_HINT,
            "command": train_command(base_url, item["source"], state.settings.auth_token is not None),
            "sample_windows": kept,
            "missing": missing,
        }
