"""Which checkpoint scores which source: the ``--models`` setting, a watched directory, and how names match.

``--models`` is JSON (``{"hdfs": "ckpt/hdfs", "web-*": "ckpt/web"}``) or a directory whose subdirectories are
checkpoints named after the source (or glob) they score. A source takes the checkpoint of its exact name, else of
the matching glob with the most literal characters (ties: the lesser pattern), else ``--checkpoint``. Pure code:
the registry in Redis (model_registry.py) and the loaded models (model_router.py) build on it.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from service.windows.ids import BadWindowName, check_source

Origin = Literal["settings", "directory", "api"]
WILDCARDS = "*?["
MANIFEST = "manifest.json"


class ModelsError(ValueError):
    """A mapping or registration that cannot work; the message names the source pattern or path."""


@dataclass(frozen=True)
class Registration:
    """One source pattern's checkpoint; ``stamp`` changes when the same path must be loaded again."""

    checkpoint: str
    origin: Origin
    stamp: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Registration:
        raw = json.loads(text)
        return cls(str(raw["checkpoint"]), raw["origin"], str(raw.get("stamp", "")))


def is_glob(pattern: str) -> bool:
    return any(c in pattern for c in WILDCARDS)


def check_pattern(pattern: str) -> str:
    """A source name, or a glob over source names (``*``, ``?``, ``[...]``): the source characters' rules apply."""
    try:
        check_source(pattern)
    except BadWindowName as exc:
        raise ModelsError(f"source pattern: {exc}") from None
    return pattern


def best_match(source: str, patterns: Iterable[str]) -> str | None:
    """The exact name, else the matching glob with the most literal characters, else None."""
    found: list[tuple[int, str]] = []
    for pattern in patterns:
        if pattern == source:
            return pattern
        if is_glob(pattern) and fnmatch.fnmatchcase(source, pattern):
            literal = len(pattern) - sum(pattern.count(c) for c in WILDCARDS)
            found.append((-literal, pattern))
    return min(found)[1] if found else None


def unmatched_globs(patterns: Iterable[str], sources: Iterable[str]) -> list[str]:
    """Globs that match none of ``sources`` (a typo, or a source not seen yet)."""
    known = list(sources)
    return [p for p in patterns if is_glob(p) and not any(fnmatch.fnmatchcase(s, p) for s in known)]


def checkpoint_stamp(path: Path) -> str:
    """Changes when a checkpoint is replaced in place: its manifest's size and modification time."""
    try:
        stat = (path / MANIFEST).stat()
    except OSError:
        return "missing"
    return f"{stat.st_size}-{stat.st_mtime_ns}"


def scan_directory(directory: Path) -> dict[str, Registration]:
    """Each subdirectory as the checkpoint of the source (or glob) it is named after; files and names that cannot
    be sources are skipped (a checkpoint that does not load is reported by the workers that try)."""
    out: dict[str, Registration] = {}
    for child in sorted(directory.iterdir()):
        if not child.is_dir() or child.name.startswith("."):
            continue
        try:
            check_pattern(child.name)
        except ModelsError:
            continue
        out[child.name] = Registration(str(child.resolve()), "directory", checkpoint_stamp(child))
    return out


@dataclass(frozen=True)
class ModelsSetting:
    """``--models`` read: a static mapping (JSON) or a directory to watch; ``enabled`` False when empty."""

    mapping: Mapping[str, Registration]
    directory: Path | None
    enabled: bool

    @classmethod
    def parse(cls, text: str) -> ModelsSetting:
        text = text.strip()
        if not text:
            return cls({}, None, False)
        if text.startswith("{"):
            try:
                raw = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ModelsError(f"not JSON: {exc}") from None
            mapping: dict[str, Registration] = {}
            for pattern, path in raw.items():
                check_pattern(pattern)
                if not isinstance(path, str) or not path:
                    raise ModelsError(f"{pattern}: the checkpoint must be a directory path, not {path!r}")
                folder = Path(path).expanduser()
                if not (folder / MANIFEST).is_file():
                    raise ModelsError(f"{pattern}: checkpoint {path} not found ({MANIFEST} missing)")
                mapping[pattern] = Registration(str(folder.resolve()), "settings", checkpoint_stamp(folder))
            return cls(mapping, None, True)
        directory = Path(text).expanduser()
        if not directory.is_dir():
            raise ModelsError(f"{text} is neither a JSON object nor a directory of checkpoints")
        return cls({}, directory.resolve(), True)
