"""The message as the system wrote it: what the model reads of a line, apart from what a shipper added.

Shippers wrap a system's message: pino, winston and bunyan write a JSON object with the message in one field
(``msg``, ``message``), Docker's json-file driver puts the line in ``log``, Loki carries per-line structured
metadata beside the line and OTLP attributes beside the body. The model was trained on the messages alone, so a
``MessageRule`` (one per source and request) takes the message out of a JSON line (``--json-message-field``) and
leaves metadata out of it, unless ``--metadata-to-model`` names keys to append as ``key=value``. What the shipper
sent is never dropped: the record keeps the line as shipped, the metadata appended as logfmt.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import orjson

_LOGFMT_PLAIN = re.compile(r'^[^\s="]+$')
ALL_KEYS = "*"

Metadata = Sequence[tuple[str, str]]


def logfmt(pairs: Metadata) -> str:
    """``k=v`` pairs; a value with spaces, quotes or ``=`` is JSON-quoted."""
    return " ".join(f"{k}={v}" if _LOGFMT_PLAIN.match(v) else f"{k}={json.dumps(v)}" for k, v in pairs)


def _text(value: object) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def without_metadata_copy(line: str, metadata: Metadata) -> str:
    """The line without a trailing `` {json}`` that repeats its own metadata, as winston-loki sends every line
    (`` `${message} ${JSON.stringify(meta)}` `` with the same meta as structured metadata): the copy would reach
    the model on every line; the metadata itself is kept. Any other line is returned as it is."""
    start = line.rfind(" {")
    for _ in range(3):  # the copy is compact JSON (no " {" inside); a message may hold a few " {" of its own
        if start < 0:
            return line
        try:
            document = orjson.loads(line[start + 1 :])
        except orjson.JSONDecodeError:
            start = line.rfind(" {", 0, start)
            continue
        if type(document) is dict and {k: _text(v) for k, v in document.items()} == dict(metadata):
            return line[:start]
        return line
    return line


class MessageRule:
    """How one source's lines become the model's message: the JSON fields that hold it, the metadata keys that
    go with it."""

    def __init__(self, json_fields: Sequence[str], metadata_keys: frozenset[str]) -> None:
        self.json_fields = tuple(json_fields)
        self.all_keys = ALL_KEYS in metadata_keys
        self.keys = metadata_keys

    def chosen(self, pairs: Metadata) -> Metadata:
        """The pairs that go to the model."""
        if self.all_keys:
            return pairs
        return [(k, v) for k, v in pairs if k in self.keys] if self.keys else ()

    def json_message(self, line: str) -> str | None:
        """The message of a JSON-object line (the first of the fields present, with the chosen other fields
        appended), or None when the line is not a JSON object holding one of them as a string."""
        try:
            document = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        if type(document) is not dict:
            return None
        for name in self.json_fields:
            message = document.get(name)
            if type(message) is str:
                if not (self.all_keys or self.keys):
                    return message
                others = [(k, _text(v)) for k, v in document.items() if k != name]
                chosen = self.chosen(others)
                return f"{message} {logfmt(chosen)}" if chosen else message
        return None

    def apply(self, line: str, metadata: Metadata | None) -> tuple[str, str]:
        """(message for the model, line as shipped for the record) of one line and its metadata."""
        message = line
        if self.json_fields and line[:1] == "{":
            picked = self.json_message(line)
            message = line if picked is None else picked
        if not metadata:
            return message, line
        chosen = self.chosen(metadata)
        if chosen:
            message = f"{message} {logfmt(chosen)}"
        return message, f"{line} {logfmt(metadata)}"
