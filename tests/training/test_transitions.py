"""The session rules on real HDFS sessions: paths and counts no normal session showed, caught without a label.

DeepLog flags an HDFS session whose next event its model did not expect; invariant mining one whose event counts
break a relation every normal session keeps (one ``Receiving block`` per ``Received block``). The vocabulary does
both counted: a transition between known templates that (almost) no normal training session took, and a count, or
difference of two counts, that no normal training session showed. Half of the real anomalous sessions hold no
unknown template at all; these tests pin what each rule finds on the DeepLog key sequences, and which of them the
false-positive budget lets through.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from model.vocab import NOVEL_COUNT, NOVEL_TRANSITION, Vocabulary, normal_shape, window_novelty
from training.cli import training_vocabulary
from training.data_common import LabeledSequence
from training.datasets import Splits, load_splits
from training.evaluate import novelty_metrics
from training.settings import DataSettings
from training.unlabeled import move_anomalies_to_test

REPLICATE = "BLOCK* ask <*> to replicate <*> to datanode(s) <*>"


@pytest.fixture(scope="module")
def splits(shared_data: Path) -> Splits:
    splits = move_anomalies_to_test(load_splits(DataSettings(dataset="hdfs-sessions", data=shared_data, seed=42)))
    assert splits.report.sessions and not any(s.label for s in splits.train + splits.validation)
    return splits


def _flagged(sessions: Sequence[Sequence[str]], vocabulary: Vocabulary) -> int:
    return sum(window_novelty(m, vocabulary).reason is not None for m in sessions)


def test_the_budget_keeps_the_count_rule_and_drops_the_path_rule(splits: Splits) -> None:
    vocabulary = training_vocabulary(splits, max_fpr=0.001, seed=42)  # no model: the rules alone spend the budget
    # the path rule flags about 10 of the 3,496 training normals when cross-validated, over 0.001's 3 of 3,884
    assert (vocabulary.count_rule, vocabulary.rare_transition) == (True, 0)
    assert _flagged([s.messages for s in splits.validation], vocabulary) == 0

    anomalous = [s.messages for s in splits.test if s.label]
    normal = [s.messages for s in splits.test if not s.label]
    templates_only = replace(vocabulary, count_rule=False)
    by_templates = _flagged(anomalous, templates_only) / len(anomalous)
    found = [window_novelty(m, vocabulary) for m in anomalous]
    recall = sum(n.reason is not None for n in found) / len(anomalous)
    assert by_templates < 0.5 and recall > 0.99, (by_templates, recall)
    assert _flagged(normal, vocabulary) <= 0.002 * len(normal)  # measured: 0 of 971
    # a session that lost one of its events: a count of 0 where every normal session had one
    assert any(n.reason == NOVEL_COUNT and any(c[1] is None and c[2] == 0 for c in n.counts) for n in found)


def test_the_path_rule_alone_finds_less_and_costs_more_false_alarms(splits: Splits) -> None:
    picked = training_vocabulary(splits, max_fpr=0.001, seed=42)
    paths = replace(picked, count_rule=False, rare_transition=1)
    anomalous = [s.messages for s in splits.test if s.label]
    normal = [s.messages for s in splits.test if not s.label]
    by_templates = _flagged(anomalous, replace(paths, rare_transition=0)) / len(anomalous)
    found = [window_novelty(m, paths) for m in anomalous]
    recall = sum(n.reason is not None for n in found) / len(anomalous)
    assert recall > by_templates + 0.3 and recall < _flagged(anomalous, picked) / len(anomalous), recall
    assert _flagged(normal, picked) < _flagged(normal, paths) <= 0.005 * len(normal)
    assert any(n.reason == NOVEL_TRANSITION and (n.transitions[0][1] is None) for n in found)  # stopped early


def test_the_shape_rule_clears_normal_sessions_and_no_anomalous_one(shared_data: Path) -> None:
    """A session of a normal training session's shape (template counts) is normal whatever the model says: on the
    labeled split the shapes of normal training sessions that no anomalous training session had cover nearly all
    normal sessions and no anomalous one, the re-replicated blocks the model takes for anomalies included."""
    labeled = load_splits(DataSettings(dataset="hdfs-sessions", data=shared_data, seed=42))
    vocabulary = training_vocabulary(labeled, max_fpr=0.001, seed=42)
    assert vocabulary.shape_rule and vocabulary.shapes is not None and len(vocabulary.shapes) == 54

    def cleared(part: Sequence[LabeledSequence], label: int) -> int:
        return sum(normal_shape(s.messages, vocabulary) for s in part if s.label == label)

    assert cleared(labeled.validation, 1) == cleared(labeled.test, 1) == 0  # of 1,347 and 3,368
    assert cleared(labeled.validation, 0) >= 380 and cleared(labeled.test, 0) >= 950  # measured: 386/388, 964/971
    replicated = [s.messages for s in labeled.train if not s.label and REPLICATE in s.messages]
    assert len(replicated) == 15 and all(normal_shape(m, vocabulary) for m in replicated)
    # logllm eval reports what it cleared, and the model + template rule alone without it
    report = novelty_metrics(labeled.validation, [1.0] * len(labeled.validation), 0.5, vocabulary, "flag", None)
    assert report["shape_rule"] and report["normal_shape"] == {"windows": 386, "anomalous": 0, "normal": 386}
    assert report["with_novelty"]["fp"] == 2 and report["templates_only"]["fp"] == 388  # the model flags them all
