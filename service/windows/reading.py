"""The served checkpoint's reading (model/reading.py) applied to ``logllm serve``'s settings, with origins.

``logllm serve`` calls ``with_checkpoint_reading`` once at start: every reading setting (log format, window mode,
session pattern, window size and step) that no flag and no ``LOGLLM_`` variable gives comes from the checkpoint's
manifest, so a first run with README's defaults reads lines the way the model was trained. ``--sources`` still
overrides any of them per source. Settings built in code (tests, ``create_app``) are left as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from model.reading import READING_FIELDS, describe_reading, manifest_reading, resolve_reading
from service.settings import ServiceSettings

log = logging.getLogger(__name__)


class ReadingError(ValueError):
    """The checkpoint records a reading these settings refuse (a hand-edited manifest)."""


def with_checkpoint_reading(
    settings: ServiceSettings, flags: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> ServiceSettings:
    """``settings`` (built from ``flags`` and the environment) with the checkpoint's reading for every reading
    field neither gives, and the origin of each recorded. A stand-in scorer (``--scorer``) is no checkpoint:
    its defaults stay."""
    recorded: dict[str, Any] = {}
    if not settings.scorer:
        recorded = manifest_reading(settings.checkpoint)
        if not recorded and not (Path(settings.checkpoint) / "manifest.json").is_file():
            log.warning("checkpoint %s not found here: reading lines with the defaults", settings.checkpoint)
    taken, origins = resolve_reading(READING_FIELDS, flags, recorded, environ)
    out = settings
    if taken:
        try:
            out = ServiceSettings(**{**flags, **taken})
        except ValidationError as exc:
            raise ReadingError(f"{settings.checkpoint}/manifest.json: reading {taken}: {exc}") from None
    out._reading_origins = dict(origins)
    return out


def reading_summary(settings: ServiceSettings) -> list[str]:
    """The start-up log lines: the global reading with each setting's origin, then each ``--sources`` override."""
    values = {name: getattr(settings, name) for name in READING_FIELDS}
    lines = [describe_reading(values, {name: settings.reading_origin(name) for name in READING_FIELDS})]
    for name, over in settings.sources.items():
        given = {key: value for key, value in over.model_dump(exclude_none=True).items() if key in READING_FIELDS}
        if given:
            lines.append(f"source {name}: " + describe_reading(given, dict.fromkeys(given, "sources")))
    return lines
