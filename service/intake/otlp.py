"""OTLP/HTTP logs (``POST /v1/logs``): ExportLogsServiceRequest in protobuf or in OTLP's JSON encoding.

Messages come from the ``opentelemetry-proto`` package (the spec's generated code). The ``service.name``
resource attribute gives the source; ``--session-attribute`` names the attribute that gives the session (the
record's attributes first, then its resource's; ``trace_id``/``span_id`` take the record's ids as hex). A record
whose body is not a string is rendered as JSON text. Record attributes go to ``build_batch`` as metadata (kept in
the record; the model reads only ``--metadata-to-model`` keys), and each record's digest lets a re-sent record
be stored once (service/intake/dedup.py). Rejected records are reported in the response's
``partial_success``, as the protocol wants; the accepted ones are stored.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from pydantic import TypeAdapter, ValidationError

from service.http_errors import ApiError, shorten
from service.intake.batch import LogLine, Rejection, SourceName, WindowName
from service.intake.dedup import Digest, otlp_digest
from service.settings import ServiceSettings

_SESSION_NAME: TypeAdapter[str] = TypeAdapter(WindowName)
_SOURCE_NAME: TypeAdapter[str] = TypeAdapter(SourceName)
_ID_FIELDS = ("traceId", "spanId", "trace_id", "span_id")


def request_from_protobuf(body: bytes) -> ExportLogsServiceRequest:
    try:
        return ExportLogsServiceRequest.FromString(body)
    except DecodeError as exc:
        raise ApiError(
            400, "bad_protobuf", f"the body is not an ExportLogsServiceRequest: {exc}", field="body"
        ) from None


def _hex_ids_to_base64(document: Any) -> None:
    """OTLP JSON writes trace and span ids as hex, where protobuf's JSON mapping expects base64."""
    for resource_logs in document.get("resourceLogs", []) if isinstance(document, dict) else []:
        for scope_logs in resource_logs.get("scopeLogs", []) if isinstance(resource_logs, dict) else []:
            for record in scope_logs.get("logRecords", []) if isinstance(scope_logs, dict) else []:
                for name in _ID_FIELDS if isinstance(record, dict) else ():
                    value = record.get(name)
                    if isinstance(value, str) and value:
                        try:
                            record[name] = base64.b64encode(bytes.fromhex(value)).decode()
                        except ValueError:
                            raise ApiError(
                                400, "bad_json", f"{name} {shorten(value)} is not hex", field=f"logRecords.{name}"
                            ) from None


def request_from_json(body: bytes) -> ExportLogsServiceRequest:
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "bad_json", f"the body is not JSON: {exc}", field="body") from None
    _hex_ids_to_base64(document)
    request = ExportLogsServiceRequest()
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise ApiError(
            400, "bad_json", f"not an ExportLogsServiceRequest: {shorten(str(exc), 200)}", field="body"
        ) from None
    return request


def any_text(value: AnyValue) -> str:
    """A body or attribute value as text: strings as they are, anything else as JSON."""
    kind = value.WhichOneof("value")
    if kind is None:
        return ""
    if kind == "string_value":
        return value.string_value
    if kind == "bytes_value":
        return value.bytes_value.hex()
    if kind in ("bool_value", "int_value", "double_value"):
        return json.dumps(getattr(value, kind))
    return json.dumps(json_format.MessageToDict(value)[kind.replace("_value", "Value")], separators=(",", ":"))


def _attribute(attributes: Any, name: str) -> str | None:
    for kv in attributes:
        if isinstance(kv, KeyValue) and kv.key == name:
            return any_text(kv.value) or None
    return None


def _name_or_none(value: str | None, rule: TypeAdapter[str]) -> tuple[str | None, bool]:
    if value is None:
        return None, True
    try:
        return rule.validate_python(value), True
    except ValidationError:
        return value, False


@dataclass
class OtlpLines:
    lines: list[tuple[int, LogLine]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    where: list[str] = field(default_factory=list)  # index -> "resourceLogs[i].scopeLogs[j].logRecords[k]"
    metadata: dict[int, list[tuple[str, str]]] = field(default_factory=dict)  # index -> record attributes
    digests: list[tuple[int, Digest]] = field(default_factory=list)  # (index, its dedup.Digest) of each record


def otlp_lines(request: ExportLogsServiceRequest, settings: ServiceSettings) -> OtlpLines:
    """Every log record as an indexed LogLine, in order; a record that cannot name its window is rejected."""
    out = OtlpLines()
    wanted = settings.session_attribute
    dedup = settings.entry_dedup_window_s > 0  # digests only when they are looked up
    for i, resource_logs in enumerate(request.resource_logs):
        resource = resource_logs.resource.attributes
        source, source_ok = _name_or_none(_attribute(resource, "service.name"), _SOURCE_NAME)
        resource_bytes = resource_logs.resource.SerializeToString(deterministic=True)
        for j, scope_logs in enumerate(resource_logs.scope_logs):
            context = (
                resource_bytes + b"\x00" + scope_logs.scope.SerializeToString(deterministic=True) if dedup else b""
            )
            for k, record in enumerate(scope_logs.log_records):
                index = len(out.where)
                out.where.append(f"resourceLogs[{i}].scopeLogs[{j}].logRecords[{k}]")
                if not source_ok:
                    out.rejected.append(Rejection(index=index, reason="invalid_source", message=shorten(source)))
                    continue
                session: str | None = None
                if wanted in ("trace_id", "span_id"):
                    session = getattr(record, wanted).hex() or None
                elif wanted:
                    session = _attribute(record.attributes, wanted) or _attribute(resource, wanted)
                session, session_ok = _name_or_none(session, _SESSION_NAME)
                if not session_ok:
                    out.rejected.append(Rejection(index=index, reason="invalid_session", message=shorten(session)))
                    continue
                timestamp = record.time_unix_nano or record.observed_time_unix_nano  # 0 in both: not known
                line = LogLine.model_construct(
                    message=any_text(record.body),
                    session_id=session,
                    timestamp=str(timestamp) if timestamp else None,
                    source=source,
                )
                if record.attributes:
                    out.metadata[index] = [(kv.key, any_text(kv.value)) for kv in record.attributes]
                if dedup:
                    out.digests.append((index, otlp_digest(context, record)))
                out.lines.append((index, line))
    return out


def response(rejected: list[Rejection], where: list[str], as_json: bool) -> tuple[bytes, str]:
    """ExportLogsServiceResponse (partial_success only when something was rejected), encoded like the request."""
    message = ExportLogsServiceResponse()
    if rejected:
        problems = "; ".join(f"{where[r.index]}: {r.reason} ({r.message})" for r in rejected[:5])
        message.partial_success.CopyFrom(
            ExportLogsPartialSuccess(
                rejected_log_records=len(rejected),
                error_message=f"{len(rejected)} log records rejected: {problems}"[:1000],
            )
        )
    if as_json:
        return json_format.MessageToJson(message, indent=None).encode(), "application/json"
    return message.SerializeToString(), "application/x-protobuf"
