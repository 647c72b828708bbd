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
