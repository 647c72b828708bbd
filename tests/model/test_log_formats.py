"""Content extraction for each format matches Loghub's structured CSVs on the real 2k samples."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from model.log_formats import LogFormatError, content_parser, is_anomalous_label, parse_line


@pytest.mark.parametrize(("folder", "fmt"), [("BGL", "bgl"), ("Thunderbird", "thunderbird"), ("HDFS", "hdfs")])
def test_content_matches_loghub_structured_csv(shared_data: Path, folder: str, fmt: str) -> None:
    log = shared_data / folder / f"{folder}_2k.log"
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    structured = shared_data / folder / f"{folder}_2k.log_structured.csv"
    with structured.open(encoding="utf-8", errors="replace") as f:
        rows = list(csv.DictReader(f))
    assert len(lines) == len(rows) == 2000
    for line, row in zip(lines, rows, strict=True):
        assert parse_line(line, fmt).content.strip() == row["Content"].strip()


def test_bgl_labels(shared_data: Path) -> None:
    lines = (shared_data / "BGL" / "BGL_2k.log").read_text().splitlines()
    labels = [parse_line(line, "bgl").label for line in lines]
    assert sum(is_anomalous_label(label) for label in labels) == 143


def test_liberty_shares_the_thunderbird_layout() -> None:
    line = "- 1102911139 2004.12.13 ladmin2 Dec 12 20:12:19 ladmin2/ladmin2 ntpd[7113]: synchronized to 10.0.0.1"
    parsed = parse_line(line, "liberty")
    assert (parsed.content, parsed.label, parsed.is_anomalous) == ("synchronized to 10.0.0.1", "-", False)


def test_raw_keeps_the_whole_line() -> None:
    assert parse_line("anything at all\n", "raw").content == "anything at all"


def test_bad_lines_name_the_format_and_the_line() -> None:
    with pytest.raises(LogFormatError, match=r"hdfs: .*'not an hdfs line'"):
        parse_line("not an hdfs line", "hdfs")
    with pytest.raises(LogFormatError, match=r"bgl: expected at least 9 header fields, got 2"):
        parse_line("- 1117838570", "bgl")
    with pytest.raises(LogFormatError, match="unknown log format 'syslog'"):
        parse_line("x", "syslog")


BAD_LINES = ["", "   ", "no header here", "081109 203518 148 INFO no component colon", "- 1 2 3", "x\r\n"]


@pytest.mark.parametrize(
    ("folder", "fmt"),
    [("BGL", "bgl"), ("Thunderbird", "thunderbird"), ("Thunderbird", "liberty"), ("HDFS", "hdfs"), ("HDFS", "raw")],
)
def test_content_parser_is_parse_line_content(shared_data: Path, folder: str, fmt: str) -> None:
    """The intake's per-format parser gives parse_line's content, and its error, on every sample line."""
    log = shared_data / folder / f"{folder}_2k.log"
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True) + BAD_LINES
    parse = content_parser(fmt)
    for line in lines:
        try:
            expected: str | LogFormatError = parse_line(line, fmt).content
        except LogFormatError as exc:
            expected = exc
        if isinstance(expected, LogFormatError):
            with pytest.raises(LogFormatError) as raised:
                parse(line)
            assert str(raised.value) == str(expected)
        else:
            assert parse(line) == expected
