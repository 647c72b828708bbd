"""The shared pieces of the loaders: the report, line reading and the seeded stratified splits."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from training.data import DataFormatError, LabeledSequence, LoadReport, split_validation, stratified_split
from training.data_common import count_lines, read_lines


def _sequences(normal: int, anomalous: int) -> list[LabeledSequence]:
    labels = [0] * normal + [1] * anomalous
    return [LabeledSequence(f"s{i}", [f"m{i}"], label) for i, label in enumerate(labels)]


def test_report_fails_with_file_and_line_or_counts_and_keeps_examples(tmp_path: Path) -> None:
    report = LoadReport()
    with pytest.raises(DataFormatError, match=r"x\.log:7: bad header"):
        report.malformed_line(tmp_path / "x.log", 7, "bad header", "fail")
    for number in range(1, 9):
        report.malformed_line(tmp_path / "x.log", number, "bad header", "skip")
    assert report.malformed == 8 and len(report.examples) == 5
    assert f"skipped 8 malformed lines (first: {tmp_path / 'x.log'}:1: bad header)" in report.summary()


def test_read_lines_numbers_physical_lines_and_counts_blanks(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"one\r\n\ntwo\rstill two\nthree")  # a lone \r does not end a line
    report = LoadReport()
    assert list(read_lines(path, report)) == [(1, "one"), (3, "two\rstill two"), (4, "three")]
    assert (report.lines_read, report.blank_lines) == (4, 1)
    assert count_lines(path) == 4 and count_lines(path, max_lines=2) == 2
    assert list(read_lines(path, LoadReport(), max_lines=3)) == [(1, "one"), (3, "two\rstill two")]


def test_gzip_files_are_read_as_they_are(tmp_path: Path) -> None:
    path = tmp_path / "a.log.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("one\ntwo\n")
    assert count_lines(path) == 2
    assert [line for _, line in read_lines(path, LoadReport())] == ["one", "two"]


def test_split_validation_is_stratified_seeded_and_keeps_order() -> None:
    train = _sequences(90, 10)
    rest, validation = split_validation(train, fraction=0.1, seed=7)
    assert (len(rest), len(validation)) == (90, 10)
    assert sum(s.label for s in validation) == 1 and sum(s.label for s in rest) == 9
    assert split_validation(train, fraction=0.1, seed=7) == (rest, validation)
    assert split_validation(train, fraction=0.1, seed=8) != (rest, validation)
    assert [int(s.sequence_id[1:]) for s in rest] == sorted(int(s.sequence_id[1:]) for s in rest)
    assert {s.sequence_id for s in rest}.isdisjoint(s.sequence_id for s in validation)


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_split_fraction_is_validated(fraction: float) -> None:
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        stratified_split(_sequences(5, 5), fraction, seed=1)


def _repeated(shapes: dict[tuple[str, ...], tuple[int, int]]) -> list[LabeledSequence]:
    """Sequences of the given shapes, each ``(normal copies, anomalous copies)`` times, interleaved."""
    out: list[LabeledSequence] = []
    for shape, (normal, anomalous) in shapes.items():
        out += [LabeledSequence(f"{shape[0]}-n{i}", list(shape), 0) for i in range(normal)]
        out += [LabeledSequence(f"{shape[0]}-a{i}", list(shape), 1) for i in range(anomalous)]
    return out


def test_distinct_split_keeps_identical_sequences_on_one_side() -> None:
    from training.data_splits import distinct_split, split_sequences

    shapes = {(f"m{i}", "x"): (5, 0) for i in range(20)} | {(f"e{i}",): (0, 3) for i in range(20)}
    shapes[("both",)] = (2, 1)  # one shape under both labels: goes with its majority, whole
    sequences = _repeated(shapes)
    rest, held = distinct_split(sequences, 0.2, seed=3)
    assert {tuple(s.messages) for s in rest}.isdisjoint({tuple(s.messages) for s in held})
    assert len(rest) + len(held) == len(sequences)
    assert sum(s.label == 0 for s in held) == 20 and sum(s.label == 1 for s in held) == 12  # 20% of each class
    assert distinct_split(sequences, 0.2, seed=3) == (rest, held)  # seeded
    # the random split does straddle: the problem this fixes
    rest_r, held_r = split_sequences(sequences, 0.2, 3, "random")
    assert {tuple(s.messages) for s in rest_r} & {tuple(s.messages) for s in held_r}


def test_distinct_split_holds_out_one_group_when_all_are_larger_than_the_share() -> None:
    from training.data_splits import distinct_split

    rest, held = distinct_split(_repeated({("a",): (10, 0), ("b",): (10, 0), ("c",): (0, 1)}), 0.2, seed=0)
    assert len(held) == 10 + 0 and {tuple(s.messages) for s in held} <= {("a",), ("b",)}
    assert len(rest) == 11


def test_drop_seen_removes_test_windows_that_occur_in_train() -> None:
    from training.data_splits import drop_seen

    train = _repeated({("a", "b"): (1, 0)})
    test = _repeated({("a", "b"): (1, 1), ("a", "c"): (1, 0)})
    kept, dropped = drop_seen(train, test)
    assert [s.messages for s in kept] == [["a", "c"]] and dropped == 2


def test_load_splits_distinct_on_hdfs_sessions(shared_data: Path) -> None:
    from training.datasets import load_splits
    from training.settings import DataSettings

    random_split = load_splits(DataSettings(data=shared_data))
    distinct = load_splits(DataSettings(data=shared_data, split="distinct"))
    for splits in (random_split, distinct):
        assert len(splits.train) + len(splits.validation) + len(splits.test) == 21693
    train_shapes = {tuple(s.messages) for s in (*distinct.train, *distinct.validation)}
    assert not any(tuple(s.messages) in train_shapes for s in distinct.test)
    assert {tuple(s.messages) for s in distinct.train}.isdisjoint({tuple(s.messages) for s in distinct.validation})
    seen = {tuple(s.messages) for s in (*random_split.train, *random_split.validation)}
    assert sum(tuple(s.messages) not in seen for s in random_split.test) == 780  # of 4,339: most were in train
