"""``logllm replay``: stream a log file into a running service at a steady rate (demos, load tests).

A replay is only useful if the service sees every line exactly once and in order, at a rate shaped like
real traffic: so a 429 is waited out (Retry-After) and the same batch sent again, a 413 splits the batch, a
5xx or a dropped connection is retried with backoff, and anything else stops the replay with the line to
resume from (``--skip``) rather than carrying on with a gap. Caveat: a 5xx may come after the service stored
part of a request (a Redis failure between partitions, see DESIGN.md), so a retried 5xx can repeat a few
lines; a 429 never does, because caps are checked before anything is written.
"""

from __future__ import annotations

import argparse
import email.utils
import gzip
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, TextIO

import httpx
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REQUESTS_PER_SECOND_AT_LOW_RATE = 10  # below rate*batch, batches shrink so lines flow evenly, not in bursts
MAX_LAG_S = 1.0  # after a stall (a 429 wait) the pacer catches up at most this much, then resumes the rate
MAX_BACKOFF_S = 30.0
MAX_RETRY_AFTER_S = 300.0


class ReplaySettings(BaseSettings):
    """Where and how fast to replay; each field is also a flag and an env var (LOGLLM_REPLAY_RATE)."""

    model_config = SettingsConfigDict(env_prefix="LOGLLM_REPLAY_", extra="ignore")

    url: str = Field(default="http://127.0.0.1:8000", description="base URL of the running service")
    rate: float = Field(default=1000.0, gt=0, description="lines per second to send")
    batch: int = Field(default=1000, gt=0, description="most lines per request")
    format: Literal["text", "json"] = Field(
        default="text", description="request body: 'text' (text/plain lines) or 'json' ({\"lines\": [...]})"
    )
    source: str | None = Field(default=None, description="source name sent as ?source= (fixed windows)")
    token: SecretStr | None = Field(default=None, description="bearer token, if the service sets auth_token")
    skip: int = Field(default=0, ge=0, description="file lines to skip first (resume an interrupted replay)")
    retries: int = Field(default=5, ge=0, description="retries of a request answered 5xx or cut off")
    timeout_s: float = Field(default=30.0, gt=0, description="HTTP timeout per request")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https:// (got {value[:60]!r})")
        return value


class ReplayAborted(Exception):
    """The service refused in a way a retry cannot fix; ``resume_at`` is the value for ``--skip``."""

    def __init__(self, message: str, resume_at: int) -> None:
        super().__init__(message)
        self.resume_at = resume_at


@dataclass
class ReplayStats:
    """Counters for the live line and the final summary."""

    started: float = field(default_factory=time.monotonic)
    lines_sent: int = 0  # delivered in a 2xx response
    accepted: int = 0
    rejected: int = 0
    blank_skipped: int = 0
    requests: int = 0
    status_429: int = 0
    status_4xx: int = 0  # 4xx other than 429
    status_5xx: int = 0
    transport_errors: int = 0
    waited_s: float = 0.0  # time spent honouring Retry-After and backoff
    windows_closed: int = 0
    resume_at: int = 0  # file lines fully delivered (incl. skipped and blank ones): the --skip to resume

    def rate(self, now: float | None = None) -> float:
        elapsed = (now if now is not None else time.monotonic()) - self.started
        return self.lines_sent / elapsed if elapsed > 0 else 0.0

    def live_line(self) -> str:
        return (
            f"sent {self.lines_sent} lines | {self.rate():.0f} lines/s | 429: {self.status_429} | "
            f"4xx: {self.status_4xx} | 5xx: {self.status_5xx} | windows closed: {self.windows_closed}"
        )

    def final_summary(self, path: str) -> str:
        elapsed = time.monotonic() - self.started
        return (
            f"replayed {path}: {self.lines_sent} lines sent in {elapsed:.1f} s ({self.rate():.0f} lines/s); "
            f"accepted {self.accepted}, rejected {self.rejected}, blank skipped {self.blank_skipped}; "
            f"{self.requests} requests, 429: {self.status_429} (waited {self.waited_s:.1f} s), "
            f"4xx: {self.status_4xx}, 5xx: {self.status_5xx}, connection errors: {self.transport_errors}; "
            f"windows closed: {self.windows_closed}"
        )


