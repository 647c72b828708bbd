"""The FastAPI app: wiring and lifecycle; the routes live in service/<room>/routes.py and service/routes_ops.py.

Roles (``--role``): ``api`` serves intake, queries and the idle sweep and never loads the model; ``worker``
runs the classifier with only health and metrics routes; ``all`` does both. ``role_routers`` and
``Runtime.start`` are the one place that says what each role runs.

Start: connect Redis (or start an embedded one), set up the store, then serve at once while the checkpoint
loads in the background, so /health/live answers and lines are accepted during a slow load; /health/ready says
503 until the model has scored once. Stop (uvicorn has already stopped accepting and finished open requests):
stop the sweeper, let the classifier finish and ack its batch in flight, close Redis, stop it if embedded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from fastapi import APIRouter, FastAPI
from redis.exceptions import RedisError

from service import routes_ops
from service.delivery import routes as delivery_routes
from service.delivery.service import Delivery
from service.http_errors import install_error_handlers
from service.intake import es_routes
from service.intake import routes as intake_routes
from service.intake.syslog_listener import SyslogListeners
from service.metrics import ServiceMetrics
from service.openapi import install_openapi
from service.patterns import routes as patterns_routes
from service.patterns import sources as patterns_sources
from service.records import feedback_routes as records_feedback
from service.records import query_routes as records_queries
from service.records import routes as records_routes
from service.records import sample_routes as records_sample
from service.request_guard import RequestGuard
from service.scoring import model_routes as models_routes
from service.settings import Role, ServiceSettings
from service.state import ServiceState

if TYPE_CHECKING:
    from model.vocab import Vocabulary
    from service.patterns.keeper import PatternKeeper
    from service.records.explainer import Explainer
    from service.records.keeper import RecordKeeper
    from service.records.normal_sample import NormalSample
    from service.scoring.classifier import ClassifierLoop, Scorer
    from service.windows.store import WindowStore

log = logging.getLogger(__name__)
WARMUP_SEQUENCE = [["service warm-up"]]
STOP_TIMEOUT_S = 60.0
RESTART_DELAY_S = 1.0


def role_routers(role: Role) -> list[tuple[APIRouter, list[str]]]:
    """The routers (with their OpenAPI tags) a role serves; a room's new router is added here, once."""
    ops: list[tuple[APIRouter, list[str]]] = [(routes_ops.router, [])]
    if role == "worker":
        return ops
    return [
        (intake_routes.router, ["logs"]),
        (es_routes.router, ["elasticsearch"]),
        (es_routes.root, ["elasticsearch"]),
        (records_routes.router, ["sequences"]),
        (records_queries.router, ["records"]),
        (records_feedback.router, ["records"]),
        (records_sample.router, ["sources"]),
        (patterns_routes.router, ["patterns"]),
        (patterns_sources.router, ["sources"]),
        (models_routes.router, ["models"]),
        (delivery_routes.router, []),
        *ops,
    ]


def load_vocabulary_of(settings: ServiceSettings, scorer: Scorer, from_checkpoint: bool) -> Vocabulary | None:
    """The training vocabulary of the novelty rule: the served checkpoint's (None for one made before
    vocabularies), or a stand-in scorer's ``vocabulary`` attribute (None without one)."""
    if not from_checkpoint:
        return getattr(scorer, "vocabulary", None)
    from model.vocab import load_vocabulary

    return load_vocabulary(settings.checkpoint)


def load_scorer(settings: ServiceSettings) -> Scorer:
    """``settings.scorer`` ('module:callable', called with the settings) when set, else the checkpoint on the
    configured device (``auto``: the GPU when there is one)."""
    if settings.scorer:
        import importlib

        module_name, _, attribute = settings.scorer.partition(":")
        factory = getattr(importlib.import_module(module_name), attribute)
        scorer: Scorer = factory(settings)
        log.info("scorer %s (version %s)", settings.scorer, getattr(scorer, "version", "?"))
        return scorer
    if settings.models:  # models per source on shared backbones (service/scoring/model_router.py)
        from service.scoring.model_router import load_router

        return cast("Scorer", load_router(settings))  # its threshold and version are the default model's
    from model.checkpoint import load_checkpoint

    model, manifest = load_checkpoint(settings.checkpoint, settings, spare_cores=1)  # one core stays with HTTP
    log.info("loaded checkpoint %s (model %s) on %s", settings.checkpoint, manifest.version, model.device)
    return model


