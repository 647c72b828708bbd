"""The transition rule on real HDFS sessions: paths no normal session took, caught without a single label.

DeepLog flags an HDFS session whose next event its model did not expect. The vocabulary does the counted version:
a transition between known templates that (almost) no normal training session took. Half of the real anomalous
sessions hold no unknown template at all, only a known one in the wrong place or a session that stops early; these
tests pin that the rule finds those, at the false-positive budget it was picked for, on the DeepLog key sequences.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from model.vocab import NOVEL_TRANSITION, window_novelty
from training.cli import training_vocabulary
from training.datasets import load_splits
from training.settings import DataSettings
from training.unlabeled import move_anomalies_to_test


def test_transitions_catch_anomalies_that_hold_only_known_templates(shared_data: Path) -> None:
    splits = move_anomalies_to_test(load_splits(DataSettings(dataset="hdfs-sessions", data=shared_data, seed=42)))
    assert splits.report.sessions and not any(s.label for s in splits.train + splits.validation)
    vocabulary = training_vocabulary(splits, max_fpr=0.001)  # no model: the rule alone spends the budget
    assert vocabulary.transitions is not None and vocabulary.rare_transition >= 1
    validation_flags = sum(window_novelty(s.messages, vocabulary).reason is not None for s in splits.validation)
    assert validation_flags == 0  # 0.001 of 388 held-out normals: no false alarm allowed there

    templates_only = replace(vocabulary, rare_transition=0)
    anomalous = [s.messages for s in splits.test if s.label]
    normal = [s.messages for s in splits.test if not s.label]
    by_templates = sum(window_novelty(m, templates_only).reason is not None for m in anomalous) / len(anomalous)
    found = [window_novelty(m, vocabulary) for m in anomalous]
    recall = sum(n.reason is not None for n in found) / len(anomalous)
    false_alarms = sum(window_novelty(m, vocabulary).reason is not None for m in normal)
    assert by_templates < 0.5 and recall > by_templates + 0.3, (by_templates, recall)
    assert false_alarms <= 0.005 * len(normal), false_alarms
    assert any(n.reason == NOVEL_TRANSITION and (n.transitions[0][1] is None) for n in found)  # stopped early
