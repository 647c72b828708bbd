"""Rules for fixed windows: a template counted more often than training ever showed, a step left out.

A fixed window is a cut through the log, so the session rules (a path from start to end, counts of a whole
session) do not apply to it. Two things still hold inside any window of normal logs, and the model of a new
system, trained on a few dozen windows on a CPU, does not learn them well enough to notice their absence:

- **counts** (``novel_count``): how often each template occurs in one window has a ceiling in normal logs. A
  burst of one error line (ten in a row where training never had more than two in a window) crosses it. The rule
  flags a count above the highest one a normal training window showed plus a *slack*.
- **steps** (``missing_step``): some templates are always followed by another within a few lines (Hadoop's
  "Address change detected" by "Failed to renew lease", Spark's "Got assigned task" by "Running task"). A window
  where such an A has room for its B after it and no B follows is missing a step. This is invariant mining (Lou
  et al., 2010) restricted to what a window can show: the rule (A, B, D) holds when every A of the normal training
  windows with at least D lines after it had a B within D lines, D being the largest distance training showed,
  and it is checked only when enough As (its *support*) were seen.

``pick_window_rules`` sets the slack and the least support by cross-validation on the normal training windows
plus the held-out ones, within the run's false-positive budget, strictest first, as ``pick_session_rules`` does
for sessions; either rule may end up off. Only what training windows show is used: the faults these rules catch
are not given to it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence

from model.rule_folds import allowed_false_alarms, folds, not_flagged_by_model

Step = tuple[str, str]  # (A, B): B follows A
Follows = dict[str, tuple[tuple[str, int, int], ...]]  # A -> ((B, within D lines, support), ...)
CountFinding = tuple[str, str | None, int]  # vocab.CountFinding: here (template, None, the count a window showed)

MAX_STEP_DISTANCE = 5  # a step further than this from its cause is not a step of the same action
MIN_SUPPORT = 5  # a rule over fewer As is chance
SLACKS = (0, 1, 2, 4)  # strictest first; past these the count rule is off
SUPPORTS = (MIN_SUPPORT, 10, 20, 40)  # strictest first (the most rules); past these the step rule is off
OFF = -1  # a slack or a support that turns its rule off


def max_counts(windows: Iterable[Sequence[str]]) -> dict[str, int]:
    """Each template's highest count in one window."""
    ceiling: dict[str, int] = {}
    for window in windows:
        for template, n in Counter(window).items():
            if n > ceiling.get(template, 0):
                ceiling[template] = n
    return ceiling


def mine_steps(windows: Iterable[Sequence[str]]) -> Follows:
    """Every (A, B, D) that held in all ``windows`` with at least ``MIN_SUPPORT`` As checked, with its support."""
    nearest: dict[tuple[str, str], int] = {}  # the largest distance from an A to its next B
    occurrences: dict[str, list[tuple[int, dict[str, int]]]] = {}  # A -> (lines after it, {B: distance to next})
    for window in windows:
        for i, a in enumerate(window):
            ahead: dict[str, int] = {}
            for j in range(i + 1, min(len(window), i + 1 + MAX_STEP_DISTANCE)):
                if window[j] != a and window[j] not in ahead:
                    ahead[window[j]] = j - i
            occurrences.setdefault(a, []).append((len(window) - 1 - i, ahead))
            for b, d in ahead.items():
                if d > nearest.get((a, b), 0):
                    nearest[(a, b)] = d
    rules: dict[str, list[tuple[str, int, int]]] = {}
    for (a, b), distance in nearest.items():
        checked = [ahead for after, ahead in occurrences[a] if after >= distance]
        if len(checked) >= MIN_SUPPORT and all(b in ahead for ahead in checked):
            rules.setdefault(a, []).append((b, distance, len(checked)))
    return {a: tuple(sorted(found)) for a, found in sorted(rules.items())}


def excess_counts(
    messages: Sequence[str], ceiling: Mapping[str, int], slack: int, learned: Collection[CountFinding] = frozenset()
) -> tuple[CountFinding, ...]:
    """Known templates counted above their ceiling plus ``slack`` (and not ``learned``), in order of appearance."""
    if slack < 0:
        return ()
    held = Counter(messages)
    found = ((t, None, n) for t, n in held.items() if t in ceiling and n > ceiling[t] + slack)
    return tuple(f for f in found if f not in learned)


def missing_steps(
    messages: Sequence[str], follows: Mapping[str, Sequence[tuple[str, int, int]]], support: int,
    learned: Collection[Step] = frozenset(),
) -> tuple[Step, ...]:  # fmt: skip
    """The (A, B) rules of at least ``support`` that this window breaks, in order of appearance."""
    if support < 0:
        return ()
    found: dict[Step, None] = {}
    for i, a in enumerate(messages):
        for b, distance, seen in follows.get(a, ()):
            room = len(messages) - 1 - i >= distance
            if seen >= support and room and b not in messages[i + 1 : i + 1 + distance] and (a, b) not in learned:
                found[(a, b)] = None
    return tuple(found)


def pick_window_rules(
    train_normal: Sequence[Sequence[str]],
    held_out_normal: Sequence[Sequence[str]],
    max_fpr: float,
    flagged_by_model: Sequence[bool] | None = None,
    seed: int = 0,
) -> tuple[int, int]:
    """``(slack, support)``: the strictest pair (slack first) whose false alarms fit ``max_fpr`` on every normal
    window not used to learn the rules (model/rule_folds.py: each fold of ``train_normal`` against rules of the
    others, ``held_out_normal`` against rules of all of ``train_normal``, the model's own flags counted too).

    A window holding a template its rules' windows never showed costs nothing: the template rule flags it anyway.
    """
    plain, by_model = not_flagged_by_model(held_out_normal, flagged_by_model)
    trials = [_Trial(learned, checked, 0) for learned, checked in folds(train_normal, seed)]
    trials.append(_Trial(train_normal, plain, by_model))
    allowed = allowed_false_alarms(max_fpr, len(train_normal) + len(held_out_normal))
    for slack in (*SLACKS, OFF):
        for support in (*SUPPORTS, OFF):
            if sum(trial.flagged(slack, support) for trial in trials) <= allowed:
                return slack, support
    return OFF, OFF


class _Trial:
    """One fold: the rules learned from some normal windows, checked on the others."""

    def __init__(self, learned: Sequence[Sequence[str]], checked: Sequence[Sequence[str]], by_model: int) -> None:
        known = {t for w in learned for t in w}
        self.checked = [w for w in checked if all(t in known for t in w)]  # the template rule's windows cost nothing
        self.ceiling = max_counts(learned)
        self.follows = mine_steps(learned)
        self.by_model = by_model

    def flagged(self, slack: int, support: int) -> int:
        added = sum(
            bool(excess_counts(w, self.ceiling, slack) or missing_steps(w, self.follows, support))
            for w in self.checked
        )
        return self.by_model + added
