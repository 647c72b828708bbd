"""``logllm score``: score every window of a log file offline with a checkpoint, one line of output per window.

Windows are built exactly as the service builds them (same parsing, preprocessing and window ids:
``session:<source>:<session id>``, ``fixed:<source>:<start>``, as service/windows/ids.py writes them) and scored
the same way (model/chunked_scoring.py: a window longer than the model's limit is scored whole, in chunks), so
offline scores can be compared with the verdicts the service stores.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from model.cli_args import add_settings_arguments, settings_from_args
from model.settings import ModelSettings
from model.vocab import Novelty, NoveltyMode, Vocabulary


class ScoreSettings(ModelSettings):
    """Which checkpoint scores which windows."""

    checkpoint: Path = Field(Path("checkpoints/default"), description="checkpoint directory")
    log_format: Literal["raw", "hdfs", "bgl", "thunderbird", "liberty", "rfc3164", "rfc5424", "auto"] = Field(
        "raw",
        description="how to cut the message content out of each line ('auto': from the file's first lines); the"
        " checkpoint's format when not given",
    )
    window_mode: Literal["session", "fixed"] = Field("fixed", description="session ids or fixed/sliding windows")
    session_pattern: str = Field(r"blk_-?\d+", description="regex that finds session ids in a line")
    window_size: int = Field(100, gt=0, description="lines per fixed window")
    window_step: int = Field(100, gt=0, description="lines between fixed window starts")
    source: str = Field(
        "default", pattern=r"^[^\s#:]+$", description="source name in the window ids (no ':', '#' or white space)"
    )
    batch_size: int = Field(16, gt=0, description="windows per forward pass")
    on_error: Literal["skip", "fail"] = Field("fail", description="a line that cannot be parsed: skip it or stop")
    explain: bool = Field(False, description="add the top messages of each anomalous window (occlusion) as JSON")
    explain_top_k: int = Field(5, ge=1, description="messages per explanation")
    novelty: NoveltyMode = Field(
        "flag", description="templates outside the checkpoint's vocabulary: flag (anomalous), annotate, or off"
    )


@dataclass
class Window:
    """One window as the service builds it: its id, and per line the raw text, content and preprocessed message."""

    window_id: str
    raw: list[str] = field(default_factory=list)
    contents: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def add(self, raw: str, content: str, message: str) -> None:
        self.raw.append(raw)
        self.contents.append(content)
        self.messages.append(message)


def read_lines(path: Path, fmt: str, on_error: str) -> Iterator[tuple[str, str]]:
    """(raw line, message content) of a file, streamed; a bad line is reported as FILE:LINE."""
    from model.log_formats import LogFormatError, parse_line

    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            try:
                yield line, parse_line(line, fmt).content
            except LogFormatError as exc:
                if on_error == "fail":
                    raise SystemExit(f"{path}:{number}: {exc}") from None
                print(f"{path}:{number}: skipped: {exc}", file=sys.stderr)


def windows_of(path: Path, settings: ScoreSettings) -> Iterator[Window]:
    """The file's windows in the order they close, each with its lines' raw text for explanations."""
    from model.preprocess import preprocess
    from model.windows import fixed_windows, session_ids

    lines = read_lines(path, settings.log_format, settings.on_error)
    if settings.window_mode == "fixed":
        parsed = [(raw, content, preprocess(content)) for raw, content in lines]
        starts = fixed_windows(list(range(len(parsed))), settings.window_size, settings.window_step)
        for start, positions in starts:
            window = Window(f"fixed:{settings.source}:{start}")
            for i in positions:
                window.add(*parsed[i])
            yield window
        return
    sessions: dict[str, Window] = {}
    for raw, content in lines:
        message = preprocess(content)
        for sid in session_ids(content, settings.session_pattern):
            key = f"session:{settings.source}:{sid}"
            sessions.setdefault(key, Window(key)).add(raw, content, message)
    yield from sessions.values()


def add_score_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("score", help="score the windows of a log file with a checkpoint")
    parser.add_argument("file", type=Path, help="log file, one line per line")
    add_settings_arguments(parser, ScoreSettings)
    parser.set_defaults(handler=run_score)


def novelty_of(messages: list[str], vocabulary: Vocabulary | None, mode: NoveltyMode) -> Novelty:
    """The templates of a window outside the checkpoint's vocabulary (none without one, or with novelty off)."""
    from model.vocab import Novelty, window_novelty

    return window_novelty(messages, vocabulary) if vocabulary is not None and mode != "off" else Novelty()


