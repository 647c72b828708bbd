"""The delivery loop: verdict stream -> outbox jobs -> HTTP pushes, with retries and dead letters.

It reads the verdict stream as the consumer group ``delivery`` (so several instances split the work and a
restart resumes where it stopped), enqueues one job per (anomalous window, target that wants it) and acks the
entry; then it sends the jobs that are due. Whether a window is still worth pushing is decided at send time
from its record: a window muted or expired by then is dropped, not sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
from redis.exceptions import RedisError, ResponseError

from service.delivery.groups import MAX_GROUP, ClaimedGroup, GroupedJob, GroupOutbox
from service.delivery.outbox import Job, Outbox, backoff_s
from service.delivery.records import RecordSource
from service.delivery.stream import VerdictStream, _decode
from service.delivery.targets import (
    ALERTMANAGER,
    WebhookTarget,
    alert_body,
    group_body,
    webhook_body,
    webhook_headers,
)
from service.metrics import ServiceMetrics
from service.settings import ServiceSettings

log = logging.getLogger(__name__)
GROUP = "delivery"
RECORD_WAIT_S = 300.0  # a job whose record never shows up (verdict expired) is dropped after this
POLL_MS = 100
SEND_BATCH = 16


def failure(response: httpx.Response) -> str:
    """Why a push failed, as logged and kept with its dead letter. Redirects are not followed: the signed body goes
    to the configured URL only, never where an answer points; a redirect says so and where it pointed."""
    if response.is_redirect:
        where = response.headers.get("location", "")[:200]
        return (
            f"HTTP {response.status_code} redirect to {where!r}: pushes do not follow redirects (the body goes to the"
            " configured url only); set the target's url to the address it redirects to"
        )
    return f"HTTP {response.status_code}: {response.text[:200]}"


class DeliveryLoop:
    """``await run()`` until ``stop()``; does nothing unless webhooks or an Alertmanager are configured."""

    def __init__(
        self,
        stream: VerdictStream,
        outbox: Outbox,
        records: RecordSource,
        settings: ServiceSettings,
        metrics: ServiceMetrics | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stream, self.outbox, self.records, self.settings, self.metrics = stream, outbox, records, settings, metrics
        self.groups = GroupOutbox(outbox.redis, outbox.prefix, outbox.done_ttl_s)
        self.clock = clock  # unix seconds; tests drive it to test group_wait / group_interval
        self.webhooks: dict[str, WebhookTarget] = {w.target_id: w for w in settings.webhooks}
        self.rng = rng or random.Random()
        self.base_url = (settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/")
        self._stopping = asyncio.Event()

    @property
    def enabled(self) -> bool:
        return bool(self.webhooks or self.settings.alertmanager_url)

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=self.settings.webhook_timeout_s) as client:
            backlog = True  # first re-read what this consumer read but did not ack before a restart
            while not self._stopping.is_set():
                try:
                    await self._ensure_group()
                    backlog = await self._intake(backlog)
                    await self._send_due(client)
                except (RedisError, OSError) as exc:
                    log.warning("delivery: Redis error, retrying: %s", exc)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), 1.0)

    async def _ensure_group(self) -> None:
        try:
            await self.stream.redis.xgroup_create(self.stream.key, GROUP, id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _intake(self, backlog: bool) -> bool:
        """Turn stream entries into outbox jobs; True while this consumer still has unacked entries."""
        reply = await self.stream.redis.xreadgroup(
            GROUP, self.settings.consumer, {self.stream.key: "0" if backlog else ">"}, count=200,
            block=None if backlog else POLL_MS,
        )  # fmt: skip
        entries = (reply[0][1] if isinstance(reply, list) else next(iter(reply.values()))) if reply else []
        if not entries:
            return False
        decoded = [_decode(i, raw) for i, raw in entries]
        single: list[tuple[str, str]] = []
        grouped: list[GroupedJob] = []
        for e in decoded:
            for target in self._targets_for(e.fields):
                hook = self.webhooks.get(target)
                if hook is not None and hook.group_wait is not None:
                    source, reason = str(e.fields.get("source") or ""), str(e.fields.get("verdict_reason") or "model")
                    grouped.append(
                        GroupedJob(target, e.fields["id"], source, reason, hook.group_wait, hook.group_interval)
                    )
                else:
                    single.append((target, e.fields["id"]))
        now = self.clock()
        await self.outbox.enqueue(single, now)
        await self.groups.enqueue(grouped, now)
        await self.stream.redis.xack(self.stream.key, GROUP, *[e.entry_id for e in decoded])
        return backlog

    def _targets_for(self, verdict: dict[str, Any]) -> list[str]:
        if verdict.get("label") != "anomalous":
            return []
        source, score = str(verdict.get("source") or ""), verdict.get("score")
        out = [tid for tid, w in self.webhooks.items() if w.wants(source, score)]
        return out + [ALERTMANAGER] if self.settings.alertmanager_url else out

    async def _send_due(self, client: httpx.AsyncClient) -> None:
        lease = self.settings.webhook_timeout_s + 5
        now = self.clock()
        jobs = await self.outbox.claim(now, lease, SEND_BATCH)
        groups = await self.groups.claim(now, lease, SEND_BATCH)
        if jobs or groups:
            await asyncio.gather(
                *(self._send(client, job) for job in jobs), *(self._send_group(client, g) for g in groups)
            )
        if self.metrics is not None:
            self.metrics.outbox_pending.set(await self.outbox.pending() + await self.groups.pending())

    async def _send_group(self, client: httpx.AsyncClient, group: ClaimedGroup) -> None:
        """One call for the group's waiting anomalies whose records say anomalous; the rest are dropped
        (muted since, expired) or wait (record not written yet) as a single job would."""
        now = self.clock()
        webhook = self.webhooks.get(group.target)
        if webhook is None:
            log.warning("delivery group %s: target %s is no longer configured; dropped", group.id, group.target)
            await self.groups.finish(group, [(m.id, "unknown_target") for m in group.members], False, now, now)
            return
        records: list[dict[str, Any] | None] = []
        for first in range(0, len(group.members), SEND_BATCH):  # a few reads at a time: the client's pool is shared
            chunk = group.members[first : first + SEND_BATCH]
            records += await asyncio.gather(*(self.records.get(m.window_id, with_lines=False) for m in chunk))
        done: list[tuple[str, str]] = []
        items: list[tuple[dict[str, Any], str]] = []
        sent: list[tuple[str, str]] = []
        waiting = False
        for member, record in zip(group.members, records, strict=True):
            if record is None:
                if now - member.created_at > RECORD_WAIT_S:
                    done.append((member.id, "no_record"))
                else:
                    waiting = True
            elif record.get("status") != "anomalous":
                done.append((member.id, "skipped"))
            else:
                items.append((record, f"{self.base_url}/sequences/{quote(member.window_id, safe='')}"))
                sent.append((member.id, "delivered"))
        if not items:
            await self.groups.finish(group, done, False, now + 0.5 if waiting else now, now)
            return
        body = group_body(group.source, group.reason, items)
        secret = webhook.secret.get_secret_value() if webhook.secret else None
        try:
            headers = webhook_headers(group.delivery_id, body, secret, now)
            response = await client.post(str(webhook.url), content=body, headers=headers)
            error = None if response.is_success else f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        if error is None:
            full = len(group.members) >= MAX_GROUP
            await self.groups.finish(group, done + sent, True, now if full else now + webhook.group_interval, now)
            if self.metrics is not None:
                self.metrics.deliveries.labels(kind="webhook").inc()
            return
        s = self.settings
        next_try = now + backoff_s(group.attempts + 1, s.webhook_backoff_s, s.webhook_backoff_max_s, self.rng)
        outcome = await self.groups.failed(group, error, next_try, s.webhook_max_attempts, now)
        log.warning("delivery of group %s (%d anomalies) failed (%s): %s", group.id, len(items), outcome, error)
        if self.metrics is not None:
            counter = self.metrics.delivery_dead_letters if outcome == "dead" else self.metrics.delivery_retries
            counter.labels(kind="webhook").inc()

    async def _send(self, client: httpx.AsyncClient, job: Job) -> None:
        now = self.clock()
        kind = "alertmanager" if job.target == ALERTMANAGER else "webhook"
        webhook = self.webhooks.get(job.target)
        if kind == "webhook" and webhook is None:
            log.warning("delivery %s: target %s is no longer configured; dropped", job.id, job.target)
            await self.outbox.finish(job, "unknown_target")
            return
        record = await self.records.get(job.window_id, with_lines=False)
        if record is None:  # published before complete wrote it, or expired
            if now - job.created_at > RECORD_WAIT_S:
                await self.outbox.finish(job, "no_record")
            else:
                await self.outbox.postpone(job, now + 0.5)
            return
        if record.get("status") != "anomalous":  # muted (or relabeled) since: nothing to push
            await self.outbox.finish(job, "skipped")
            return
        record_url = f"{self.base_url}/sequences/{quote(job.window_id, safe='')}"
        try:
            if webhook is not None:
                body = webhook_body(record, record_url)
                secret = webhook.secret.get_secret_value() if webhook.secret else None
                response = await client.post(
                    str(webhook.url), content=body, headers=webhook_headers(job.id, body, secret, now)
                )
            else:
                url = self.settings.alertmanager_url.rstrip("/") + "/api/v2/alerts"
                body = alert_body(record, record_url, now, self.settings.alert_resolve_s)
                response = await client.post(url, content=body, headers={"Content-Type": "application/json"})
            error = None if response.is_success else failure(response)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        if error is None:
            await self.outbox.finish(job)
            if self.metrics is not None:
                self.metrics.deliveries.labels(kind=kind).inc()
            return
        s = self.settings
        next_try = now + backoff_s(job.attempts + 1, s.webhook_backoff_s, s.webhook_backoff_max_s, self.rng)
        outcome = await self.outbox.failed(job, error, next_try, s.webhook_max_attempts, now)
        log.warning("delivery %s of %s to %s failed (%s): %s", job.id, job.window_id, job.target, outcome, error)
        if self.metrics is not None:
            counter = self.metrics.delivery_dead_letters if outcome == "dead" else self.metrics.delivery_retries
            counter.labels(kind=kind).inc()