class Pacer:
    """Spaces requests so lines leave at ``rate`` per second on average.

    Each batch may leave once the previous ones' share of time has passed. After a stall longer than
    ``max_lag_s`` (a long Retry-After) the schedule restarts from now instead of bursting to catch up, which
    would only earn another 429.
    """

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_lag_s: float = MAX_LAG_S,
    ) -> None:
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.max_lag_s = max_lag_s
        self.due = clock()

    def wait(self) -> None:
        now = self.clock()
        if self.due > now:
            self.sleep(self.due - now)
        elif now - self.due > self.max_lag_s:
            self.due = now

    def spent(self, lines: int) -> None:
        self.due += lines / self.rate


class LiveLine:
    """The one-line progress display: rewritten in place on a terminal, else a plain line now and then."""

    def __init__(self, out: TextIO, interval_s: float, in_place: bool) -> None:
        self.out = out
        self.interval_s = interval_s
        self.in_place = in_place
        self.last = 0.0

    def show(self, stats: ReplayStats, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.interval_s:
            return
        self.last = now
        if self.in_place:
            self.out.write("\r\x1b[K" + stats.live_line())
        else:
            self.out.write(stats.live_line() + "\n")
        self.out.flush()

    def close(self) -> None:
        if self.in_place:
            self.out.write("\n")
            self.out.flush()


def open_log(path: str) -> IO[bytes] | gzip.GzipFile:
    """The file as bytes ('-' = stdin, '.gz' decompressed), so lines reach the service exactly as written."""
    if path == "-":
        return sys.stdin.buffer
    if path.endswith(".gz"):
        return gzip.GzipFile(path, "rb")
    return Path(path).open("rb")


def numbered_lines(stream: Iterable[bytes], skip: int, stats: ReplayStats) -> Iterator[tuple[int, bytes]]:
    """(file line number from 1, line without its newline) of each non-blank line after the first ``skip``."""
    for number, raw in enumerate(stream, start=1):
        if number <= skip:
            continue
        line = raw.rstrip(b"\n").rstrip(b"\r")
        if not line.strip():
            stats.blank_skipped += 1
            continue
        yield number, line


def batches(lines: Iterable[tuple[int, bytes]], size: int) -> Iterator[list[tuple[int, bytes]]]:
    batch: list[tuple[int, bytes]] = []
    for item in lines:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def batch_size(settings: ReplaySettings) -> int:
    """Lines per request: ``batch`` at high rates, fewer at low rates so a request leaves every ~100 ms."""
    return max(1, min(settings.batch, math.ceil(settings.rate / REQUESTS_PER_SECOND_AT_LOW_RATE)))


def retry_after_s(response: httpx.Response, default: float) -> float:
    """Retry-After as seconds (delta or HTTP date); ``default`` when absent or unreadable."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return default
    return min(max(seconds, 0.05), MAX_RETRY_AFTER_S)


def error_text(response: httpx.Response) -> str:
    return f"{response.status_code} {response.text.strip()[:300]}"


class Replayer:
    """Sends batches with one httpx client; ``send`` returns only once the service stored the batch."""

    def __init__(self, settings: ReplaySettings, client: httpx.Client, stats: ReplayStats) -> None:
        self.settings = settings
        self.client = client
        self.stats = stats
        self.headers: dict[str, str] = {}
        if settings.token is not None:
            self.headers["Authorization"] = f"Bearer {settings.token.get_secret_value()}"
        self.params: dict[str, str] = {"source": settings.source} if settings.source else {}

    def body(self, batch: list[tuple[int, bytes]]) -> tuple[bytes, str]:
        if self.settings.format == "json":
            lines = [{"message": line.decode("utf-8", errors="replace")} for _, line in batch]
            return json.dumps({"lines": lines}).encode(), "application/json"
        # text/plain is split on CR as well as LF by the service, so a lone CR would cut a line in two.
        text = b"\n".join(line.replace(b"\r", b" ") for _, line in batch) + b"\n"
        return text, "text/plain; charset=utf-8"

    def send(self, batch: list[tuple[int, bytes]]) -> None:
        """Deliver ``batch`` or raise ReplayAborted; never returns with a line of it undelivered."""
        content, content_type = self.body(batch)
        headers = {**self.headers, "Content-Type": content_type}
        failures = 0
        while True:
            resume_at = batch[0][0] - 1
            try:
                self.stats.requests += 1
                response = self.client.post(
                    f"{self.settings.url}/logs", content=content, headers=headers, params=self.params
                )
            except httpx.TransportError as exc:
                self.stats.transport_errors += 1
                failures += 1
                if failures > self.settings.retries:
                    raise ReplayAborted(f"{type(exc).__name__}: {exc}", resume_at) from None
                self._pause(min(0.5 * 2 ** (failures - 1), MAX_BACKOFF_S))
                continue
            status = response.status_code
            if status < 300:
                self._record(batch, response)
                return
            if status == 429:
                self.stats.status_429 += 1
                self._pause(retry_after_s(response, default=1.0))
                continue
            if status >= 500:
                self.stats.status_5xx += 1
                failures += 1
                if failures > self.settings.retries:
                    raise ReplayAborted(error_text(response), resume_at)
                backoff = min(0.5 * 2 ** (failures - 1), MAX_BACKOFF_S)
                self._pause(retry_after_s(response, default=backoff))
                continue
            self.stats.status_4xx += 1
            if status == 413 and len(batch) > 1:
                half = len(batch) // 2
                self.send(batch[:half])
                self.send(batch[half:])
                return
            if status in (401, 403):
                raise ReplayAborted(
                    f"{error_text(response)}: the service wants a token (--token or LOGLLM_REPLAY_TOKEN)",
                    resume_at,
                )
            raise ReplayAborted(error_text(response), resume_at)

    def _pause(self, seconds: float) -> None:
        self.stats.waited_s += seconds
        time.sleep(seconds)

    def _record(self, batch: list[tuple[int, bytes]], response: httpx.Response) -> None:
        self.stats.lines_sent += len(batch)
        self.stats.resume_at = batch[-1][0]
        try:
            payload = response.json()
        except ValueError:
            return
        self.stats.accepted += int(payload.get("accepted", 0))
        self.stats.rejected += len(payload.get("rejected", []))
        self.stats.windows_closed += len(payload.get("closed", []))


def replay(
    path: str,
    settings: ReplaySettings,
    stats: ReplayStats,
    *,
    live: TextIO,
    live_interval_s: float = 10.0,
    in_place: bool = False,
) -> ReplayStats:
    """Replay ``path`` into the service, counting into ``stats`` (still readable when this raises)."""
    stats.resume_at = settings.skip
    display = LiveLine(live, live_interval_s, in_place)
    pacer = Pacer(settings.rate)
    with (
        open_log(path) as stream,
        httpx.Client(timeout=settings.timeout_s) as client,
    ):
        replayer = Replayer(settings, client, stats)
        try:
            for batch in batches(numbered_lines(stream, settings.skip, stats), batch_size(settings)):
                pacer.wait()
                replayer.send(batch)
                pacer.spent(len(batch))
                display.show(stats)
        finally:
            display.show(stats, force=True)
            display.close()
    return stats


def add_replay_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from model.cli_args import add_settings_arguments

    parser = subparsers.add_parser(
        "replay",
        help="stream a log file into a running service at a steady rate",
        description="Send FILE's lines to POST /logs at --rate lines/s, waiting out every 429 so no line is "
        "lost or repeated. Every flag is also an environment variable LOGLLM_REPLAY_<FLAG>; prefer "
        "LOGLLM_REPLAY_TOKEN over --token, which other users can see in the process list.",
    )
    parser.add_argument("file", metavar="FILE", help="log file ('-' = stdin, '.gz' is decompressed)")
    add_settings_arguments(parser, ReplaySettings)
    parser.set_defaults(handler=run_replay)


def run_replay(args: argparse.Namespace) -> int:
    """0: every line delivered; 1: the service refused or went away (resume with --skip); 130: ^C."""
    from model.cli_args import settings_from_args

    settings = settings_from_args(ReplaySettings, args)
    in_place = sys.stderr.isatty()
    stats = ReplayStats()
    try:
        replay(
            args.file,
            settings,
            stats,
            live=sys.stderr,
            live_interval_s=0.5 if in_place else 10.0,
            in_place=in_place,
        )
    except OSError as exc:  # the file: missing, unreadable, not gzip
        print(f"logllm replay: {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except ReplayAborted as exc:
        print(stats.final_summary(args.file))
        print(f"logllm replay: stopped: {exc}; resume with --skip {exc.resume_at}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(stats.final_summary(args.file))
        print(f"logllm replay: interrupted; resume with --skip {stats.resume_at}", file=sys.stderr)
        return 130
    print(stats.final_summary(args.file))
    return 0