class Runtime:
    """The background work of one app: the store's Redis, the sweeper and the classifier."""

    def __init__(self, state: ServiceState, scorer: Scorer | None, publish: Any = None) -> None:
        self.state = state
        self.publish = publish  # the verdict stream's publish (service/delivery)
        self.given_scorer = scorer
        self.store_ready = False
        self.classifier: ClassifierLoop | None = None
        self.stopping = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """The idle sweep runs with intake (roles api, all; idempotent, so any number of replicas may run it),
        the classifier with the model (roles worker, all)."""
        role = self.state.settings.role
        if role != "worker":
            self.tasks.append(asyncio.create_task(self._sweep(), name="logllm-sweeper"))
        if role != "api":
            self.tasks.append(asyncio.create_task(self._classify(), name="logllm-classifier"))
        elif self.state.settings.models:  # an api replica feeds the registry from a models directory
            self.tasks.append(asyncio.create_task(self._watch_models(None), name="logllm-models-start"))

    async def ensure_store(self) -> bool:
        """Set the store up (idempotent); retried by the sweeper while Redis is away at start."""
        if not self.store_ready:
            try:
                await self.state.store.setup()
                if self.state.records is not None:
                    await self.state.records.setup()
                self.store_ready = True
            except (RedisError, OSError) as exc:
                log.warning("window store setup failed, will retry: %s", exc)
        return self.store_ready

    async def _sweep(self) -> None:
        """Close idle windows and refresh the gauges every sweep_interval_s; survives Redis outages."""
        settings, metrics = self.state.settings, self.state.metrics
        failing = False
        while not self.stopping.is_set():
            try:
                if await self.ensure_store():
                    closed = await self.state.store.sweep_idle()
                    if closed:
                        metrics.windows_closed.labels(reason="idle").inc(len(closed))
                    metrics.open_windows.set(await self.state.store.open_windows())
                    metrics.ready_queue_depth.set(await self.state.store.queue_depth())
                    if failing:
                        log.info("idle sweep works again")
                    failing = False
            except (RedisError, OSError) as exc:
                if not failing:
                    log.warning("idle sweep failed (Redis?): %s", exc)
                failing = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), settings.sweep_interval_s)

    async def _classify(self) -> None:
        """Load and warm the model, then run the classifier loop, restarting it if it dies."""
        from service.scoring.classifier import ClassifierLoop

        state = self.state
        try:
            scorer = self.given_scorer
            if scorer is None:
                scorer = await asyncio.to_thread(load_scorer, state.settings)
            await asyncio.to_thread(scorer.score, WARMUP_SEQUENCE)
            from_checkpoint = self.given_scorer is None and not state.settings.scorer
            vocabulary = await asyncio.to_thread(load_vocabulary_of, state.settings, scorer, from_checkpoint)
        except Exception as exc:
            state.model_error = f"model failed to load: {type(exc).__name__}: {str(exc)[:300]}"
            log.exception("model failed to load from %s", state.settings.checkpoint)
            return
        state.scorer = scorer
        log.info("model %s warm; classifier starting", getattr(scorer, "version", "?"))
        if state.settings.models and hasattr(scorer, "route"):  # registered models load before the first batch
            await self._watch_models(scorer)
        while not self.stopping.is_set():
            if not await self.ensure_store():
                await asyncio.sleep(RESTART_DELAY_S)
                continue
            self.classifier = ClassifierLoop(
                state.store,
                scorer,
                state.settings,
                state.metrics,
                records=self._record_keeper(),
                publish=self.publish,
                patterns=self._pattern_keeper(vocabulary),
                explain=self._explainer(),
                sample=self._normal_sample(),
            )
            try:
                await self.classifier.run()
            except Exception:
                log.exception("classifier loop died; restarting in %.0f s", RESTART_DELAY_S)
                await asyncio.sleep(RESTART_DELAY_S)
            else:
                return

    async def _watch_models(self, router: Any) -> None:
        """Follow the model registry (and the models directory); ``router`` None on an api replica."""
        from service.scoring.model_watch import ModelWatcher

        watcher = ModelWatcher.for_settings(self.state.store, self.state.settings, router)
        with contextlib.suppress(RedisError, OSError):  # Redis away at start: the watcher's loop retries
            await watcher.step()
        self.tasks.append(asyncio.create_task(watcher.run(self.stopping), name="logllm-models"))

    def _record_keeper(self) -> RecordKeeper | None:
        from model.preprocess import preprocess
        from service.records.keeper import RecordKeeper

        records = self.state.records
        return RecordKeeper(records, preprocess, self.state.metrics) if records is not None else None

    def _normal_sample(self) -> NormalSample | None:
        from service.records.normal_sample import NormalSample

        size = self.state.settings.keep_normal_sample
        return NormalSample(self.state.store, size) if size > 0 else None

    def _explainer(self) -> Explainer | None:
        from service.records.explain_queue import ExplainQueue
        from service.records.explainer import Explainer

        records, settings = self.state.records, self.state.settings
        if records is None or records.config.explain_top_k <= 0:
            return None
        return Explainer(ExplainQueue(self.state.store), records.config.explain_top_k, settings.explain_budget_s,
                         self.state.metrics)  # fmt: skip

    def _pattern_keeper(self, vocabulary: Vocabulary | None) -> PatternKeeper | None:
        from service.patterns.keeper import PatternKeeper
        from service.patterns.policy import NoveltyPolicy

        state = self.state
        if state.patterns is None:
            return None
        settings = state.settings
        return PatternKeeper(
            state.patterns, vocabulary, settings.novelty, settings.novelty_warmup_s, state.metrics,
            vocabulary_for=getattr(state.scorer, "vocabulary_for", None),  # models per source: each model's own
            learn_below=settings.novelty_learn_below,
            policy=NoveltyPolicy.from_settings(settings, getattr(state.scorer, "own_model", None)),
        )  # fmt: skip

    async def stop(self) -> None:
        """Finish the batch in flight and ack it; what is still queued waits in Redis for the next start."""
        self.stopping.set()
        if self.classifier is not None:
            self.classifier.stop()
        else:  # still loading the model: nothing in flight, do not wait for the load
            for task in self.tasks:
                if task.get_name() == "logllm-classifier":
                    task.cancel()
        done, pending = await asyncio.wait(self.tasks, timeout=STOP_TIMEOUT_S) if self.tasks else (set(), set())
        for task in pending:
            log.warning("%s did not stop within %.0f s; cancelling", task.get_name(), STOP_TIMEOUT_S)
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def check_checkpoint(settings: ServiceSettings) -> None:
    """Fail at start, not minutes later in a background task, when the checkpoint path is plainly wrong."""
    manifest = Path(settings.checkpoint) / "manifest.json"
    if not manifest.is_file():
        raise RuntimeError(f"checkpoint {settings.checkpoint}: {manifest.name} not found (--checkpoint)")


