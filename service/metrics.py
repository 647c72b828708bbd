"""Prometheus metrics on their own registry, so tests and several apps in one process never clash.

Who updates what: the HTTP app counts lines (ingested, rejected), closes (size/idle/explicit, at the moment of
closing) and sets the gauges; the ClassifierLoop observes batches, waits, inference, end-to-end and verdicts.
No metric has a per-session label: session ids are unbounded. Sources are bounded too: the first
``max_sources`` names seen get their own label value, later ones share ``other``.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_SECONDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)


class ServiceMetrics:
    """All metric objects of one service instance, named as in DESIGN.md."""

    def __init__(self, registry: CollectorRegistry | None = None, max_sources: int = 50) -> None:
        self.registry = registry or CollectorRegistry()
        self.max_sources = max_sources
        self._sources: set[str] = set()
        r = self.registry
        self.lines_ingested = Counter(
            "logllm_lines_ingested", "log lines accepted, by body format (json, ndjson, text, loki_*, otlp_*)",
            ["format"], registry=r,
        )  # fmt: skip
        self.lines_rejected = Counter(
            "logllm_lines_rejected", "log lines rejected, by why and body format", ["reason", "format"], registry=r
        )
        self.lines_deduplicated = Counter(
            "logllm_lines_deduplicated", "Loki entries and OTLP records sent again and not stored again (as Loki"
            " does), by body format", ["format"], registry=r,
        )  # fmt: skip
        self.windows_closed = Counter(
            "logllm_windows_closed", "windows closed, by why (size, idle, explicit)", ["reason"], registry=r
        )
        self.verdicts = Counter("logllm_verdicts", "verdicts written, by label", ["label"], registry=r)
        self.windows_failed = Counter(
            "logllm_windows_failed", "windows given up after max_deliveries model failures", registry=r
        )
        self.windows_dropped = Counter(
            "logllm_windows_dropped",
            "ready-queue entries acked without a verdict, by why (lines_missing, already_scored)",
            ["reason"],
            registry=r,
        )
        for reason in ("lines_missing", "already_scored"):  # shown at 0, so an alert can watch them
            self.windows_dropped.labels(reason=reason)
        self.batch_windows = Histogram("logllm_batch_windows", "windows per model call", buckets=_SIZES, registry=r)
        self.batch_lines = Histogram("logllm_batch_lines", "lines per model call", buckets=_SIZES, registry=r)
        self.queue_wait_seconds = Histogram(
            "logllm_queue_wait_seconds",
            "from window closed to picked by a worker",
            buckets=_SECONDS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "logllm_inference_seconds", "duration of one model call", buckets=_SECONDS, registry=r
        )
        self.end_to_end_seconds = Histogram(
            "logllm_end_to_end_seconds", "from window closed to verdict written", buckets=_SECONDS, registry=r
        )
        self.open_windows = Gauge("logllm_open_windows", "windows receiving lines", registry=r)
        self.ready_queue_depth = Gauge("logllm_ready_queue_depth", "closed windows not yet acknowledged", registry=r)
        self.ready = Gauge("logllm_ready", "1 when the model is warm and Redis answers", registry=r)
        # delivery (service/delivery): kind is "webhook" or "alertmanager", never a URL
        self.deliveries = Counter("logllm_deliveries", "anomalies pushed and accepted (2xx), by target kind",
                                  ["kind"], registry=r)  # fmt: skip
        self.delivery_retries = Counter(
            "logllm_delivery_retries", "failed pushes that will be tried again, by target kind", ["kind"], registry=r
        )
        self.delivery_dead_letters = Counter(
            "logllm_delivery_dead_letters", "pushes given up after webhook_max_attempts, by target kind", ["kind"],
            registry=r,
        )  # fmt: skip
        self.outbox_pending = Gauge("logllm_outbox_pending", "pushes waiting in the outbox (incl. retries)", registry=r)
        # records (service/records/)
        self.verdicts_by_source = Counter(
            "logllm_source_verdicts",
            "verdicts written, by label and source (sources past max_sources count as 'other')",
            ["label", "source"],
            registry=r,
        )
        self.feedback = Counter("logllm_feedback", "labels received on records, by label", ["label"], registry=r)
        self.mutes_created = Counter("logllm_mutes_created", "mutes created by feedback", registry=r)
        self.explanation_seconds = Histogram(
            "logllm_explanation_seconds", "occlusion explanation of one window", buckets=_SECONDS, registry=r
        )
        self.explanations = Counter(
            "logllm_explanations", "explanations written after their verdicts, by how (occlusion, cached, novelty,"
            " failed)", ["how"], registry=r,
        )  # fmt: skip
        self.new_templates = Counter(
            "logllm_new_templates", "templates seen for the first time in a source (bounded source names)",
            ["source"], registry=r,
        )  # fmt: skip
        self.source_vocabulary_coverage = Gauge(
            "logllm_source_vocabulary_coverage",
            "share of a source's recent lines whose template the checkpoint's vocabulary knows (bounded source names)",
            ["source"], registry=r,
        )  # fmt: skip
        self.embedding_cache_hit_ratio = Gauge(
            "logllm_embedding_cache_hit_ratio", "message vectors found in the model's cache, since start", registry=r
        )
        # syslog listeners (service/intake/syslog_listener.py)
        self.syslog_udp_dropped = Counter(
            "logllm_syslog_udp_dropped", "syslog datagrams dropped, by why (queue_full, too_many_sessions,"
            " store_unavailable, backlog_full, too_large)", ["reason"], registry=r,
        )  # fmt: skip
        self.syslog_tcp_paused = Counter(
            "logllm_syslog_tcp_paused", "times a syslog TCP/TLS connection stopped reading until the store took its"
            " lines, by why (queue_full, too_many_sessions, store_unavailable)", ["transport", "reason"], registry=r,
        )  # fmt: skip

    def source_label(self, source: str) -> str:
        """The source's label value: its name while fewer than max_sources names are in use, else 'other'."""
        if source in self._sources:
            return source
        if len(self._sources) < self.max_sources:
            self._sources.add(source)
            return source
        return "other"

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type, for GET /metrics."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
