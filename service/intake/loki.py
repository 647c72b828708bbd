"""Loki's push API (``POST /loki/api/v1/push``): JSON, or protobuf in a snappy block (Loki's default body).

Both become the same ``(index, LogLine)`` list that ``build_batch`` takes. The source is the value of the first
stream label of ``--source-label`` present (default ``service_name``, then ``job``); ``--session-label`` names a
label, or a structured-metadata key, that gives the session id (else the session pattern finds it); a
structured-metadata key of ``--source-label`` names the source when no stream label does. Structured metadata
goes to ``build_batch`` beside the line: the record keeps it, the model reads only the keys of
``--metadata-to-model`` (service/intake/message.py); a line ending in a JSON copy of its own metadata
(winston-loki's default) loses the copy. Each entry's digest (stream labels, timestamp, line,
metadata) lets a re-sent entry be stored once (service/intake/dedup.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import cramjam
from google.protobuf.message import DecodeError
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from service.http_errors import ApiError, shorten
from service.intake.batch import LogLine, Rejection, SourceName, WindowName
from service.intake.body import too_large
from service.intake.dedup import Digest, loki_digest, stream_identity
from service.intake.message import without_metadata_copy
from service.intake.proto import push_pb2
from service.settings import ServiceSettings

_LABEL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')
_UNESCAPE = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}


class LokiJsonStream(BaseModel):
    model_config = ConfigDict(extra="ignore")

    stream: dict[str, str] = Field(default_factory=dict)
    values: list[tuple[str, str] | tuple[str, str, dict[str, str]]]


class LokiJsonPush(BaseModel):
    model_config = ConfigDict(extra="ignore")

    streams: list[LokiJsonStream]


@dataclass
class LokiStream:
    """One stream: its labels (None when the label text does not parse) and (timestamp ns, line, metadata)."""

    labels: dict[str, str] | None
    entries: list[tuple[str, str, list[tuple[str, str]]]] = field(default_factory=list)
    label_text: str = ""


def parse_labels(text: str) -> dict[str, str] | None:
    """A Prometheus label set ``{a="x", b="y\\"z"}``; None when it is not one."""
    inner = text.strip()
    if not (inner.startswith("{") and inner.endswith("}")):
        return None
    inner = inner[1:-1].strip()
    labels: dict[str, str] = {}
    pos = 0
    while pos < len(inner):
        match = _LABEL.match(inner, pos)
        if match is None:
            return None
        labels[match[1]] = re.sub(r"\\(.)", lambda m: _UNESCAPE.get(m[1], m[1]), match[2])
        pos = match.end()
    return labels


def streams_from_json(body: bytes) -> list[LokiStream]:
    try:
        push = LokiJsonPush.model_validate_json(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".") or "body"
        if error["type"] == "json_invalid":
            raise ApiError(400, "bad_json", f"the body is not JSON: {error['msg']}", field="body") from None
        raise ApiError(
            400, "invalid_push", f"{where}: {error['msg']} (got {shorten(error.get('input'))})", field=where
        ) from None
    return [
        LokiStream(
            labels=s.stream,
            entries=[(v[0], v[1], list(v[2].items()) if len(v) == 3 else []) for v in s.values],  # type: ignore[misc]
        )
        for s in push.streams
    ]


def streams_from_protobuf(body: bytes, limit: int) -> list[LokiStream]:
    """Snappy block format (its header declares the decoded size, checked before inflating), then PushRequest."""
    try:
        size = cramjam.snappy.decompress_raw_len(body)
    except Exception as exc:  # cramjam raises its own DecompressionError
        raise ApiError(400, "bad_snappy", f"the body is not a snappy block: {exc}", field="body") from None
    if size > limit:
        raise too_large(limit, f"snappy-decoded body ({size} bytes)")
    try:
        raw = bytes(cramjam.snappy.decompress_raw(body))
    except Exception as exc:
        raise ApiError(400, "bad_snappy", f"the body is not a snappy block: {exc}", field="body") from None
    try:
        push = push_pb2.PushRequest.FromString(raw)
    except DecodeError as exc:
        raise ApiError(400, "bad_protobuf", f"the body is not a Loki PushRequest: {exc}", field="body") from None
    return [
        LokiStream(
            labels=parse_labels(s.labels),
            label_text=s.labels,
            entries=[
                (
                    str(e.timestamp.seconds * 10**9 + e.timestamp.nanos),
                    e.line,
                    [(m.name, m.value) for m in e.structuredMetadata],
                )
                for e in s.entries
            ],
        )
        for s in push.streams
    ]


@dataclass
class LokiLines:
    lines: list[tuple[int, LogLine]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    where: list[str] = field(default_factory=list)  # index -> "streams[i].values[j]"
    metadata: dict[int, list[tuple[str, str]]] = field(default_factory=dict)  # index -> structured metadata
    digests: list[tuple[int, Digest]] = field(default_factory=list)  # (index, its dedup.Digest) of each entry


_SESSION_NAME: TypeAdapter[str] = TypeAdapter(WindowName)
_SOURCE_NAME: TypeAdapter[str] = TypeAdapter(SourceName)


def _valid_name(value: str | None, rule: TypeAdapter[str]) -> bool:
    """Whether a label value may name a source or session (the JSON shape's rule for those fields)."""
    if value is None:
        return True
    try:
        rule.validate_python(value)
    except ValidationError:
        return False
    return True


def loki_lines(streams: list[LokiStream], settings: ServiceSettings) -> LokiLines:
    """Every entry as an indexed LogLine; an entry whose stream labels cannot name a window is rejected here."""
    out = LokiLines()
    dedup = settings.entry_dedup_window_s > 0  # digests only when they are looked up
    source_labels = [name.strip() for name in settings.source_label.split(",") if name.strip()]
    for i, stream in enumerate(streams):
        labels = stream.labels
        source = None
        if labels is not None:
            source = next((labels[name] for name in source_labels if labels.get(name)), None)
        identity = stream_identity(labels, stream.label_text) if dedup else b""
        for j, (timestamp, line, metadata) in enumerate(stream.entries):
            index = len(out.where)
            out.where.append(f"streams[{i}].values[{j}]")
            if labels is None:
                out.rejected.append(
                    Rejection(index=index, reason="bad_labels", message=f"labels {shorten(stream.label_text)}")
                )
                continue
            session = None
            entry_source = source
            if metadata:
                fields = dict(metadata)
                if entry_source is None:
                    entry_source = next((fields[name] for name in source_labels if fields.get(name)), None)
                if settings.session_label:
                    session = labels.get(settings.session_label) or fields.get(settings.session_label)
            elif settings.session_label:
                session = labels.get(settings.session_label)
            if not _valid_name(entry_source, _SOURCE_NAME):
                out.rejected.append(Rejection(index=index, reason="invalid_source", message=f"{shorten(entry_source)}"))
                continue
            if not _valid_name(session, _SESSION_NAME):
                out.rejected.append(Rejection(index=index, reason="invalid_session", message=f"{shorten(session)}"))
                continue
            if dedup:
                out.digests.append((index, loki_digest(identity, timestamp, line, metadata)))
            if metadata:
                out.metadata[index] = metadata
                if line[-1:] == "}":
                    line = without_metadata_copy(line, metadata)
            out.lines.append(
                (
                    index,
                    LogLine.model_construct(message=line, session_id=session, timestamp=timestamp, source=entry_source),
                )
            )
    return out
