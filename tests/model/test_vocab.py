"""The training vocabulary (counts, file named and hashed in the manifest) and the novelty rule."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from model.vocab import (
    COUNT_FREE_VALUES,
    KNOWN_ANOMALOUS,
    NOVEL,
    NOVEL_COUNT,
    NOVEL_TRANSITION,
    Novelty,
    VocabularyError,
    attach_vocabulary,
    build_vocabulary,
    decide,
    for_windows,
    load_vocabulary,
    pick_session_rules,
    session_shape,
    session_transitions,
    window_novelty,
)

DEFAULT = Path(__file__).resolve().parents[2] / "checkpoints" / "default"
WINDOWS = [
    (["open <*>", "read <*>", "read <*>", "close <*>"], 0),
    (["open <*>", "close <*>"], 0),
    (["open <*>", "disk error <*>", "read <*>"], 1),
    (["open <*>", "disk error <*>", "panic"], 1),
]


def test_counts_windows_per_template_and_keeps_anomalous_only_apart() -> None:
    vocabulary = build_vocabulary(WINDOWS, "2")
    assert vocabulary.normal == {"open <*>": 2, "close <*>": 2, "read <*>": 1}  # a window counts once
    assert vocabulary.anomalous_only == {"disk error <*>": 2, "panic": 1}  # open/read also occur in normal windows
    assert vocabulary.windows == {"normal": 2, "anomalous": 2}


SESSIONS = [
    (["open <*>", "write <*>", "close <*>"], 0),
    (["open <*>", "write <*>", "close <*>"], 0),
    (["open <*>", "write <*>", "write <*>", "close <*>"], 0),
    (["open <*>", "write <*>"], 1),  # an anomalous session's transitions are never counted
]


def test_sessions_count_their_transitions_start_to_end_in_normal_sessions_only() -> None:
    assert session_transitions(["a", "b"]) == [(None, "a"), ("a", "b"), ("b", None)]
    vocabulary = build_vocabulary(SESSIONS, sessions=True)
    assert vocabulary.transitions == {
        (None, "open <*>"): 3,
        ("open <*>", "write <*>"): 3,
        ("write <*>", "close <*>"): 3,
        ("close <*>", None): 3,
        ("write <*>", "write <*>"): 1,  # a session counts once, like templates
    }
    assert vocabulary.rare_transition == 0  # off until picked on held-out normals
    assert build_vocabulary(SESSIONS).transitions is None  # fixed windows: their ends are arbitrary cuts


def test_a_rare_path_through_known_templates_is_a_novel_transition() -> None:
    vocabulary = build_vocabulary(SESSIONS, sessions=True)
    cut_short = ["open <*>", "write <*>"]  # every template known; the session just stops
    assert window_novelty(cut_short, vocabulary) == Novelty()  # rule off
    vocabulary.rare_transition = 1
    assert window_novelty(cut_short, vocabulary) == Novelty(transitions=(("write <*>", None),))
    assert window_novelty(cut_short, vocabulary).reason == NOVEL_TRANSITION
    retried = window_novelty(["open <*>", "write <*>", "write <*>", "close <*>"], vocabulary)
    assert retried == Novelty(normal_shape=True)  # a normal training session's path and shape
    vocabulary.rare_transition = 2  # also paths only one normal session took
    assert window_novelty(["open <*>", "write <*>", "write <*>", "close <*>"], vocabulary).transitions == (
        ("write <*>", "write <*>"),
    )
    # an unknown template is the finding; the edges around it are not reported again, and templates outrank paths
    found = window_novelty(["open <*>", "fsck <*>", "close <*>"], vocabulary)
    assert found == Novelty(novel=("fsck <*>",)) and found.reason == NOVEL
    learned = window_novelty(cut_short, vocabulary, learned_transitions={("write <*>", None)})
    assert learned == Novelty()  # an operator said this path is normal
    assert window_novelty(cut_short, for_windows(vocabulary, sessions=False)) == Novelty()  # a fixed window's cut
    assert for_windows(vocabulary, sessions=True) is vocabulary


OPEN, WRITE, CLOSE = "open <*>", "write <*>", "close <*>"
PLAIN, RETRIED = [OPEN, WRITE, CLOSE], [OPEN, WRITE, WRITE, CLOSE]
TRAINED = [PLAIN] * 10 + [RETRIED] * 10  # every fold of five still holds both shapes


def test_sessions_keep_the_values_of_each_count_and_count_difference() -> None:
    vocabulary = build_vocabulary(((m, 0) for m in TRAINED), sessions=True)
    assert vocabulary.counts == {
        (CLOSE, None): {1}, (OPEN, None): {1}, (WRITE, None): {1, 2},  # single counts first, then pairs
        (CLOSE, OPEN): {0}, (CLOSE, WRITE): {0, -1}, (OPEN, WRITE): {0, -1},  # as common, then by name
    }  # fmt: skip
    assert not vocabulary.count_rule  # off until picked
    assert build_vocabulary((m, 0) for m in TRAINED).counts is None  # fixed windows: counts of a cut
    # a count that takes COUNT_FREE_VALUES values in normal sessions follows load, not the protocol: unchecked
    busy = [[OPEN, *[WRITE] * n, CLOSE] for n in range(1, COUNT_FREE_VALUES + 1)]
    counts = build_vocabulary(((m, 0) for m in busy), sessions=True).counts
    assert counts is not None and (WRITE, None) not in counts and (CLOSE, OPEN) in counts


def test_a_count_no_normal_session_showed_is_a_novel_count() -> None:
    vocabulary = build_vocabulary(((m, 0) for m in TRAINED), sessions=True)
    thrice = [OPEN, WRITE, WRITE, WRITE, CLOSE]  # every path known (write -> write), but never three writes
    reordered = [WRITE, OPEN, WRITE, CLOSE]  # a new path, counts as usual
    assert window_novelty(thrice, vocabulary) == Novelty()  # rule off
    vocabulary.count_rule = True
    found = window_novelty(thrice, vocabulary)
    assert found == Novelty(counts=((WRITE, None, 3), (CLOSE, WRITE, -2), (OPEN, WRITE, -2)))
    assert found.reason == NOVEL_COUNT
    assert window_novelty(reordered, vocabulary) == Novelty(normal_shape=True)  # order: the path rule's business
    assert window_novelty([OPEN, WRITE], vocabulary).counts == ((CLOSE, None, 0), (CLOSE, OPEN, -1))
    vocabulary.rare_transition = 1
    assert window_novelty([OPEN, WRITE], vocabulary).reason == NOVEL_TRANSITION  # paths outrank counts
    assert window_novelty(thrice, vocabulary, learned_counts=set(found.counts)) == Novelty()  # an operator's label
    assert window_novelty(thrice, for_windows(vocabulary, sessions=False)) == Novelty()  # a fixed window's cut
    assert Novelty.from_json(json.loads(json.dumps(found.to_json()))) == found


def test_a_session_of_a_normal_training_shape_is_normal_whatever_the_model_scores() -> None:
    replicated = [OPEN, WRITE, "replicate <*>", CLOSE]  # rare among normal sessions: the model may doubt it
    vocabulary = build_vocabulary(
        [*((m, 0) for m in TRAINED), (replicated, 0), ([OPEN, WRITE, CLOSE, WRITE], 1)], sessions=True
    )  # the anomalous session has RETRIED's shape in another order: that shape tells the classes apart no more
    assert vocabulary.shape_rule and vocabulary.shapes == {session_shape(PLAIN), session_shape(replicated)}
    reordered = [OPEN, "replicate <*>", WRITE, CLOSE]  # the shape is order-free, like the counts
    assert decide(0.99, 0.5, window_novelty(reordered, vocabulary), "flag") == (False, None)
    assert decide(0.99, 0.5, window_novelty(RETRIED, vocabulary), "flag") == (True, "model")
    assert decide(0.99, 0.5, window_novelty(reordered, vocabulary), "annotate") == (True, "model")  # only flag
    assert decide(0.99, 0.5, window_novelty(reordered, for_windows(vocabulary, False)), "flag") == (True, "model")
    vocabulary.rare_transition = 1  # a path no normal session took still flags a session of a normal shape
    assert decide(0.1, 0.5, window_novelty(reordered, vocabulary), "flag") == (True, NOVEL_TRANSITION)
    fixed = build_vocabulary((m, 0) for m in TRAINED)
    assert (fixed.shapes, fixed.shape_rule) == (None, False)  # fixed windows: a cut has no shape


def test_session_rules_are_the_strictest_that_the_normal_sessions_afford() -> None:
    vocabulary = build_vocabulary(((m, 0) for m in TRAINED), sessions=True)
    thrice = [OPEN, WRITE, WRITE, WRITE, CLOSE]  # flagged by counts only
    shortcut = [OPEN, CLOSE]  # flagged by both rules

    def picked(held_out: list[list[str]], max_fpr: float, **kw: object) -> tuple[bool, int]:
        chosen = pick_session_rules(vocabulary, TRAINED, held_out, max_fpr, **kw)  # type: ignore[arg-type]
        return chosen.count_rule, chosen.rare_transition

    assert picked([PLAIN, RETRIED], 0.0) == (True, 2)  # nothing flagged: both rules, the strictest rarity
    assert picked([PLAIN, thrice], 0.0) == (False, 2)  # the count rule costs a false alarm
    assert picked([shortcut], 0.0) == (False, 0)  # so would any rule
    assert picked([[OPEN, "fsck <*>", WRITE, CLOSE]], 0.0) == (True, 2)  # the template rule flags it anyway
    assert picked([PLAIN, thrice], 0.05) == (True, 2)  # 0.05 of 22 sessions: one false alarm affordable
    # the model's own false alarms on the held-out normals spend the same budget
    assert picked([PLAIN, thrice], 0.05, flagged_by_model=[True, False]) == (False, 2)
    # the training normals count too, each against a vocabulary of the other folds: a shape only one training
    # session holds is a false alarm whenever its fold is left out
    odd = [OPEN, WRITE, CLOSE, CLOSE]
    alone = pick_session_rules(build_vocabulary(((m, 0) for m in [*TRAINED, odd]), sessions=True),
                               [*TRAINED, odd], [PLAIN], 0.0)  # fmt: skip
    assert (alone.count_rule, alone.rare_transition) == (False, 0)
    fixed = build_vocabulary((m, 0) for m in TRAINED)
    assert pick_session_rules(fixed, TRAINED, [PLAIN], 1.0) is fixed  # fixed windows: no session rules


def test_transitions_round_trip_through_the_file_with_session_ends(tmp_path: Path) -> None:
    directory = _checkpoint_copy(tmp_path)
    vocabulary = build_vocabulary(SESSIONS, "2", sessions=True)
    vocabulary.rare_transition, vocabulary.count_rule = 2, True
    entry = attach_vocabulary(directory, vocabulary)
    assert (entry["transitions"], entry["rare_transition"], entry["count_rule"]) == (5, 2, True)
    assert load_vocabulary(directory) == vocabulary
    raw = json.loads((directory / "vocabulary.json").read_text())
    assert [None, "open <*>", 3] in raw["transitions"]
    assert ["write <*>", None, [1, 2]] in raw["counts"]


def test_novelty_sorts_unknown_templates_by_kind_in_order_of_appearance() -> None:
    vocabulary = build_vocabulary(WINDOWS)
    assert window_novelty(["open <*>", "read <*>", "close <*>"], vocabulary) == Novelty()
    found = window_novelty(["open <*>", "fan <*> failed", "panic", "fan <*> failed", "disk error <*>"], vocabulary)
    assert found == Novelty(novel=("fan <*> failed",), known_anomalous=("panic", "disk error <*>"))
    assert found.reason == KNOWN_ANOMALOUS
    assert window_novelty(["fan <*> failed"], vocabulary).reason == NOVEL
    # a source's learned patterns count as known (the service passes them; offline there are none)
    assert window_novelty(["fan <*> failed"], vocabulary, learned={"fan <*> failed"}) == Novelty()


@pytest.mark.parametrize(
    ("score", "novelty", "mode", "expected"),
    [
        (0.1, Novelty(novel=("x",)), "flag", (True, NOVEL)),
        (0.9, Novelty(known_anomalous=("x",)), "flag", (True, KNOWN_ANOMALOUS)),
        (0.1, Novelty(novel=("x",)), "annotate", (False, None)),
        (0.9, Novelty(novel=("x",)), "annotate", (True, "model")),
        (0.1, Novelty(novel=("x",)), "off", (False, None)),
        (0.1, Novelty(), "flag", (False, None)),  # nothing new: the model's call, no extra false positive
        (0.5, Novelty(), "flag", (True, "model")),
    ],
)
def test_decide(score: float, novelty: Novelty, mode: str, expected: tuple[bool, str | None]) -> None:
    assert decide(score, 0.5, novelty, mode) == expected  # type: ignore[arg-type]


def _checkpoint_copy(tmp_path: Path) -> Path:
    directory = tmp_path / "ckpt"
    directory.mkdir()
    manifest = json.loads((DEFAULT / "manifest.json").read_text())
    manifest.pop("vocabulary", None)
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def test_attach_names_and_hashes_the_file_and_load_checks_the_hash(tmp_path: Path) -> None:
    directory = _checkpoint_copy(tmp_path)
    assert load_vocabulary(directory) is None  # an old checkpoint: no vocabulary, no error
    entry = attach_vocabulary(directory, build_vocabulary(WINDOWS, "2"))
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["vocabulary"] == entry and entry["file"] == "vocabulary.json" and len(entry["sha256"]) == 64
    assert (entry["normal_templates"], entry["anomalous_only_templates"]) == (3, 2)
    assert manifest["threshold"] == json.loads((DEFAULT / "manifest.json").read_text())["threshold"]  # rest kept
    assert load_vocabulary(directory) == build_vocabulary(WINDOWS, "2")

    path = directory / "vocabulary.json"
    path.write_text(path.read_text().replace('"panic": 1', '"panic": 2'))
    with pytest.raises(VocabularyError, match="SHA-256 differs from the manifest's"):
        load_vocabulary(directory)
    path.unlink()
    with pytest.raises(VocabularyError, match="names vocabulary vocabulary.json, which is missing"):
        load_vocabulary(directory)


def test_manifest_reads_and_writes_the_entry(tmp_path: Path) -> None:
    from model.checkpoint import Manifest

    directory = tmp_path / "copy"
    shutil.copytree(DEFAULT, directory, ignore=shutil.ignore_patterns("eval*", "*lora", "*.safetensors"))
    manifest = Manifest.read(directory)
    assert manifest.vocabulary["file"] == "vocabulary.json"
    assert manifest.to_json()["vocabulary"] == manifest.vocabulary


def test_default_checkpoint_vocabulary_holds_hdfs_templates() -> None:
    vocabulary = load_vocabulary(DEFAULT)
    assert vocabulary is not None
    assert vocabulary.windows == {"normal": 3496, "anomalous": 12123}  # the seed-42 train split, validation out
    assert "Receiving block <*> src: <*> dest: <*>" in vocabulary.normal
    assert "writeBlock <*> received exception <*>" in vocabulary.anomalous_only
    assert not set(vocabulary.normal) & set(vocabulary.anomalous_only)


def test_score_columns_apply_the_rule() -> None:
    from model.score_cli import novelty_columns

    vocabulary = build_vocabulary(WINDOWS)
    known = ["open <*>", "close <*>"]
    assert novelty_columns(known, 0.1, 0.5, vocabulary, "flag") == "normal\t-\t-"
    assert novelty_columns([*known, "fan <*> failed"], 0.1, 0.5, vocabulary, "flag") == (
        'anomalous\tnovel_template\t{"novel": ["fan <*> failed"], "known_anomalous": [], "transitions": [],'
        ' "counts": [], "missing": []}'
    )
    assert novelty_columns([*known, "panic"], 0.1, 0.5, vocabulary, "annotate").startswith("normal\t-\t{")
    assert novelty_columns([*known, "panic"], 0.9, 0.5, vocabulary, "off") == "anomalous\tmodel\t-"
    assert novelty_columns([*known, "panic"], 0.1, 0.5, None, "flag") == "normal\t-\t-"  # no vocabulary: model only


@pytest.mark.slow
def test_logllm_score_flags_a_session_with_an_unseen_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import logllm_cli

    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "hdfs" / "HDFS.log"
    lines = fixture.read_text().splitlines()
    block = "blk_38865049064139660"
    unseen = f"081109 203616 148 WARN dfs.DataNode$DataXceiver: Disk quota exceeded while writing {block} to /data"
    log = tmp_path / "hdfs.log"
    log.write_text("\n".join([*lines, unseen]) + "\n")
    argv = ["score", str(log), "--checkpoint", str(DEFAULT), "--log-format", "hdfs", "--window-mode", "session"]
    with pytest.raises(SystemExit) as exited:
        logllm_cli.main(argv)
    assert exited.value.code == 0
    threshold = json.loads((DEFAULT / "manifest.json").read_text())["threshold"]
    rows = {r[0]: r for r in (line.split("\t") for line in capsys.readouterr().out.splitlines()[1:])}
    window = f"session:default:{block}"  # logllm score names windows as the service does
    assert rows[window][3:5] == ["anomalous", "novel_template"]
    assert json.loads(rows[window][5])["novel"] == ["Disk quota exceeded while writing <*> to <*>"]
    for score, label, reason, listed in (r[2:] for r in rows.values()):
        if listed == "-":  # every template known: the model's call alone, never an extra alarm
            assert (label, reason) == (("anomalous", "model") if float(score) >= threshold else ("normal", "-"))
