"""The scorer of a service with models per source: each window scored by its source's model, one pass per batch.

The classifier hands ``route`` a batch of windows; each window's source picks its model in the current
``ModelTable`` (models.py's matching; ``--checkpoint`` when none matches), and the rows of all models go through
the shared backbones together (model/adapter_pool.py's ``score_mixed``; bench/models.py measured it against one
pass per model). Each window's score comes back with the threshold and version of the model that decided it.

``apply`` (from model_watch.py, in a worker thread) loads what changed and swaps in a new table at once: a batch
in flight holds the old table to its end (``_busy``), so it finishes on the models it started with, and replaced
models are released only after. A checkpoint that fails to load leaves the pattern's old model serving (or the
default, for a new pattern) and its error in ``status``.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from model.adapter_pool import MIB, AdapterPool, PooledModel, score_mixed
from model.checkpoint import CheckpointError
from model.chunked_scoring import chunks
from model.vocab import Vocabulary
from service.scoring.models import ModelsSetting, Registration, best_match
from service.windows.ids import DEFAULT_SOURCE, parse_window_id
from service.windows.store import ClosedWindow

log = logging.getLogger(__name__)
RETIRED_VOCABULARIES = 64  # of replaced models, for the verdicts of their last batches


def source_of(window: ClosedWindow) -> str:
    ref = parse_window_id(window.window_id)
    return ref.source if ref is not None else DEFAULT_SOURCE  # ids from before sources: the default source


@dataclass(frozen=True)
class Served:
    registration: Registration
    model: PooledModel


@dataclass(frozen=True)
class ModelTable:
    """What serves which source; replaced whole, never changed."""

    generation: int
    default: PooledModel
    served: Mapping[str, Served]
    by_version: dict[str, PooledModel] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for model in (*(s.model for s in self.served.values()), self.default):
            self.by_version[model.version] = model

    def model_for(self, source: str) -> PooledModel:
        pattern = best_match(source, self.served)
        return self.served[pattern].model if pattern is not None else self.default


class ModelRouter:
    """A Scorer (``score``, ``threshold``, ``version``: the default model's) that also routes windows by source."""

    def __init__(self, pool: AdapterPool, default: PooledModel, default_path: str, batch_size: int = 16) -> None:
        self.pool = pool
        self.default_path = default_path
        self.batch_size = batch_size
        self.table = ModelTable(0, default, {})
        self.errors: dict[str, str] = {}
        self._busy = threading.Lock()  # one batch at a time; a swap waits for the batch in flight
        self._retired: OrderedDict[str, Vocabulary | None] = OrderedDict()

    @property
    def threshold(self) -> float:
        return self.table.default.threshold

    @property
    def version(self) -> str:
        return self.table.default.version

    @property
    def vocabulary(self) -> Vocabulary | None:
        return self.table.default.vocabulary

    def score(self, sequences: Sequence[Sequence[str]]) -> list[float]:
        """The default model's scores (warm-up; callers that know no source)."""
        with self._busy:
            return self.table.default.score(sequences, batch_size=self.batch_size)

    def scorer_for(self, version: str) -> PooledModel | None:
        """The model of this version, while it serves."""
        return self.table.by_version.get(version)

    def route(
        self, windows: Sequence[ClosedWindow], sequences: Sequence[Sequence[str]]
    ) -> list[tuple[float, float, str]]:
        """(score, threshold, model version) per window, every line seen: a window longer than its model's
        ``max_messages`` is scored in chunks, its score the max (as model/chunked_scoring.py does)."""
        with self._busy:
            table = self.table
            models = [table.model_for(source_of(w)) for w in windows]
            pieces: list[tuple[PooledModel, list[str]]] = []
            owners: list[int] = []
            for index, (model, sequence) in enumerate(zip(models, sequences, strict=True)):
                for piece in chunks(sequence, model.max_messages):
                    pieces.append((model, piece))
                    owners.append(index)
            scores = score_mixed(pieces, self.batch_size)
        best = [float("-inf")] * len(models)
        for owner, value in zip(owners, scores, strict=True):
            best[owner] = max(best[owner], value)
        return [(best[i], model.threshold, model.version) for i, model in enumerate(models)]

    def own_model(self, version: str) -> bool:
        """Whether a verdict of this version came from a source's own model, not the default (the novelty
        policy's question: service/patterns/policy.py)."""
        return version != self.table.default.version

    def vocabulary_for(self, version: str) -> Vocabulary | None:
        """The vocabulary of the model that scored a verdict (the novelty rule reads it)."""
        model = self.table.by_version.get(version)
        return model.vocabulary if model is not None else self._retired.get(version)

    def apply(self, generation: int, desired: Mapping[str, Registration]) -> dict[str, Any]:
        """Serve ``desired`` (pattern -> registration): load what changed, keep what did not, release what went.
        Runs in a worker thread; returns the status to report."""
        current = self.table
        served: dict[str, Served] = {}
        errors: dict[str, str] = {}
        for pattern, registration in desired.items():
            old = current.served.get(pattern)
            if old is not None and old.registration == registration:
                served[pattern] = old
                continue
            try:
                model = self.pool.load(registration.checkpoint)
            except CheckpointError as exc:
                errors[pattern] = str(exc)
                keeps = f"{old.model.version} keeps serving it" if old is not None else "the default model serves it"
                log.error("model for %s not loaded (%s): %s", pattern, keeps, exc)
                if old is not None:
                    served[pattern] = old
                continue
            served[pattern] = Served(registration, model)
        table = ModelTable(generation, current.default, served)
        with self._busy:
            self.table = table
        kept = {id(s.model) for s in served.values()}
        for gone in current.served.values():
            if id(gone.model) not in kept:
                self._retired[gone.model.version] = gone.model.vocabulary
                self.pool.release(gone.model)
        while len(self._retired) > RETIRED_VOCABULARIES:
            self._retired.popitem(last=False)
        self.errors = errors
        return self.status()

    def status(self) -> dict[str, Any]:
        table = self.table
        return {
            "generation": table.generation,
            "default": {"checkpoint": self.default_path, "version": table.default.version},
            "models": {
                pattern: {"checkpoint": s.registration.checkpoint, "origin": s.registration.origin,
                          "version": s.model.version}
                for pattern, s in sorted(table.served.items())
            },  # fmt: skip
            "errors": dict(self.errors),
            "memory_mib": round(self.pool.nbytes / MIB, 1),
        }


def load_router(settings: Any, spare_cores: int = 1) -> ModelRouter:
    """The pool with ``--checkpoint`` as the default model and ``--models``' JSON mapping loaded (a pattern that
    fails to load is reported and left to the default); a models directory is the watcher's (model_watch.py)."""
    pool = AdapterPool(settings, settings.models_max_memory_mb * MIB, spare_cores=spare_cores)
    default = pool.load(settings.checkpoint)
    router = ModelRouter(pool, default, str(settings.checkpoint), batch_size=settings.max_batch_windows)
    router.apply(0, ModelsSetting.parse(settings.models).mapping)
    return router
