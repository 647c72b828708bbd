"""The training vocabulary of a checkpoint and the novelty rule built on it.

A preprocessed message (variables replaced by ``<*>``) is a template. A checkpoint records, with the number of
training windows that held each, the templates of its *normal* training windows and, separately, those seen only
in anomalous ones. A window holding a template outside the normal vocabulary (and outside any patterns a source
has learned since) is ``novel``, or ``known_anomalous`` when training saw it only in anomalous windows: the model
learned the shape of sessions, not the meaning of lines, so an error line it never saw can score low.

For whole sessions (a session id, not fixed windows) the vocabulary also counts *transitions*: which template
follows which, with the session's start and end as ends of the chain. A session whose templates are all known can
still take a path no normal session took (a block written and never closed, a short session that stops after its
first steps): a transition seen in fewer than ``rare_transition`` normal training sessions makes the session
``novel_transition``. This is DeepLog's next-event check counted instead of learned; the trainer picks
``rare_transition`` on held-out normal sessions for the run's false-positive budget (0 turns the rule off).

The file sits beside ``manifest.json``, which names it and holds its SHA-256 under ``"vocabulary"``. This module
needs no torch, so the service can apply the same rule (``window_novelty`` + ``decide``) as ``logllm score``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
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
NOVEL_TRANSITION = "novel_transition"
Transition = tuple[str | None, str | None]  # (template, next template); None is the session's start or end
MAX_RARE_TRANSITION = 2  # the trainer tries unseen (1) and seen-once (2) transitions; more sessions: a normal path


class VocabularyError(RuntimeError):
    """The vocabulary file is missing, malformed, or not the one the manifest hashed."""


@dataclass
class Vocabulary:
    """Template -> number of training windows holding it; ``anomalous_only`` never occurred in a normal window."""

    normal: dict[str, int]
    anomalous_only: dict[str, int]
    windows: dict[str, int] = field(default_factory=dict)  # {"normal": n, "anomalous": m} windows counted
    preprocess_version: str = ""
    transitions: dict[Transition, int] | None = None  # normal sessions holding each transition; None: not sessions
    rare_transition: int = 0  # a transition in fewer normal sessions than this is novel; 0: rule off

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": FORMAT,
            "preprocess_version": self.preprocess_version,
            "windows": self.windows,
            "normal": self.normal,
            "anomalous_only": self.anomalous_only,
        }
        if self.transitions is not None:  # a list, since JSON keys cannot be pairs; null is a session's start/end
            out["transitions"] = [[a, b, n] for (a, b), n in self.transitions.items()]
            out["rare_transition"] = self.rare_transition
        return out


def session_transitions(messages: Sequence[str]) -> list[Transition]:
    """Each consecutive pair of templates, from the session's start (None) to its end (None)."""
    chain: list[str | None] = [None, *messages, None]
    return list(zip(chain, chain[1:], strict=False))


def build_vocabulary(
    windows: Iterable[tuple[Sequence[str], int]], preprocess_version: str = "", *, sessions: bool = False
) -> Vocabulary:
    """Count each template once per window it occurs in, by the window's label (0 normal, 1 anomalous).

    ``sessions``: the windows are whole sessions, so the transitions of the normal ones are counted too; the rule
    stays off (``rare_transition`` 0) until ``pick_rare_transition`` sets it.
    """
    normal: Counter[str] = Counter()
    anomalous: Counter[str] = Counter()
    transitions: Counter[Transition] = Counter()
    counted = {"normal": 0, "anomalous": 0}
    for messages, label in windows:
        (anomalous if label else normal).update(set(messages))
        counted["anomalous" if label else "normal"] += 1
        if sessions and not label:
            transitions.update(set(session_transitions(messages)))
    only = Counter({t: n for t, n in anomalous.items() if t not in normal})
    return Vocabulary(
        dict(normal.most_common()),
        dict(only.most_common()),
        counted,
        preprocess_version,
        dict(transitions.most_common()) if sessions else None,
    )


