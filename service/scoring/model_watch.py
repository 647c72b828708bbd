"""Models change without a restart: each process with ``--models`` follows the registry in Redis.

Every ``models_poll_s`` a watcher (1) scans the models directory, when ``--models`` names one, and writes what
changed into the registry, and (2) on a worker, compares the registry's generation with the one it applied and,
when they differ, hands the router the new mapping (``--models``' JSON entries, then the registry's on top) and
reports what it serves. So every replica and worker picks a change up through Redis, whichever process saw it.
A worker applies the registry once before its first batch, so a restart does not score a batch on the default.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from service.scoring.model_registry import ModelRegistry
from service.scoring.model_router import ModelRouter
from service.scoring.models import ModelsSetting, Registration, scan_directory

log = logging.getLogger(__name__)


class ModelWatcher:
    """Keeps a router (None on an api replica) in step with the registry, and the registry with the directory."""

    def __init__(
        self, registry: ModelRegistry, setting: ModelsSetting, router: ModelRouter | None, worker: str, poll_s: float
    ) -> None:
        self.registry = registry
        self.setting = setting
        self.router = router
        self.worker = worker
        self.poll_s = poll_s
        self.applied: int | None = None
        self._scanned: dict[str, Registration] | None = None

    @classmethod
    def for_settings(cls, store: Any, settings: Any, router: ModelRouter | None) -> ModelWatcher:
        registry = ModelRegistry(store.redis, store.config.key_prefix)
        setting = ModelsSetting.parse(settings.models)
        return cls(registry, setting, router, settings.consumer, settings.models_poll_s)

    async def step(self) -> None:
        """One look at the directory and the registry; loads run in a worker thread."""
        directory: Path | None = self.setting.directory
        if directory is not None:
            scanned = await asyncio.to_thread(scan_directory, directory)
            if scanned != self._scanned:
                await self.registry.sync_directory(scanned)
                self._scanned = scanned
        if self.router is None:
            return
        if await self.registry.generation() != self.applied:
            generation, entries = await self.registry.entries()
            desired = {**self.setting.mapping, **entries}
            status = await asyncio.to_thread(self.router.apply, generation, desired)
            self.applied = generation
        else:
            status = self.router.status()
        await self.registry.report(self.worker, status)

    async def run(self, stopping: asyncio.Event) -> None:
        failing = False
        while not stopping.is_set():
            try:
                await self.step()
                failing = False
            except (RedisError, OSError) as exc:
                if not failing:
                    log.warning("models: cannot follow the registry (Redis?): %s", exc)
                failing = True
            except Exception:  # the watcher must outlive any one bad change
                log.exception("models: applying the registry failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.poll_s)
