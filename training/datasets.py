"""One entry point from ``--dataset``/``--data`` to train, validation and test splits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from training.data import (
    LabeledSequence,
    LoadReport,
    load_generic,
    load_hdfs,
    load_hdfs_keyseq_benchmark,
    load_line_labeled,
    split_validation,
    stratified_split,
)
from training.data_splits import drop_seen, split_sequences
from training.data_text import load_text
from training.settings import DataSettings

LOG_FOLDERS = {"bgl": "BGL", "thunderbird": "Thunderbird", "liberty": "Liberty"}  # Loghub's folder names


class DatasetError(RuntimeError):
    """The data directory does not hold what ``--dataset`` expects; the message says what was looked for."""


@dataclass
class Splits:
    """Model selection uses ``validation`` (carved out of train); ``test`` is only ever reported."""

    train: list[LabeledSequence]
    validation: list[LabeledSequence]
    test: list[LabeledSequence]
    report: LoadReport

    def describe(self) -> str:
        def part(name: str, items: list[LabeledSequence]) -> str:
            anomalous = sum(s.label for s in items)
            return f"{name} {len(items)} ({anomalous} anomalous)"

        sizes = ", ".join(part(n, getattr(self, n)) for n in ("train", "validation", "test"))
        return f"{sizes}; {self.report.summary()}"


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise DatasetError(f"{what} not found at {path}")
    return path


def load_splits(settings: DataSettings) -> Splits:
    """Read the configured data set; random 80/20 for sessions, chronological 80/20 for line-labeled logs and
    fixed windows of plain text."""
    if settings.dataset == "service":
        raise DatasetError("--dataset service is what --from-service trains on; give --from-service URL --source S")
    data = settings.data
    report = LoadReport()
    if settings.dataset == "hdfs-sessions":
        folder = data / "HDFS_deeplog_keyseq" if (data / "HDFS_deeplog_keyseq").is_dir() else data
        templates = data / "HDFS" / "HDFS_templates.csv"
        train, test = load_hdfs_keyseq_benchmark(
            _need(folder, "DeepLog HDFS key sequences"),
            _need(templates, "HDFS templates"),
            seed=settings.seed,
            report=report,
            split=settings.split,
        )
    elif settings.dataset == "hdfs":
        sequences = load_hdfs(
            _need(data / "HDFS.log", "HDFS.log"),
            _need(data / "anomaly_label.csv", "anomaly_label.csv"),
            max_messages=settings.max_messages,
            on_error=settings.on_error,
            report=report,
        )
        train, test = split_sequences(sequences, 0.2, settings.seed, settings.split)
    elif settings.dataset == "text":
        sequences = load_text(
            _need(data, "log file"),
            log_format=settings.log_format,
            window_mode=settings.window_mode,
            session_pattern=settings.session_pattern,
            window_size=settings.window_size,
            window_step=settings.window_step,
            max_messages=settings.max_messages,
            max_lines=settings.max_lines,
            on_error=settings.on_error,
            report=report,
        )
        if settings.window_mode == "session":
            train, test = split_sequences(sequences, 0.2, settings.seed, settings.split)
        else:  # time order, like the line-labeled logs: the last fifth is the test
            cut = len(sequences) - max(1, len(sequences) // 5) if len(sequences) > 1 else len(sequences)
            train, test = sequences[:cut], sequences[cut:]
            if settings.split == "distinct":
                test, report.dropped_seen = drop_seen(train, test)
    elif settings.dataset == "generic":
        sequences = load_generic(
            _need(data, "data file"),
            window_size=settings.window_size,
            window_step=settings.window_step,
            max_messages=settings.max_messages,
            on_error=settings.on_error,
            report=report,
        )
        train, test = split_sequences(sequences, 0.2, settings.seed, settings.split)
    else:
        path = data if data.is_file() else _need(data / LOG_FOLDERS[settings.dataset], "log folder")
        if path.is_dir():
            logs = sorted(path.glob("*.log"))
            if not logs:
                raise DatasetError(f"no *.log file in {path}")
            path = logs[0]
        train, test = load_line_labeled(
            path,
            settings.dataset,
            window_size=settings.window_size,
            step=settings.window_step,
            max_lines=settings.max_lines,
            max_messages=settings.max_messages,
            on_error=settings.on_error,
            report=report,
        )
        if settings.split == "distinct":  # time order stays; windows seen in train leave the test split
            test, report.dropped_seen = drop_seen(train, test)
    train, validation = split_validation(
        train, fraction=settings.validation_fraction, seed=settings.seed, mode=settings.split
    )
    if settings.eval_limit is not None:
        validation, test = (_sample(part, settings.eval_limit, settings.seed) for part in (validation, test))
    return Splits(list(train), list(validation), list(test), report)


def _sample(part: list[LabeledSequence], limit: int, seed: int) -> list[LabeledSequence]:
    """A stratified sample of at most ``limit`` sequences (smoke runs); reports must say when it was used."""
    if len(part) <= limit:
        return part
    return stratified_split(part, limit / len(part), seed)[1]

