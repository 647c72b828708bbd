"""The OpenAPI shape of a record (``GET /sequences/{id}``), so clients see each field, the lines' ``raw`` included.

The route returns ``record_store.public_record``'s dict and serves it with ``response_model_exclude_unset``:
fields a record does not have (``fixed_key`` on a session window, ``raw`` in an explanation written before raw
lines were kept) stay absent rather than turning into nulls.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RecordLine(BaseModel):
    raw: str = Field(description="the line as shipped (timestamp, host, level...); = content for raw-format sources")
    content: str = Field(description="what the source's log format cut out of it (the model reads it preprocessed)")
    line: str = Field(description="the same as content (the field's name before raw lines were kept)")
    message: str | None = Field(default=None, description="the preprocessed message (template) the model read")
    timestamp: str | int | float | None = Field(
        default=None,
        description="the line's timestamp as sent (JSON, NDJSON, Loki, OTLP; syslog: the header's, an RFC 3164 one"
        " with its year added); absent if none",
    )


class TopLine(BaseModel):
    model_config = ConfigDict(extra="allow")

    message: str = Field(description="a distinct preprocessed message of the window")
    contribution: float | None = Field(
        description="the drop in score when all its occurrences are removed (occlusion); null for a template the"
        " novelty rule found, which explains its window without an occlusion pass"
    )
    count: int = Field(description="its occurrences in the window")
    line: str | None = Field(default=None, description="the content of the first line that carried it")
    raw: str | None = Field(default=None, description="that line as shipped (absent on records written before)")


class RecordFeedback(BaseModel):
    label: str
    note: str | None = None
    at: float = Field(description="when the label was given (unix seconds); the last label wins")
    mute_id: str | None = None


class RecordResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    source: str = ""
    kind: str = Field(default="session", description="session | fixed")
    close_reason: str = ""
    status: str = Field(default="", description="anomalous | failed | muted | normal")
    score: float | None = None
    threshold: float | None = None
    n_lines: int = 0
    closed_at: float | None = None
    scored_at: float | None = None
    model_version: str = ""
    error: str | None = None
    lines_kept: bool = False
    explanation: list[TopLine] | None = Field(default=None, description="top lines, strongest first")
    explanation_status: str | None = Field(
        default=None,
        description="pending (the verdict is written, its explanation follows), done, partial (the time budget"
        " ran out: the messages measured so far), failed; null for windows that get none",
    )
    feedback: RecordFeedback | None = None
    session_key: str | None = Field(default=None, description="session windows")
    window_number: int | None = Field(default=None, description="session windows: 0, then #1, #2...")
    fixed_key: str | None = Field(default=None, description="fixed windows")
    start: int | None = Field(default=None, description="fixed windows: index of the first line in its source")
    lines: list[RecordLine] | None = Field(
        default=None, description="the window's lines while retention keeps them (empty once they are gone)"
    )