def _client_options() -> dict[str, Any]:
    """Retry a failed command twice, quickly: a Redis restart leaves dead pooled connections that the retry
    replaces, while a Redis that is down still gets a 503 within a fraction of a second."""
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError, TimeoutError

    return {
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        "retry_on_error": [ConnectionError, TimeoutError],
        "socket_connect_timeout": 2,
        "socket_timeout": 5,
    }


CLIENT_OPTIONS = _client_options()


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@asynccontextmanager
async def open_store(settings: ServiceSettings) -> AsyncIterator[WindowStore]:
    """A store on settings.redis_url (a cluster when redis_cluster), or on an embedded Redis when that is
    empty, restarted whenever it dies; closed on exit."""
    from redis.asyncio import Redis, RedisCluster

    from service.windows.store import WindowStore

    async with contextlib.AsyncExitStack() as stack:
        url = settings.redis_url
        if not url:
            from service.windows.embedded_redis import EmbeddedRedis

            embedded = EmbeddedRedis(
                settings.redis_data_dir, maxmemory=settings.redis_maxmemory, fsync=settings.redis_fsync
            )
            url = await asyncio.to_thread(embedded.start)
            stack.callback(embedded.stop)
            supervisor = asyncio.create_task(embedded.supervise(), name="logllm-redis-supervisor")
            stack.push_async_callback(_cancel, supervisor)
            log.info("embedded Redis at %s (data in %s)", url, settings.redis_data_dir or "a temporary directory")
        client_class = RedisCluster if settings.redis_cluster else Redis
        client: Redis | RedisCluster = client_class.from_url(url, **CLIENT_OPTIONS)
        stack.push_async_callback(client.aclose)
        yield WindowStore(client, settings)


def create_app(
    settings: ServiceSettings | None = None, scorer: Scorer | None = None, store: WindowStore | None = None
) -> FastAPI:
    """The service; ``scorer`` and ``store`` replace the checkpoint and the Redis connection (tests)."""
    settings = settings or ServiceSettings()
    metrics = ServiceMetrics(max_sources=settings.metrics_max_sources)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if scorer is None and not settings.scorer and settings.role != "api":
            check_checkpoint(settings)
        async with contextlib.AsyncExitStack() as stack:
            active = store if store is not None else await stack.enter_async_context(open_store(settings))
            from service.intake.formats import SourceFormats
            from service.patterns.pattern_store import PatternStore
            from service.records.record_store import RecordStore

            records = RecordStore(active, settings)
            patterns = PatternStore(active, settings)
            state = ServiceState(settings=settings, metrics=metrics, store=active, records=records, patterns=patterns)
            state.formats = SourceFormats(active.redis, active.config.key_prefix)
            app.state.service = state
            app.state.delivery = delivery = Delivery(state)
            runtime = Runtime(state, scorer, publish=delivery.stream.publish)
            await runtime.ensure_store()
            runtime.start()
            delivery.start()
            app.state.runtime = runtime
            app.state.syslog = syslog = SyslogListeners(state) if settings.role != "worker" else None
            if syslog is not None:
                await syslog.start()  # only the listeners --syslog-tcp/-tls/-udp ask for
            try:
                yield
            finally:
                if syslog is not None:
                    await syslog.stop()
                log.info("stopping: finishing the batch in flight")
                await runtime.stop()
                await delivery.stop()
                metrics.ready.set(0)

    app = FastAPI(
        title="logllm",
        summary="Online log anomaly detection with LogLLM",
        description="POST log lines; windows close by size, idle time or on request; each closed window gets "
        "one verdict from the model. Errors are `{reason, message, field}`.",
        lifespan=lifespan,
    )
    install_error_handlers(app, settings.retry_after_s)
    app.add_middleware(RequestGuard, allowed_hosts=settings.allowed_hosts, public_url=settings.public_url)
    for router, tags in role_routers(settings.role):
        app.include_router(router, tags=list(tags))
    install_openapi(app, auth=settings.auth_token is not None)
    return app
