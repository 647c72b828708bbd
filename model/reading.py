"""How a checkpoint reads logs: the log format and windowing it was trained with (the manifest's ``reading``).

A model trained on HDFS message contents, one session per block, sees nonsense when it is handed whole lines,
headers included, or windows of 100 lines: the shipped one called nearly every window of such a stream
anomalous. So ``logllm train`` records how its windows were read, and ``logllm serve`` and ``logllm score`` take
each of those settings from the checkpoint unless a flag or an environment variable gives it (``--sources``
overrides any of them per source, as before). Every setting carries its origin, so both commands can say at
start what they use and why. Needs no torch: the service's api role reads it without loading the model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

from model.windows import HDFS_BLOCK_PATTERN

MANIFEST = "manifest.json"
READING_FIELDS = ("log_format", "window_mode", "session_pattern", "window_size", "window_step")
Origin = Literal["flag", "env", "checkpoint", "default"]
ENV_PREFIX = "LOGLLM_"


class DataLike(Protocol):
    """The data settings ``logllm train`` read its windows with (training.settings.DataSettings)."""

    @property
    def dataset(self) -> str: ...
    @property
    def log_format(self) -> str: ...
    @property
    def window_mode(self) -> str: ...
    @property
    def session_pattern(self) -> str: ...
    @property
    def window_size(self) -> int: ...
    @property
    def window_step(self) -> int: ...


def training_reading(settings: DataLike, sessions: bool) -> dict[str, Any]:
    """What a checkpoint trained on this data records: the format its lines' contents were cut with and how they
    were windowed (``sessions``: the loader made whole sessions). The HDFS benchmarks are HDFS contents in
    sessions by block id; the line-labeled logs are their own format in fixed windows; plain text is as given;
    users' JSON/CSV records carry the message alone (raw), in sessions by their own id field (no pattern)."""
    dataset = settings.dataset
    if dataset in ("hdfs-sessions", "hdfs"):
        return {"log_format": "hdfs", "window_mode": "session", "session_pattern": HDFS_BLOCK_PATTERN}
    fmt = dataset if dataset in ("bgl", "thunderbird", "liberty") else settings.log_format
    if dataset == "generic":
        fmt = "raw"
    if sessions:
        out: dict[str, Any] = {"log_format": fmt, "window_mode": "session"}
        if dataset in ("text", "service"):
            out["session_pattern"] = settings.session_pattern
        return out
    return {"log_format": fmt, "window_mode": "fixed", "window_size": settings.window_size,
            "window_step": settings.window_step}  # fmt: skip


def manifest_reading(directory: Path | str) -> dict[str, Any]:
    """The checkpoint's reading; ``{}`` for a checkpoint made before it was recorded, or no manifest there."""
    try:
        raw = json.loads((Path(directory) / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    recorded = raw.get("reading") if isinstance(raw, dict) else None
    if not isinstance(recorded, dict):
        return {}
    return {k: recorded[k] for k in READING_FIELDS if recorded.get(k) is not None}


def env_given(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``LOGLLM_<NAME>`` is set (pydantic-settings matches env names case-insensitively)."""
    wanted = (ENV_PREFIX + name).upper()
    return any(key.upper() == wanted for key in (os.environ if environ is None else environ))


def resolve_reading(
    fields: Collection[str],
    flags: Collection[str],
    recorded: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, Origin]]:
    """``(values to take from the checkpoint, origin of each field)``: a flag wins, then an env var, then the
    checkpoint's record, then the settings' default."""
    taken: dict[str, Any] = {}
    origins: dict[str, Origin] = {}
    for name in fields:
        if name in flags:
            origins[name] = "flag"
        elif env_given(name, environ):
            origins[name] = "env"
        elif name in recorded:
            taken[name] = recorded[name]
            origins[name] = "checkpoint"
        else:
            origins[name] = "default"
    return taken, origins


def describe_reading(values: Mapping[str, Any], origins: Mapping[str, str]) -> str:
    """``log_format=hdfs (checkpoint), window_mode=session (checkpoint), ...`` for the start-up log line."""
    return ", ".join(f"{name}={values[name]} ({origins.get(name, 'default')})" for name in values)
