"""``logllm feedback export``: the labeled windows of a running service as generic training JSONL.

The output is what ``GET /feedback`` returns, and ``logllm train --dataset generic`` reads it as it is
(one ``{"sequence_id", "message", "label"}`` object per line; the lines of a window share its id).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

import httpx
from pydantic import AnyHttpUrl, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class FeedbackExportSettings(BaseSettings):
    """Which service to ask; each field is also a flag and an env var (LOGLLM_FEEDBACK_URL)."""

    model_config = SettingsConfigDict(env_prefix="LOGLLM_FEEDBACK_", extra="ignore")

    url: AnyHttpUrl = Field(default=AnyHttpUrl("http://127.0.0.1:8000"), description="base URL of the running service")
    since: float = Field(default=0.0, ge=0, description="labels given at or after this time (unix seconds)")
    limit: int = Field(default=10_000, gt=0, description="most labeled windows to export")
    output: Path | None = Field(default=None, description="file to write (default: standard output)")
    token: SecretStr | None = Field(default=None, description="bearer token, if the service sets auth_token")
    timeout_s: float = Field(default=60.0, gt=0, description="HTTP timeout")


def export_feedback(settings: FeedbackExportSettings, client: httpx.Client, out: TextIO) -> tuple[int, int]:
    """Write the export to out; (windows exported, labeled windows without kept lines). SystemExit on an error."""
    headers = {"Authorization": f"Bearer {settings.token.get_secret_value()}"} if settings.token else {}
    try:
        response = client.get(
            f"{str(settings.url).rstrip('/')}/feedback",
            params={"since": settings.since, "limit": settings.limit},
            headers=headers,
        )
    except httpx.HTTPError as exc:
        raise SystemExit(f"logllm feedback export: {settings.url}: {exc}") from None
    if response.status_code != 200:
        raise SystemExit(f"logllm feedback export: HTTP {response.status_code}: {response.text[:300]}")
    out.write(response.text)
    return int(response.headers.get("X-Logllm-Windows", 0)), int(response.headers.get("X-Logllm-Without-Lines", 0))


def add_feedback_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from model.cli_args import add_settings_arguments

    parser = subparsers.add_parser("feedback", help="labels operators gave the service's verdicts")
    actions = parser.add_subparsers(dest="feedback_command", required=True, metavar="ACTION")
    export = actions.add_parser(
        "export",
        help="labeled windows as generic training JSONL (logllm train --dataset generic)",
        description="GET /feedback from a running service. Every flag is also an environment variable "
        "LOGLLM_FEEDBACK_<FLAG>; prefer LOGLLM_FEEDBACK_TOKEN over --token.",
    )
    add_settings_arguments(export, FeedbackExportSettings)
    export.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    from model.cli_args import settings_from_args

    settings = settings_from_args(FeedbackExportSettings, args)
    with httpx.Client(timeout=settings.timeout_s) as client:
        if settings.output is None:
            windows, without = export_feedback(settings, client, sys.stdout)
        else:
            with settings.output.open("w", encoding="utf-8") as handle:
                windows, without = export_feedback(settings, client, handle)
    note = f"; {without} labeled windows had no kept lines" if without else ""
    print(f"# exported {windows} labeled windows{note}", file=sys.stderr)
    return 0