def novelty_columns(messages: list[str], score: float, threshold: float, vocabulary: Vocabulary | None,
                    mode: NoveltyMode) -> str:  # fmt: skip
    """``label<TAB>reason<TAB>novelty``: the decision with the novelty rule, and the templates it found (JSON)."""
    from model.vocab import decide

    found = novelty_of(messages, vocabulary, mode)
    anomalous, reason = decide(score, threshold, found, mode)
    listed = json.dumps(found.to_json()) if found.reason else "-"
    return f"{'anomalous' if anomalous else 'normal'}\t{reason or '-'}\t{listed}"


def run_score(args: argparse.Namespace) -> int:
    """Print ``window_id<TAB>lines<TAB>score<TAB>label<TAB>reason<TAB>novelty`` per window (``--explain``: and a
    JSON column)."""
    from model.checkpoint import load_checkpoint
    from model.chunked_scoring import score_whole
    from model.vocab import for_windows, load_vocabulary

    settings = settings_from_args(ScoreSettings, args)
    if not args.file.is_file():
        raise SystemExit(f"logllm score: {args.file}: no such file")
    settings = with_checkpoint_reading(settings, args)
    windows = list(windows_of(args.file, settings))
    model, manifest = load_checkpoint(settings.checkpoint, settings)
    vocabulary = load_vocabulary(settings.checkpoint) if settings.novelty != "off" else None
    if settings.novelty != "off" and vocabulary is None:
        print(f"# novelty off: {settings.checkpoint} has no vocabulary (logllm vocab makes one)", file=sys.stderr)
    if vocabulary is not None:
        vocabulary = for_windows(vocabulary, sessions=settings.window_mode == "session")
    scores = score_whole(
        lambda sequences: model.score(sequences, batch_size=settings.batch_size),
        [w.messages for w in windows],
        model.max_messages,
    )
    print("window_id\tlines\tscore\tlabel\treason\tnovelty" + ("\texplanation" if settings.explain else ""))
    for window, score in zip(windows, scores, strict=True):
        decision = novelty_columns(window.messages, score, model.threshold, vocabulary, settings.novelty)
        row = f"{window.window_id}\t{len(window.messages)}\t{score:.6f}\t{decision}"
        if settings.explain:
            found = novelty_of(window.messages, vocabulary, settings.novelty)
            flagged = decision.startswith("anomalous")
            row += "\t" + explanation_column(model, window, score, found if flagged else None, settings.explain_top_k)
        print(row)
    print(f"# {len(windows)} windows, model {manifest.version}, threshold {model.threshold:.4f}", file=sys.stderr)
    return 0


def with_checkpoint_reading(settings: ScoreSettings, args: argparse.Namespace) -> ScoreSettings:
    """The checkpoint's log format and windowing (model/reading.py) for what no flag or env var gives, ``auto``
    resolved from the file's first lines; one ``# reading:`` line on stderr says what is used and why."""
    from model.format_detect import DETECT_LINES, detect_format
    from model.reading import READING_FIELDS, describe_reading, manifest_reading, resolve_reading

    flags = {k: v for k, v in vars(args).items() if k in ScoreSettings.model_fields}
    taken, origins = resolve_reading(READING_FIELDS, flags, manifest_reading(settings.checkpoint))
    if taken:
        settings = settings_from_args(ScoreSettings, argparse.Namespace(**{**flags, **taken}))
    described: dict[str, str] = dict(origins)
    if settings.log_format == "auto":
        with args.file.open(encoding="utf-8", errors="replace") as handle:
            first = [line for line, _ in zip(handle, range(DETECT_LINES), strict=False)]
        settings = settings.model_copy(update={"log_format": detect_format(first)})
        described["log_format"] = f"auto from the first {len(first)} lines, {origins['log_format']}"
    values = {name: getattr(settings, name) for name in READING_FIELDS}
    print(f"# reading: {describe_reading(values, described)}", file=sys.stderr)
    return settings


def explanation_column(model: Any, window: Window, score: float, found: Novelty | None, top_k: int) -> str:
    """The service's explanation of a flagged window (``found``: its novelty; None: not flagged) as JSON, [] for
    a window not flagged: the top messages by occlusion with the first line of each (raw and content), the
    templates the novelty rule found leading, as the records of the service show them."""
    from model.explain import explain, lead_with_novelty, one_pass

    if found is None:
        return "[]"
    k = len(set(window.messages)) if found.reason else top_k
    top = explain(one_pass(model), window.messages, k, base_score=score, lines=window.contents, raw_lines=window.raw)
    return json.dumps(lead_with_novelty(top, found.novel, found.known_anomalous, top_k))
