"""The training vocabulary of a checkpoint and the novelty rule built on it.

A preprocessed message (variables replaced by ``<*>``) is a template. A checkpoint records, with the number of
training windows that held each, the templates of its *normal* training windows and, separately, those seen only
in anomalous ones. A window holding a template outside the normal vocabulary (and outside any patterns a source
has learned since) is ``novel``, or ``known_anomalous`` when training saw it only in anomalous windows: the model
learned the shape of sessions, not the meaning of lines, so an error line it never saw can score low.

The file sits beside ``manifest.json``, which names it and holds its SHA-256 under ``"vocabulary"``. This module
needs no torch, so the service can apply the same rule (``window_novelty`` + ``decide``) as ``logllm score``.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

VOCABULARY_FILE = "vocabulary.json"
FORMAT = "logllm-vocabulary/1"
MANIFEST = "manifest.json"
NoveltyMode = Literal["flag", "annotate", "off"]
NOVEL = "novel_template"
KNOWN_ANOMALOUS = "known_anomalous_template"


class VocabularyError(RuntimeError):
    """The vocabulary file is missing, malformed, or not the one the manifest hashed."""


@dataclass
class Vocabulary:
    """Template -> number of training windows holding it; ``anomalous_only`` never occurred in a normal window."""

    normal: dict[str, int]
    anomalous_only: dict[str, int]
    windows: dict[str, int] = field(default_factory=dict)  # {"normal": n, "anomalous": m} windows counted
    preprocess_version: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "preprocess_version": self.preprocess_version,
            "windows": self.windows,
            "normal": self.normal,
            "anomalous_only": self.anomalous_only,
        }


def build_vocabulary(windows: Iterable[tuple[Sequence[str], int]], preprocess_version: str = "") -> Vocabulary:
    """Count each template once per window it occurs in, by the window's label (0 normal, 1 anomalous)."""
    normal: Counter[str] = Counter()
    anomalous: Counter[str] = Counter()
    counted = {"normal": 0, "anomalous": 0}
    for messages, label in windows:
        (anomalous if label else normal).update(set(messages))
        counted["anomalous" if label else "normal"] += 1
    only = Counter({t: n for t, n in anomalous.items() if t not in normal})
    return Vocabulary(dict(normal.most_common()), dict(only.most_common()), counted, preprocess_version)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def attach_vocabulary(directory: Path, vocabulary: Vocabulary) -> dict[str, Any]:
    """Write the vocabulary beside the checkpoint's manifest and name and hash it there; returns that entry."""
    path = directory / VOCABULARY_FILE
    path.write_text(json.dumps(vocabulary.to_json(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    entry = {
        "file": VOCABULARY_FILE,
        "sha256": _digest(path),
        "normal_templates": len(vocabulary.normal),
        "anomalous_only_templates": len(vocabulary.anomalous_only),
    }
    manifest_path = directory / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest["vocabulary"] = entry
    partial = manifest_path.with_suffix(".json.partial")
    partial.write_text(json.dumps(manifest, indent=2) + "\n")
    partial.replace(manifest_path)  # a reader never sees a manifest naming a file that is not there yet
    return entry


def load_vocabulary(directory: Path | str) -> Vocabulary | None:
    """The checkpoint's vocabulary, checked against the manifest's hash; ``None`` for a checkpoint without one."""
    directory = Path(directory)
    try:
        entry = json.loads((directory / MANIFEST).read_text()).get("vocabulary")
    except (OSError, ValueError) as exc:
        raise VocabularyError(f"{directory / MANIFEST}: cannot read the manifest ({exc})") from exc
    if not entry:
        return None
    path = directory / str(entry.get("file", VOCABULARY_FILE))
    if not path.is_file():
        raise VocabularyError(f"{directory}: the manifest names vocabulary {path.name}, which is missing")
    if _digest(path) != entry.get("sha256"):
        raise VocabularyError(f"{path}: SHA-256 differs from the manifest's; rebuild it with `logllm vocab`")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("format") != FORMAT:
            raise VocabularyError(f"{path}: format {raw.get('format')!r}, expected {FORMAT!r}")
        return Vocabulary(
            normal={str(k): int(v) for k, v in raw["normal"].items()},
            anomalous_only={str(k): int(v) for k, v in raw["anomalous_only"].items()},
            windows={str(k): int(v) for k, v in raw.get("windows", {}).items()},
            preprocess_version=str(raw.get("preprocess_version", "")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise VocabularyError(f"{path}: malformed vocabulary ({exc})") from exc


@dataclass(frozen=True)
class Novelty:
    """The templates of one window that training never saw in a normal window, in order of first appearance."""

    novel: tuple[str, ...] = ()
    known_anomalous: tuple[str, ...] = ()

    @property
    def reason(self) -> str | None:
        """``known_anomalous_template`` first (training saw it fail), then ``novel_template``; None if neither."""
        if self.known_anomalous:
            return KNOWN_ANOMALOUS
        return NOVEL if self.novel else None


def window_novelty(
    messages: Sequence[str], vocabulary: Vocabulary, learned: Collection[str] = frozenset()
) -> Novelty:
    """Templates in neither the normal vocabulary nor ``learned`` (a source's patterns, online), sorted by kind."""
    novel: dict[str, None] = {}
    known: dict[str, None] = {}
    for message in messages:
        if message in vocabulary.normal or message in learned:
            continue
        (known if message in vocabulary.anomalous_only else novel)[message] = None
    return Novelty(tuple(novel), tuple(known))


def decide(score: float, threshold: float, novelty: Novelty, mode: NoveltyMode) -> tuple[bool, str | None]:
    """``(anomalous, reason)``: with ``flag`` a novel window is anomalous whatever its score; else the model's call.

    The reason is the novelty reason when novelty decided, ``"model"`` when the score did, ``None`` for normal.
    """
    if mode == "flag" and novelty.reason is not None:
        return True, novelty.reason
    return (True, "model") if score >= threshold else (False, None)
