"""How one source's lines become windows: the global settings, or a per-source override (``--sources``).

A ``Windowing`` is frozen and hashable, so a request's lines can be grouped by it and each group appended with
its own mode and sizes in the same store call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from model.vocab import NoveltyMode

LogFormat = Literal["raw", "hdfs", "bgl", "thunderbird", "liberty", "rfc3164", "rfc5424", "auto"]  # auto: per source
WindowMode = Literal["session", "fixed"]
SyslogField = Literal["hostname", "app_name", "procid", "msgid"]  # syslog header fields that can name a session


def compiled_pattern(value: str) -> str:
    """A session pattern that compiles, or a ValueError saying why (pydantic names the field)."""
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    return value


@dataclass(frozen=True)
class Windowing:
    """Everything that decides which window a line joins and when that window closes."""

    mode: WindowMode = "session"
    session_pattern: str = r"blk_-?\d+"
    log_format: LogFormat = "raw"
    size: int = 100
    step: int = 100
    max_session_lines: int = 128


DEFAULTS = Windowing()  # the one place the default windowing is written; the settings and the store start from it


class SourceWindowing(BaseModel):
    """Overrides for one source (the line's ``source`` field or ``?source=``); unset fields keep the global value."""

    model_config = ConfigDict(extra="forbid")

    window_mode: WindowMode | None = None
    session_pattern: str | None = None
    log_format: LogFormat | None = None
    window_size: int | None = Field(default=None, gt=0)
    window_step: int | None = Field(default=None, gt=0)
    max_session_lines: int | None = Field(default=None, gt=0)
    json_message_field: str | None = None  # read by the intake (ServiceSettings.json_message_fields), not a windowing
    metadata_to_model: str | None = None  # read by the intake (ServiceSettings.metadata_keys)
    syslog_session_field: SyslogField | None = None  # not windowing: read by the syslog listener per source
    novelty: NoveltyMode | None = None  # not windowing: the pattern keeper's mode for this source (patterns/policy.py)

    @field_validator("session_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        return value if value is None else compiled_pattern(value)

    def over(self, base: Windowing) -> Windowing:
        return Windowing(
            mode=self.window_mode or base.mode,
            session_pattern=self.session_pattern or base.session_pattern,
            log_format=self.log_format or base.log_format,
            size=self.window_size or base.size,
            step=self.window_step or base.step,
            max_session_lines=self.max_session_lines or base.max_session_lines,
        )
