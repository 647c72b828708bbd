"""Elasticsearch's bulk API as a shipper sends it: NDJSON action and document pairs, one log line per document.

rsyslog's ``omelasticsearch``, Filebeat, Fluent Bit's ``es`` output, Vector's ``elasticsearch`` sink and Logstash
all speak it. Each document's line is its ``--es-message-field`` (default ``message``), its source the
``--es-source-field`` value or else the index. Every action gets its own item in the answer, as Elasticsearch
answers: a malformed action or document line is refused alone (status 400, its line number in the reason), and
the other documents are stored. ``delete`` and ``update`` have nothing to do with log lines and get 400 each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from service.intake.batch import Batch, LineFields
from service.intake.body import split_lines
from service.settings import ServiceSettings
from service.windows.ids import BadWindowName, check_source

ACTIONS = ("index", "create", "update", "delete")
_SHARDS = {"total": 1, "successful": 1, "failed": 0}


@dataclass
class BulkItem:
    """One action of the request and what became of it; ``error`` set when it was refused."""

    action: str
    index: str | None
    doc_id: str | None
    status: int = 201
    error: tuple[str, str] | None = None  # (Elasticsearch error type, reason)

    def refuse(self, status: int, kind: str, reason: str) -> None:
        self.status, self.error = status, (kind, reason[:300])

    def answer(self, seq_no: int) -> dict[str, Any]:
        """The item as Elasticsearch writes it in a bulk answer (and, unwrapped, for a single document)."""
        out: dict[str, Any] = {"_index": self.index or "", "_id": self.doc_id, "status": self.status}
        if self.error is not None:
            out["error"] = {"type": self.error[0], "reason": self.error[1], "index": self.index or ""}
        else:
            out |= {"_version": 1, "result": "created", "_shards": _SHARDS, "_seq_no": seq_no, "_primary_term": 1}
        return out


@dataclass
class BulkRequest:
    items: list[BulkItem] = field(default_factory=list)
    lines: list[LineFields] = field(default_factory=list)  # index = the item's position


def _action(text: str) -> tuple[str, dict[str, Any]] | None:
    """(action, metadata) of an action line, or None when the line is not one."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if type(value) is not dict or len(value) != 1:
        return None
    ((name, meta),) = value.items()
    if name not in ACTIONS or type(meta) is not dict:
        return None
    return name, meta


def _text(value: Any) -> str | None:
    return value if type(value) is str else None


def _document_line(document: Any, fields: list[str], source_field: str) -> tuple[str, str | None] | str:
    """(message, source named by the document) or the reason the document cannot give a line."""
    if type(document) is not dict:
        return "the document is not a JSON object"
    message = next((document[f] for f in fields if f in document), None)
    if type(message) is not str:
        names = ", ".join(fields)
        return f"no string field {names} in the document" if message is None else f"field {names} is not a string"
    return message, _text(document.get(source_field)) if source_field else None


def parse_bulk(text: str, path_index: str | None, settings: ServiceSettings) -> BulkRequest:
    """Every action of the body, each with its document's line or its own refusal (line numbers from 1)."""
    out = BulkRequest()
    fields = [f.strip() for f in settings.es_message_field.split(",") if f.strip()]
    rows = [(n, row) for n, row in enumerate(split_lines(text), 1) if row.strip()]
    i = 0
    while i < len(rows):
        number, row = rows[i]
        i += 1
        parsed = _action(row)
        if parsed is None:
            item = BulkItem("index", path_index, None)
            item.refuse(400, "illegal_argument_exception", f"line {number}: not an action (index, create, update,"
                        f" delete) with its metadata object: {row[:80]!r}")  # fmt: skip
            out.items.append(item)
            if i < len(rows) and _action(rows[i][1]) is None:
                i += 1  # the broken action's document goes with it
            continue
        name, meta = parsed
        item = BulkItem(name, _text(meta.get("_index")) or path_index, _text(meta.get("_id")))
        out.items.append(item)
        if name != "delete":
            document_row = rows[i] if i < len(rows) else None
            i += 1
        if name in ("delete", "update"):
            item.refuse(400, "illegal_argument_exception", f"line {number}: {name} is not supported: logllm stores"
                        " log lines, it does not keep documents to change")  # fmt: skip
            continue
        if document_row is None:
            item.refuse(400, "illegal_argument_exception", f"line {number}: the {name} action has no document line")
            continue
        try:
            document = orjson.loads(document_row[1])
        except orjson.JSONDecodeError as exc:
            item.refuse(400, "document_parsing_exception", f"line {document_row[0]}: not JSON: {exc}")
            continue
        line = _document_line(document, fields, settings.es_source_field)
        if isinstance(line, str):
            item.refuse(400, "document_parsing_exception", f"line {document_row[0]}: {line}")
            continue
        message, named_source = line
        source = named_source or item.index
        if source is None:
            item.refuse(400, "action_request_validation_exception", f"line {number}: index is missing")
            continue
        try:
            check_source(source)
        except BadWindowName as exc:
            item.refuse(400, "illegal_argument_exception", f"line {number}: {exc}")
            continue
        stamp = document.get("@timestamp") if isinstance(document, dict) else None  # kept with the line, as sent
        timestamp = stamp if isinstance(stamp, str | int | float) and not isinstance(stamp, bool) else None
        out.lines.append((len(out.items) - 1, message, None, source, timestamp))
    return out


def apply_batch(request: BulkRequest, batch: Batch) -> None:
    """The batch's rejections (cannot be windowed; refused at a cap in a race) onto their items."""
    for rejection in batch.rejected:
        item = request.items[rejection.index]
        if rejection.reason in ("queue_full", "too_many_sessions"):
            item.refuse(429, "es_rejected_execution_exception", f"{rejection.reason}: {rejection.message}")
        else:
            item.refuse(400, "document_parsing_exception", f"{rejection.reason}: {rejection.message}")


def bulk_answer(request: BulkRequest, took_ms: int) -> dict[str, Any]:
    """``{took, errors, items}``: one item per action, keyed by the action's name."""
    items = [{item.action: item.answer(seq)} for seq, item in enumerate(request.items)]
    return {"took": took_ms, "errors": any(item.error for item in request.items), "items": items}


def root_answer(version: str) -> dict[str, Any]:
    """``GET /``: what Elasticsearch answers, so clients that check the version before sending go on."""
    return {
        "name": "logllm",
        "cluster_name": "logllm",
        "cluster_uuid": "logllm",
        "version": {
            "number": version,
            "build_flavor": "default",
            "build_type": "docker",
            "lucene_version": "9.12.0",
            "minimum_wire_compatibility_version": "7.17.0",
            "minimum_index_compatibility_version": "7.0.0",
        },
        "tagline": "You Know, for Search",
    }
