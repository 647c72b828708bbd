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

Whole sessions also get a *count* rule, order-free and so blind to how logs of several hosts interleave: how
often each common template occurs, and the difference between each two such counts (one ``Receiving block`` per
``Received block``), take only a few values in normal sessions. A session showing a value no normal training
session showed is ``novel_count`` (invariant mining, counted instead of solved). A count that takes
``COUNT_FREE_VALUES`` or more values in normal sessions follows load (blocks served, deletions), not the protocol,
and is not checked. ``pick_session_rules`` switches both session rules on or off by cross-validation on the
normal training sessions plus the held-out ones, within the run's false-positive budget.

The third session rule clears instead of flagging: a session whose template counts are exactly those of a normal
training session (its *shape*) that no anomalous training session showed is normal whatever the model scores,
unless another rule flags it. The model learned the look of sessions, and a rare normal one can look like the
anomalies (HDFS: a block re-replicated, 15 of 3,496 normal training sessions, all scored 0.98 to 0.99999, beside
2,521 anomalous ones with the same templates); its counts tell them apart (HDFS: 54 normal shapes, none of the 334
anomalous ones, and none of the 1,347 anomalous validation sessions).

Fixed windows get rules of their own (model/window_rules.py): a template counted above what any normal training
window held (``novel_count``), and a step that always followed another within a few lines left out
(``missing_step``), both picked within the budget the same way.

The file sits beside ``manifest.json``, which names it and holds its SHA-256 under ``"vocabulary"``. This module
needs no torch, so the service can apply the same rule (``window_novelty`` + ``decide``) as ``logllm score``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from model.rule_folds import allowed_false_alarms, folds, not_flagged_by_model
from model.window_rules import (
    OFF,
    Follows,
    Step,
    excess_counts,
    max_counts,
    mine_steps,
    missing_steps,
    pick_window_rules,
)

VOCABULARY_FILE = "vocabulary.json"
FORMAT = "logllm-vocabulary/1"
MANIFEST = "manifest.json"
# unless_normal: a finding flags only when the model does not call the window clearly normal (score under
# ``CLEAR_NORMAL`` of its threshold); a template training saw only in anomalous windows always flags
NoveltyMode = Literal["flag", "annotate", "off", "unless_normal"]
CLEAR_NORMAL = 0.5  # a score under this share of the threshold is the model calling a window clearly normal
NOVEL = "novel_template"
KNOWN_ANOMALOUS = "known_anomalous_template"
NOVEL_TRANSITION = "novel_transition"
NOVEL_COUNT = "novel_count"
MISSING_STEP = "missing_step"
Transition = tuple[str | None, str | None]  # (template, next template); None is the session's start or end
CountFeature = tuple[str, str | None]  # count(a) - count(b); b None: count(a) itself
CountFinding = tuple[str, str | None, int]  # a count feature and the value a session showed
Shape = tuple[tuple[str, int], ...]  # a session's templates with their counts, sorted: its order left out
MAX_RARE_TRANSITION = 2  # the trainer tries unseen (1) and seen-once (2) transitions; more sessions: a normal path
COUNT_FREE_VALUES = 5  # a count with this many values across normal sessions follows load: never checked
MAX_COUNTED_TEMPLATES = 40  # the count rule reads the templates most normal sessions hold (40: 820 pair counts)


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
    counts: dict[CountFeature, frozenset[int]] | None = None  # values of the checked counts in normal sessions
    count_rule: bool = False  # whether a count value outside ``counts`` makes a session novel
    shapes: frozenset[Shape] | None = None  # normal training sessions' shapes no anomalous one showed
    shape_rule: bool = False  # whether a session of one of ``shapes`` is normal whatever the model scores
    window_max: dict[str, int] | None = None  # fixed windows: each template's highest count in a normal one
    count_slack: int = OFF  # a count above window_max plus this is novel; OFF: rule off
    follows: Follows | None = None  # fixed windows: A -> (B within D lines, support) in every normal one
    step_support: int = OFF  # the least support of the step rules checked; OFF: rule off

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
        if self.counts is not None:
            out["counts"] = [[a, b, sorted(values)] for (a, b), values in self.counts.items()]
            out["count_rule"] = self.count_rule
        if self.shapes is not None:
            out["shapes"] = [[[t, n] for t, n in shape] for shape in sorted(self.shapes)]
            out["shape_rule"] = self.shape_rule
        if self.window_max is not None:
            out["window_max"] = self.window_max
            out["count_slack"] = self.count_slack
        if self.follows is not None:  # a list, as for transitions
            out["follows"] = [[a, b, d, n] for a, found in self.follows.items() for b, d, n in found]
            out["step_support"] = self.step_support
        return out


