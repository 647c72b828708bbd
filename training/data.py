"""Labeled sequences for training and evaluation, from the public log formats and users' own files.

One import point for the loaders; each lives in its own ``training/data_*.py`` module. Every loader streams
its input, returns sequences of *preprocessed* messages (the first ``max_messages`` of each), takes
``on_error="skip"|"fail"`` and fills an optional ``LoadReport`` (pass one in to print ``report.summary()``).
"""

from __future__ import annotations

from training.data_common import DataFormatError, LabeledSequence, LoadReport, OnError
from training.data_generic import load_generic, parse_label
from training.data_hdfs import hdfs_event_messages, load_hdfs, load_hdfs_keyseq_benchmark, read_hdfs_labels
from training.data_lines import LINE_LABELED_FORMATS, load_line_labeled
from training.data_splits import split_validation, stratified_split

__all__ = [
    "LINE_LABELED_FORMATS",
    "DataFormatError",
    "LabeledSequence",
    "LoadReport",
    "OnError",
    "hdfs_event_messages",
    "load_generic",
    "load_hdfs",
    "load_hdfs_keyseq_benchmark",
    "load_line_labeled",
    "parse_label",
    "read_hdfs_labels",
    "split_validation",
    "stratified_split",
]