def pick_rare_transition(
    vocabulary: Vocabulary,
    held_out_normal: Sequence[Sequence[str]],
    max_fpr: float,
    flagged_by_model: Sequence[bool] | None = None,
) -> int:
    """The strictest rarity (1..MAX_RARE_TRANSITION) whose decisions stay within ``max_fpr`` on held-out normal
    sessions, counting every session flagged: by the template rule, the transition rule, or the model
    (``flagged_by_model``, one per session, at its threshold); 0 when not even unseen transitions fit.

    Rarity 1 flags transitions no normal training session took; 2 also those only one took, which in unlabeled
    data may be a fault that slipped in. Beyond that a transition is treated as a normal path.
    """
    if vocabulary.transitions is None or not held_out_normal:
        return 0
    model = list(flagged_by_model) if flagged_by_model is not None else [False] * len(held_out_normal)
    allowed = math.floor(max_fpr * len(held_out_normal) + 1e-9)
    picked = 0
    for rarity in range(1, MAX_RARE_TRANSITION + 1):
        trial = dataclasses.replace(vocabulary, rare_transition=rarity)
        pairs = zip(held_out_normal, model, strict=True)
        flagged = sum(by_model or window_novelty(w, trial).reason is not None for w, by_model in pairs)
        if flagged > allowed:
            break
        picked = rarity
    return picked


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
    if vocabulary.transitions is not None:
        entry["transitions"] = len(vocabulary.transitions)
        entry["rare_transition"] = vocabulary.rare_transition
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
        transitions = raw.get("transitions")
        return Vocabulary(
            normal={str(k): int(v) for k, v in raw["normal"].items()},
            anomalous_only={str(k): int(v) for k, v in raw["anomalous_only"].items()},
            windows={str(k): int(v) for k, v in raw.get("windows", {}).items()},
            preprocess_version=str(raw.get("preprocess_version", "")),
            transitions=None if transitions is None else {(_end(a), _end(b)): int(n) for a, b, n in transitions},
            rare_transition=int(raw.get("rare_transition", 0)),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise VocabularyError(f"{path}: malformed vocabulary ({exc})") from exc


def for_windows(vocabulary: Vocabulary, sessions: bool) -> Vocabulary:
    """The vocabulary as windows of this kind may use it: fixed windows' ends are cuts, so no path rule there."""
    if sessions or not vocabulary.rare_transition:
        return vocabulary
    return dataclasses.replace(vocabulary, rare_transition=0)


def _end(value: object) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class Novelty:
    """What one window holds that training never saw in a normal window, in order of first appearance."""

    novel: tuple[str, ...] = ()
    known_anomalous: tuple[str, ...] = ()
    transitions: tuple[Transition, ...] = ()  # rare transitions between known templates (sessions only)

    @property
    def reason(self) -> str | None:
        """``known_anomalous_template`` first (training saw it fail), then ``novel_template``, then
        ``novel_transition``; None if none."""
        if self.known_anomalous:
            return KNOWN_ANOMALOUS
        if self.novel:
            return NOVEL
        return NOVEL_TRANSITION if self.transitions else None

    def to_json(self) -> dict[str, Any]:
        """As verdicts, records and ``logllm score`` show it: ``null`` in a transition is a session's start or end."""
        return {
            "novel": list(self.novel),
            "known_anomalous": list(self.known_anomalous),
            "transitions": [list(pair) for pair in self.transitions],
        }

    @classmethod
    def from_json(cls, found: dict[str, Any]) -> Novelty:
        """Back from ``to_json`` (a missing key is empty: verdicts written before transitions existed)."""
        return cls(
            tuple(found.get("novel", ())),
            tuple(found.get("known_anomalous", ())),
            tuple((a, b) for a, b in found.get("transitions", ())),
        )


def window_novelty(
    messages: Sequence[str],
    vocabulary: Vocabulary,
    learned: Collection[str] = frozenset(),
    learned_transitions: Collection[Transition] = frozenset(),
) -> Novelty:
    """Templates in neither the normal vocabulary nor ``learned`` (a source's patterns, online), sorted by kind;
    with the transition rule on, the rare transitions between known templates not in ``learned_transitions``."""
    novel: dict[str, None] = {}
    known: dict[str, None] = {}
    for message in messages:
        if message in vocabulary.normal or message in learned:
            continue
        (known if message in vocabulary.anomalous_only else novel)[message] = None
    return Novelty(tuple(novel), tuple(known), rare_transitions(messages, vocabulary, learned_transitions))


def rare_transitions(
    messages: Sequence[str], vocabulary: Vocabulary, learned: Collection[Transition] = frozenset()
) -> tuple[Transition, ...]:
    """The session's transitions between known templates that fewer than ``rare_transition`` normal training
    sessions took and that are not ``learned``, in order of first appearance; none with the rule off."""
    if vocabulary.transitions is None or vocabulary.rare_transition <= 0:
        return ()
    rare: dict[Transition, None] = {}
    for pair in session_transitions(messages):
        if any(end is not None and end not in vocabulary.normal for end in pair):
            continue  # a template the vocabulary lacks is the finding already; its edges add nothing
        if pair not in learned and vocabulary.transitions.get(pair, 0) < vocabulary.rare_transition:
            rare[pair] = None
    return tuple(rare)


def decide(score: float, threshold: float, novelty: Novelty, mode: NoveltyMode) -> tuple[bool, str | None]:
    """``(anomalous, reason)``: with ``flag`` a novel window is anomalous whatever its score; else the model's call.

    The reason is the novelty reason when novelty decided, ``"model"`` when the score did, ``None`` for normal.
    """
    if mode == "flag" and novelty.reason is not None:
        return True, novelty.reason
    return (True, "model") if score >= threshold else (False, None)
