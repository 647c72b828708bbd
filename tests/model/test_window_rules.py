"""The fixed windows' rules: a template counted over its ceiling, a step left out; mined and picked on normal windows.

The unit tests pin each rule's edges (a window's end is a cut: an A without room for its B is not a finding). The
real-data test takes a system the shipped model never saw (Loghub Hadoop), learns the rules from its first 1,200
lines in windows of 20, and checks that a burst of one error line and a dropped step are found in the next 800
lines while its clean windows are not.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from model.preprocess import preprocess
from model.vocab import (
    MISSING_STEP,
    NOVEL_COUNT,
    Vocabulary,
    build_vocabulary,
    for_windows,
    load_vocabulary,
    templates_only,
    window_novelty,
    with_window_rules,
)
from model.window_rules import OFF, excess_counts, max_counts, mine_steps, missing_steps, pick_window_rules

OPEN, READ, CLOSE, IDLE = "open <*>", "read <*>", "close <*>", "idle <*>"
# every open is followed by its close within two lines; reads come once or twice per window
NORMAL = [[IDLE, OPEN, READ, CLOSE, IDLE, IDLE], [OPEN, CLOSE, IDLE, OPEN, READ, CLOSE], [IDLE, IDLE, OPEN, CLOSE],
          [OPEN, READ, CLOSE, READ, IDLE, IDLE], [IDLE, OPEN, CLOSE, OPEN, CLOSE, IDLE],
          [OPEN, CLOSE, IDLE, IDLE, IDLE, IDLE], [OPEN, READ, CLOSE, OPEN, READ, CLOSE]]  # fmt: skip


def test_a_step_is_missing_only_where_the_window_had_room_for_it() -> None:
    follows = mine_steps(NORMAL)
    assert follows == {OPEN: ((CLOSE, 2, 9),)}  # within 2 lines of each of the 9 opens (of 10) with 2 lines after
    # them; no other rule: an open without an idle in reach, an idle without an open, a read without a close
    assert missing_steps([OPEN, READ, IDLE, IDLE], follows, 5) == ((OPEN, CLOSE),)
    assert missing_steps([IDLE, IDLE, IDLE, OPEN, READ], follows, 5) == ()  # the cut came first: no room
    assert missing_steps([OPEN, READ, IDLE, IDLE], follows, 10) == ()  # the rule's support is under 10
    assert missing_steps([OPEN, READ, IDLE, IDLE], follows, OFF) == ()
    assert missing_steps([OPEN, READ, IDLE, IDLE], follows, 5, learned={(OPEN, CLOSE)}) == ()


def test_a_count_over_the_ceiling_plus_the_slack_is_found() -> None:
    ceiling = max_counts(NORMAL)
    assert ceiling == {IDLE: 4, OPEN: 2, READ: 2, CLOSE: 2}
    burst = [OPEN, READ, READ, READ, READ, CLOSE]
    assert excess_counts(burst, ceiling, 0) == ((READ, None, 4),)
    assert excess_counts(burst, ceiling, 2) == ()
    assert excess_counts(burst, ceiling, OFF) == ()
    assert excess_counts([*burst, "panic"], ceiling, 0) == ((READ, None, 4),)  # unknown: the template rule's
    assert excess_counts(burst, ceiling, 0, learned={(READ, None, 4)}) == ()


def test_the_pick_is_the_strictest_that_keeps_held_out_normal_windows_quiet() -> None:
    assert pick_window_rules(NORMAL * 4, NORMAL, max_fpr=0.0) == (0, 5)  # every normal window obeys both rules
    three_reads = [OPEN, READ, CLOSE, READ, READ, IDLE]
    assert pick_window_rules(NORMAL * 4, [*NORMAL, three_reads], max_fpr=0.0) == (1, 5)  # a count one higher
    left_open = [OPEN, READ, IDLE, IDLE, IDLE, IDLE]  # normal too, say the held-out windows: the step is no rule
    # for the budget: only rules over 40 opens or more are checked, and there are 36
    assert pick_window_rules(NORMAL * 4, [*NORMAL, left_open], max_fpr=0.0) == (0, 40)
    assert pick_window_rules(NORMAL * 4, [*NORMAL, left_open], max_fpr=0.2) == (0, 5)  # one window is in budget
    assert pick_window_rules(NORMAL * 4, NORMAL, 0.0, flagged_by_model=[True] * 7) == (OFF, OFF)  # model's budget


def test_the_rules_travel_with_the_vocabulary_and_stay_off_for_sessions(tmp_path: Path) -> None:
    vocabulary = with_window_rules(build_vocabulary((w, 0) for w in NORMAL * 4), NORMAL * 4, NORMAL, 0.0)
    assert (vocabulary.count_slack, vocabulary.step_support) == (0, 5)
    found = window_novelty([OPEN, READ, READ, READ, IDLE, IDLE], vocabulary)
    assert (found.reason, found.missing, found.counts) == (MISSING_STEP, ((OPEN, CLOSE),), ((READ, None, 3),))
    assert window_novelty([OPEN, CLOSE, READ, READ, READ], vocabulary).reason == NOVEL_COUNT
    assert window_novelty([OPEN, READ, READ, READ, IDLE, IDLE], templates_only(vocabulary)).reason is None
    assert window_novelty([OPEN, READ, READ, READ, IDLE, IDLE], for_windows(vocabulary, sessions=True)).reason is None
    assert for_windows(vocabulary, sessions=False) is vocabulary
    assert _round_trip(vocabulary, tmp_path) == vocabulary
    sessions = build_vocabulary(((w, 0) for w in NORMAL), sessions=True)
    assert (sessions.window_max, sessions.follows, sessions.count_slack) == (None, None, OFF)


def _round_trip(vocabulary: Vocabulary, directory: Path) -> Vocabulary | None:
    from model.vocab import attach_vocabulary

    (directory / "manifest.json").write_text("{}")
    attach_vocabulary(directory, vocabulary)
    return load_vocabulary(directory)


def test_a_burst_and_a_dropped_step_of_a_new_system_are_found_and_its_clean_windows_are_not(
    shared_data: Path,
) -> None:
    lines = (shared_data / "Hadoop" / "Hadoop_2k.log").read_text(errors="replace").splitlines()
    templates = [preprocess(line) for line in lines]
    first = [templates[i : i + 20] for i in range(0, 1200, 20)]
    order = list(range(len(first)))
    random.Random(42).shuffle(order)
    train, held_out = [first[i] for i in order[:54]], [first[i] for i in order[54:]]
    vocabulary = with_window_rules(build_vocabulary((w, 0) for w in train), train, held_out, max_fpr=0.02)
    assert vocabulary.count_slack != OFF and vocabulary.step_support != OFF
    rest = [templates[i : i + 20] for i in range(1200, 2000, 20)]
    flagged = [window_novelty(w, vocabulary).reason for w in rest]
    assert flagged == [None] * 40

    errors = Counter(t for w in train for t in w if " ERROR " in t)
    rarest = min(errors, key=lambda t: (errors[t], t))
    burst = [*rest[5][:5], *[rarest] * 10, *rest[5][5:10]]
    assert window_novelty(burst, vocabulary).counts[0] == (rarest, None, 10)
    dropped = 0
    for window in rest:  # every window where an A with its B in reach loses that B
        for i, a in enumerate(window):
            steps = [(b, d) for b, d, n in (vocabulary.follows or {}).get(a, ()) if n >= vocabulary.step_support]
            for b, d in steps:
                after = window[i + 1 : i + 1 + d]
                if after.count(b) == 1 and len(window) - 1 - i >= d + 1:
                    cut = window[: i + 1 + after.index(b)] + window[i + 2 + after.index(b) :]
                    if b not in cut[i + 1 : i + 1 + d]:  # no later B moved into reach
                        dropped += 1
                        assert (a, b) in window_novelty(cut, vocabulary).missing
    assert dropped >= 10