def session_shape(messages: Sequence[str]) -> Shape:
    """The session's templates with how often each occurs, in template order."""
    return tuple(sorted(Counter(messages).items()))


def session_transitions(messages: Sequence[str]) -> list[Transition]:
    """Each consecutive pair of templates, from the session's start (None) to its end (None)."""
    chain: list[str | None] = [None, *messages, None]
    return list(zip(chain, chain[1:], strict=False))


def build_vocabulary(
    windows: Iterable[tuple[Sequence[str], int]], preprocess_version: str = "", *, sessions: bool = False
) -> Vocabulary:
    """Count each template once per window it occurs in, by the window's label (0 normal, 1 anomalous).

    ``sessions``: the windows are whole sessions, so the transitions and counts of the normal ones are kept too;
    both rules stay off until ``pick_session_rules`` sets them. So are the shapes of the normal ones that no
    anomalous one showed, with the shape rule on: it clears only what training saw normal and never anomalous.
    Otherwise (fixed windows) the normal windows' count ceilings and steps are kept, off until
    ``with_window_rules`` sets them.
    """
    normal: Counter[str] = Counter()
    anomalous: Counter[str] = Counter()
    transitions: Counter[Transition] = Counter()
    shapes: Counter[Shape] = Counter()  # normal sessions' template counts, deduplicated
    anomalous_shapes: set[Shape] = set()
    counted = {"normal": 0, "anomalous": 0}
    fixed: list[Sequence[str]] = []  # the normal fixed windows, for their rules
    for messages, label in windows:
        (anomalous if label else normal).update(set(messages))
        if not sessions and not label:
            fixed.append(messages)
        counted["anomalous" if label else "normal"] += 1
        if sessions and not label:
            transitions.update(set(session_transitions(messages)))
            shapes[session_shape(messages)] += 1
        elif sessions:
            anomalous_shapes.add(session_shape(messages))
    only = Counter({t: n for t, n in anomalous.items() if t not in normal})
    templates = sorted(normal, key=lambda t: (-normal[t], t))[:MAX_COUNTED_TEMPLATES]  # ties: by name, any run
    return Vocabulary(
        dict(normal.most_common()),
        dict(only.most_common()),
        counted,
        preprocess_version,
        dict(transitions.most_common()) if sessions else None,
        counts=count_values([dict(shape) for shape in shapes], templates) if sessions else None,
        shapes=frozenset(shapes.keys() - anomalous_shapes) if sessions else None,
        shape_rule=sessions,
        window_max=None if sessions else max_counts(fixed),
        follows=None if sessions else mine_steps(fixed),
    )


def count_values(sessions: Sequence[dict[str, int]], templates: Sequence[str]) -> dict[CountFeature, frozenset[int]]:
    """Each template's count and each two templates' count difference, with the values normal ``sessions`` (as
    template -> count) showed; only the counts with fewer than ``COUNT_FREE_VALUES`` values are kept."""
    seen: dict[CountFeature, set[int]] = {}
    for session in sessions:
        values = [session.get(t, 0) for t in templates]
        for i, first in enumerate(templates):
            seen.setdefault((first, None), set()).add(values[i])
            for j in range(i + 1, len(templates)):
                seen.setdefault((first, templates[j]), set()).add(values[i] - values[j])
    kept = {feature: frozenset(v) for feature, v in seen.items() if len(v) < COUNT_FREE_VALUES}
    return dict(sorted(kept.items(), key=lambda item: item[0][1] is not None))  # single counts first


SESSION_REASONS = (NOVEL_TRANSITION, NOVEL_COUNT)  # the session rules' own findings: no template rule finding
# (count rule, path rarity), strictest first
SESSION_RULES = tuple((counts, rarity) for counts in (True, False) for rarity in range(MAX_RARE_TRANSITION, -1, -1))


def pick_session_rules(
    vocabulary: Vocabulary,
    train_normal: Sequence[Sequence[str]],
    held_out_normal: Sequence[Sequence[str]],
    max_fpr: float,
    flagged_by_model: Sequence[bool] | None = None,
    seed: int = 0,
) -> Vocabulary:
    """``vocabulary`` with the strictest session rules (count rule on or off, path rarity 2, 1 or off; counts
    first, they proved the stronger) whose false alarms fit ``max_fpr`` on every normal session not used to learn
    the rule (model/rule_folds.py): each fold of ``train_normal`` checked against a vocabulary of the others, plus
    ``held_out_normal`` against ``vocabulary``, where the model's own flags (``flagged_by_model``) count too.

    The budget is for what is picked here, the threshold and these rules: a session the always-on template rule
    flags anyway costs nothing more. The validation part alone holds a few hundred sessions, too few to tell a
    rule with a 0.1% false-alarm rate from one with 1%; the folds give the estimate thousands.
    """
    if vocabulary.transitions is None or not (train_normal or held_out_normal):
        return vocabulary
    checks: list[tuple[Vocabulary, Counter[tuple[str, ...]], int]] = [  # (vocabulary, sessions, model flags)
        (build_vocabulary(((w, 0) for w in learned), sessions=True), Counter(map(tuple, checked)), 0)
        for learned, checked in folds(train_normal, seed)
    ]
    plain, by_model = not_flagged_by_model(held_out_normal, flagged_by_model)
    checks.append((vocabulary, Counter(map(tuple, plain)), by_model))
    allowed = allowed_false_alarms(max_fpr, len(train_normal) + len(held_out_normal))
    for counts, rarity in SESSION_RULES:
        flagged = 0
        for learned, sessions, by_model in checks:
            trial = dataclasses.replace(learned, rare_transition=rarity, count_rule=counts)
            added = (n for w, n in sessions.items() if window_novelty(w, trial).reason in SESSION_REASONS)
            flagged += by_model + sum(added)
        if flagged <= allowed:
            return dataclasses.replace(vocabulary, rare_transition=rarity, count_rule=counts)
    return dataclasses.replace(vocabulary, rare_transition=0, count_rule=False)


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
    if vocabulary.counts is not None:
        entry["counts"] = len(vocabulary.counts)
        entry["count_rule"] = vocabulary.count_rule
    if vocabulary.shapes is not None:
        entry["shapes"] = len(vocabulary.shapes)
        entry["shape_rule"] = vocabulary.shape_rule
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
        counts = raw.get("counts")
        shapes = raw.get("shapes")
        window_max = raw.get("window_max")
        follows: Follows | None = None
        if raw.get("follows") is not None:
            grouped: dict[str, list[tuple[str, int, int]]] = {}
            for a, b, d, n in raw["follows"]:
                grouped.setdefault(str(a), []).append((str(b), int(d), int(n)))
            follows = {a: tuple(found) for a, found in grouped.items()}
        return Vocabulary(
            normal={str(k): int(v) for k, v in raw["normal"].items()},
            anomalous_only={str(k): int(v) for k, v in raw["anomalous_only"].items()},
            windows={str(k): int(v) for k, v in raw.get("windows", {}).items()},
            preprocess_version=str(raw.get("preprocess_version", "")),
            transitions=None if transitions is None else {(_end(a), _end(b)): int(n) for a, b, n in transitions},
            rare_transition=int(raw.get("rare_transition", 0)),
            counts=None if counts is None else {(str(a), _end(b)): frozenset(map(int, v)) for a, b, v in counts},
            count_rule=bool(raw.get("count_rule", False)),
            shapes=None if shapes is None else frozenset(tuple((str(t), int(n)) for t, n in s) for s in shapes),
            shape_rule=bool(raw.get("shape_rule", False)),
            window_max=None if window_max is None else {str(k): int(v) for k, v in window_max.items()},
            count_slack=int(raw.get("count_slack", OFF)),
            follows=follows,
            step_support=int(raw.get("step_support", OFF)),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise VocabularyError(f"{path}: malformed vocabulary ({exc})") from exc


def for_windows(vocabulary: Vocabulary, sessions: bool) -> Vocabulary:
    """The vocabulary as windows of this kind may use it: a fixed window is a cut, so no session rule there; a
    session is not a fixed window, so no window rule there."""
    if sessions:
        if vocabulary.count_slack == OFF and vocabulary.step_support == OFF:
            return vocabulary
        return dataclasses.replace(vocabulary, count_slack=OFF, step_support=OFF)
    if not (vocabulary.rare_transition or vocabulary.count_rule or vocabulary.shape_rule):
        return vocabulary
    return dataclasses.replace(vocabulary, rare_transition=0, count_rule=False, shape_rule=False)


def templates_only(vocabulary: Vocabulary) -> Vocabulary:
    """The template rule's view: no session and no window rule (the service runs those per window kind)."""
    return for_windows(for_windows(vocabulary, sessions=False), sessions=True)


def with_window_rules(
    vocabulary: Vocabulary,
    train_normal: Sequence[Sequence[str]],
    held_out_normal: Sequence[Sequence[str]],
    max_fpr: float,
    flagged_by_model: Sequence[bool] | None = None,
    seed: int = 0,
) -> Vocabulary:
    """``vocabulary`` with the window rules ``window_rules.pick_window_rules`` picks (fixed windows only)."""
    if vocabulary.window_max is None or not (train_normal or held_out_normal):
        return vocabulary
    slack, support = pick_window_rules(train_normal, held_out_normal, max_fpr, flagged_by_model, seed)
    return dataclasses.replace(vocabulary, count_slack=slack, step_support=support)


def _end(value: object) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class Novelty:
    """What one window holds that training never saw in a normal window, in order of first appearance."""

    novel: tuple[str, ...] = ()
    known_anomalous: tuple[str, ...] = ()
    transitions: tuple[Transition, ...] = ()  # rare transitions between known templates (sessions only)
    counts: tuple[CountFinding, ...] = ()  # count values no normal training session (or window) showed
    normal_shape: bool = False  # the session's shape is a normal training session's (clears; not shown)
    missing: tuple[Step, ...] = ()  # (A, B): an A with no B after it, where training always had one (fixed windows)

    @property
    def reason(self) -> str | None:
        """``known_anomalous_template`` first (training saw it fail), then ``novel_template``, then
        ``novel_transition``, then ``missing_step``, then ``novel_count``; None if none."""
        if self.known_anomalous:
            return KNOWN_ANOMALOUS
        if self.novel:
            return NOVEL
        if self.transitions:
            return NOVEL_TRANSITION
        if self.missing:
            return MISSING_STEP
        return NOVEL_COUNT if self.counts else None

    def to_json(self) -> dict[str, Any]:
        """As verdicts, records and ``logllm score`` show it: ``null`` in a transition is a session's start or end."""
        return {
            "novel": list(self.novel),
            "known_anomalous": list(self.known_anomalous),
            "transitions": [list(pair) for pair in self.transitions],
            "counts": [list(finding) for finding in self.counts],
            "missing": [list(step) for step in self.missing],
        }

    @classmethod
    def from_json(cls, found: dict[str, Any]) -> Novelty:
        """Back from ``to_json`` (a missing key is empty: verdicts written before transitions existed)."""
        return cls(
            tuple(found.get("novel", ())),
            tuple(found.get("known_anomalous", ())),
            tuple((a, b) for a, b in found.get("transitions", ())),
            tuple((a, b, int(v)) for a, b, v in found.get("counts", ())),
            missing=tuple((a, b) for a, b in found.get("missing", ())),
        )


def window_novelty(
    messages: Sequence[str],
    vocabulary: Vocabulary,
    learned: Collection[str] = frozenset(),
    learned_transitions: Collection[Transition] = frozenset(),
    learned_counts: Collection[CountFinding] = frozenset(),
    learned_steps: Collection[Step] = frozenset(),
) -> Novelty:
    """Templates in neither the normal vocabulary nor ``learned`` (a source's patterns, online), sorted by kind;
    with the session rules on, the rare transitions between known templates not in ``learned_transitions`` and the
    unusual counts not in ``learned_counts``; with the window rules on, the counts over their ceiling (not in
    ``learned_counts``) and the missing steps not in ``learned_steps``."""
    novel: dict[str, None] = {}
    known: dict[str, None] = {}
    for message in messages:
        if message in vocabulary.normal or message in learned:
            continue
        (known if message in vocabulary.anomalous_only else novel)[message] = None
    over, missing = window_findings(messages, vocabulary, learned_counts, learned_steps)
    return Novelty(
        tuple(novel),
        tuple(known),
        rare_transitions(messages, vocabulary, learned_transitions),
        unusual_counts(messages, vocabulary, learned_counts) + over,
        normal_shape(messages, vocabulary),
        missing,
    )


def window_findings(
    messages: Sequence[str],
    vocabulary: Vocabulary,
    learned_counts: Collection[CountFinding] = frozenset(),
    learned_steps: Collection[Step] = frozenset(),
) -> tuple[tuple[CountFinding, ...], tuple[Step, ...]]:
    """The window rules' findings (fixed windows): counts over their ceiling, steps left out; none with them off."""
    over = excess_counts(messages, vocabulary.window_max or {}, vocabulary.count_slack, learned_counts)
    missing = missing_steps(messages, vocabulary.follows or {}, vocabulary.step_support, learned_steps)
    return over, missing


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


def unusual_counts(
    messages: Sequence[str], vocabulary: Vocabulary, learned: Collection[CountFinding] = frozenset()
) -> tuple[CountFinding, ...]:
    """The session's checked counts (single counts first) with a value no normal training session showed and that
    is not ``learned``; none with the count rule off."""
    if vocabulary.counts is None or not vocabulary.count_rule:
        return ()
    held = Counter(messages)
    found: list[CountFinding] = []
    for (first, other), values in vocabulary.counts.items():
        value = held.get(first, 0) - (held.get(other, 0) if other is not None else 0)
        if value not in values and (first, other, value) not in learned:
            found.append((first, other, value))
    return tuple(found)


def normal_shape(messages: Sequence[str], vocabulary: Vocabulary) -> bool:
    """Whether the shape rule clears this session: its shape is one of the vocabulary's normal ``shapes``."""
    return vocabulary.shape_rule and vocabulary.shapes is not None and session_shape(messages) in vocabulary.shapes


def decide(
    score: float, threshold: float, novelty: Novelty, mode: NoveltyMode, clear_normal: float = CLEAR_NORMAL
) -> tuple[bool, str | None]:
    """``(anomalous, reason)``: with ``flag`` a novel window is anomalous whatever its score, and a session of a
    normal training shape (and nothing novel) is normal whatever its score; with ``unless_normal`` a novel window
    is anomalous unless the model calls it clearly normal (score under ``clear_normal`` x threshold: a model
    trained on the source's own logs vouches for a template its short training log never showed), a
    known-anomalous template whatever the score; else the model's call.

    The reason is the novelty reason when novelty decided, ``"model"`` when the score did, ``None`` for normal.
    """
    if mode == "flag" and novelty.reason is not None:
        return True, novelty.reason
    if mode == "flag" and novelty.normal_shape:
        return False, None
    vouched = score < clear_normal * threshold and not novelty.known_anomalous  # the model: clearly normal
    if mode == "unless_normal" and novelty.reason is not None and not vouched:
        return True, novelty.reason
    return (True, "model") if score >= threshold else (False, None)
