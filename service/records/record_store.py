"""What is kept about scored windows: records, their lines, feedback and mutes (layout: records_lib.lua).

Records are written by complete.lua together with the verdict (the payload comes from ``record_payload``), so
a kept window's lines move to its record in the same atomic step that would otherwise delete them. Everything
of one record lives in its window's partition slot, so it all works on Redis Cluster; only the mutes (one
small hash) and the cursor secret are single keys of their own.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from redis.commands.core import AsyncScript

from service.windows.ids import DEFAULT_SOURCE, parse_window_id
from service.windows.line_codec import decode_element
from service.windows.store import ClosedWindow, Verdict, WindowStore, _text, _translated

STATUSES = ("anomalous", "failed", "muted", "normal")


@dataclass(frozen=True)
class RecordConfig:
    """The settings records need; ``from_settings`` takes them by name from ``ServiceSettings``."""

    anomaly_retention_s: int = 7 * 86_400
    normal_lines_retention_s: int = 0
    max_records: int = 1_000_000
    explain_top_k: int = 5
    cursor_secret: str = ""

    @classmethod
    def from_settings(cls, settings: object) -> RecordConfig:
        values = {f.name: getattr(settings, f.name) for f in fields(cls) if hasattr(settings, f.name)}
        secret = values.get("cursor_secret")
        if secret is not None and hasattr(secret, "get_secret_value"):
            values["cursor_secret"] = secret.get_secret_value()
        elif secret is None:
            values.pop("cursor_secret", None)
        return cls(**values)


@dataclass(frozen=True)
class WindowParts:
    """Where a window came from: its source, kind, window key and number (session: n; fixed: start)."""

    source: str
    kind: str
    key: str
    number: int


def window_parts(window_id: str, window_key: str) -> WindowParts:
    """From the id (service/windows/ids.py). Legacy ids: a session's source is "default"; a fixed window's
    key is its source's name."""
    ref = parse_window_id(window_id)
    if ref is not None:
        return WindowParts(ref.source, ref.kind, ref.key, ref.number)
    if window_id == window_key or window_id.startswith(window_key + "#"):
        number = int(window_id[len(window_key) + 1 :] or 0)
        return WindowParts(DEFAULT_SOURCE, "session", window_key, number)
    start = window_id.rsplit(":", 1)[-1]
    return WindowParts(window_key or DEFAULT_SOURCE, "fixed", window_key, int(start) if start.isdigit() else 0)


def template_table(messages: Sequence[str]) -> dict[str, list[Any]]:
    """Preprocessed messages as distinct templates plus one index per line: windows repeat a few templates."""
    templates = list(dict.fromkeys(messages))
    index = {m: i for i, m in enumerate(templates)}
    return {"templates": templates, "index": [index[m] for m in messages]}


def mute_id(messages: Sequence[str]) -> str:
    """A window's mute key: its set of distinct preprocessed messages (order and counts do not matter)."""
    return hashlib.sha256("\n".join(sorted(set(messages))).encode()).hexdigest()[:20]


def record_payload(
    window: ClosedWindow,
    status: str,
    config: RecordConfig,
    partitions: int,
    messages: Sequence[str] | None = None,
    explanation: list[dict[str, Any]] | None = None,
    verdict: Verdict | None = None,
    explain: bool = False,
) -> str:
    """The JSON records_lib.lua writes: where the window came from, retention and, when kept, its messages;
    with the verdict, why it is anomalous and the templates the novelty rule found (service/patterns).
    ``explain``: queue the window for its explanation (service/records/explainer.py), written later."""
    parts = window_parts(window.window_id, window.window_key)
    keep = status in ("anomalous", "failed")
    payload: dict[str, Any] = {
        "source": parts.source,
        "kind": parts.kind,
        "key": parts.key,
        "number": parts.number,
        "reason": window.reason,
        "ttl": config.anomaly_retention_s,
        "lines_ttl": config.anomaly_retention_s if keep else config.normal_lines_retention_s,
        "cap": max(1, -(-config.max_records // partitions)),
    }
    if messages is not None and payload["lines_ttl"] > 0:
        payload["messages"] = json.dumps(template_table(messages), separators=(",", ":"))
    if explanation is not None:
        payload["explanation"] = json.dumps(explanation, separators=(",", ":"))
    if explain:
        payload["explain"] = 1
    if verdict is not None and verdict.reason:
        payload["verdict_reason"] = verdict.reason
    novelty = verdict.novelty() if verdict is not None else None
    if novelty is not None:
        payload["novelty"] = json.dumps(novelty, separators=(",", ":"))
    return json.dumps(payload, separators=(",", ":"))


def _pairs(reply: Any) -> dict[str, str]:
    if isinstance(reply, dict):
        return {_text(k): _text(v) for k, v in reply.items()}
    return {_text(k): _text(v) for k, v in zip(reply[::2], reply[1::2], strict=True)}


def _float(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None


def public_record(f: dict[str, str], lines: Sequence[tuple[str, str, Any]] | None = None) -> dict[str, Any]:
    """A record hash as the API shows it; ``lines`` ((raw, content, timestamp), line_codec.decode_element) when
    asked for, each with its preprocessed message and, when it was sent with one, its ``timestamp`` as sent.
    ``line`` repeats ``content``: the name old clients read it by."""
    out: dict[str, Any] = {
        "id": f["id"],
        "source": f.get("source", DEFAULT_SOURCE),
        "kind": f.get("kind", "session"),
        "close_reason": f.get("reason", ""),
        "status": f.get("status", ""),
        "score": _float(f.get("score")),
        "threshold": _float(f.get("threshold")),
        "n_lines": int(f.get("n_lines") or 0),
        "closed_at": _float(f.get("closed_at")),
        "scored_at": _float(f.get("scored_at")),
        "model_version": f.get("model_version", ""),
        "error": f.get("error") or None,
        "lines_kept": f.get("lines_kept") == "1",
        "explanation": json.loads(f["explanation"]) if f.get("explanation") else None,
        "explanation_status": f.get("explanation_status") or ("done" if f.get("explanation") else None),
        "feedback": None,
        "reason": f.get("verdict_reason") or None,
        "novelty": json.loads(f["novelty"]) if f.get("novelty") else None,
    }
    if out["kind"] == "session":
        out["session_key"], out["window_number"] = f.get("key"), int(f.get("number") or 0)
    else:
        out["fixed_key"], out["start"] = f.get("key"), int(f.get("number") or 0)
    if f.get("feedback_label"):
        out["feedback"] = {
            "label": f["feedback_label"],
            "note": f.get("feedback_note"),
            "at": float(f["feedback_at"]),
            "mute_id": f.get("mute_id") or None,
        }
    if lines is not None:
        table = json.loads(f["messages"]) if f.get("messages") else None
        out["lines"] = [
            {"raw": raw, "content": content, "line": content,
             "message": table["templates"][table["index"][i]] if table else None}
            | ({"timestamp": timestamp} if timestamp is not None else {})
            for i, (raw, content, timestamp) in enumerate(lines)
        ]  # fmt: skip
    return out


def _lua(name: str) -> str:
    return Path(__file__).with_name(name).read_text(encoding="utf-8")


class RecordStore:
    """Reads, feedback and mutes over the records complete.lua writes; shares the WindowStore's client."""

    def __init__(self, store: WindowStore, config: RecordConfig | object | None = None) -> None:
        self.store = store
        self.redis: Any = store.redis
        self.config = config if isinstance(config, RecordConfig) else RecordConfig.from_settings(config)
        self.partitions = store.config.partitions
        self.mutes_key = f"{store.config.key_prefix}:mutes"
        self._secret_key = f"{store.config.key_prefix}:cursor-secret"
        self.secret = self.config.cursor_secret.encode()
        self.query_script: AsyncScript = self.redis.register_script(_lua("page_lib.lua") + "\n" + _lua("query.lua"))
        self._feedback_script: AsyncScript = self.redis.register_script(_lua("feedback.lua"))

    async def setup(self) -> None:
        """Without a configured cursor secret, every instance shares one random secret kept in Redis."""
        if self.secret:
            return
        with _translated():
            await self.redis.set(self._secret_key, secrets.token_hex(32), nx=True)
            self.secret = _text(await self.redis.get(self._secret_key)).encode()

    def payload(self, window: ClosedWindow, status: str, messages: Sequence[str] | None = None,
                explanation: list[dict[str, Any]] | None = None, verdict: Verdict | None = None,
                explain: bool = False) -> str:  # fmt: skip
        return record_payload(window, status, self.config, self.partitions, messages, explanation, verdict, explain)

    # --- one record ------------------------------------------------------------------------------------

    def _candidates(self, window_id: str) -> list[int]:
        """Partitions a record of this id can live in: its key's (legacy ids: a session's or a source's)."""
        ref = parse_window_id(window_id)
        keys = [ref.key] if ref else [window_id.split("#", 1)[0], window_id.rsplit(":", 1)[0]]
        return list(dict.fromkeys(self.store.partition(k) for k in keys))

    async def _fetch(self, partition: int, window_id: str, with_lines: bool) -> dict[str, Any] | None:
        """One record as the API shows it, from one partition (one round trip); None if it is not there."""
        prefix = self.store.prefix(partition)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(prefix + "rec:" + window_id)
            pipe.lrange(prefix + "rec:lines:" + window_id, 0, -1)
            found, lines = await pipe.execute()
        if not found:
            return None
        return public_record(_pairs(found), [decode_element(x) for x in lines] if with_lines else None)

    async def get(self, window_id: str, with_lines: bool = True) -> dict[str, Any] | None:
        with _translated():
            for p in self._candidates(window_id):
                if (found := await self._fetch(p, window_id, with_lines)) is not None:
                    return found
        return None

    async def set_feedback(self, window_id: str, label: str, note: str, at: float) -> dict[str, str] | None:
        """Store the label (the last one wins); the record's raw fields and ``_partition``, or None."""
        with _translated():
            for p in self._candidates(window_id):
                prefix = self.store.prefix(p)
                found = await self._feedback_script(
                    keys=[prefix + "rec:" + window_id], args=[prefix, window_id, label, note, repr(at)]
                )
                if found:
                    return {**_pairs(found), "_partition": str(p)}
        return None

    async def feedback_since(self, since: float, limit: int) -> list[dict[str, Any]]:
        """Labeled records (with lines), oldest label first, from all partitions."""
        found: list[tuple[float, str, int]] = []
        with _translated():
            for p in range(self.partitions):
                page = await self.redis.zrangebyscore(
                    self.store.prefix(p) + "rec:idx:feedback", since, "+inf", start=0, num=limit, withscores=True
                )
                found.extend((float(t), _text(i), p) for i, t in page)
            found.sort()
            fetched = [await self._fetch(p, window_id, True) for _, window_id, p in found[:limit]]
        return [r for r in fetched if r is not None]

    # --- sessions ----------------------------------------------------------------------------------------

    async def session_windows(self, key: str) -> list[dict[str, Any]]:
        """A session's windows in order: scored ones with their status, then those still pending or open."""
        prefix = self.store.prefix(self.store.partition(key))
        with _translated():
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zrange(prefix + "rec:sess:" + key, 0, -1, withscores=True)
                pipe.hmget(prefix + "meta:" + key, "open", "n", "mode")
                scored, meta = await pipe.execute()
            numbered = {int(n): _text(i) for i, n in scored}
            is_open = _text(meta[0] or b"") == "1" and _text(meta[2] or b"s") == "s"
            closed = int(meta[1] or 0) if _text(meta[2] or b"s") == "s" else 0
            count = max([closed, *(n + 1 for n in numbered)])
            ids = [numbered.get(n, key if n == 0 else f"{key}#{n}") for n in range(count)]
            async with self.redis.pipeline(transaction=False) as pipe:
                for window_id in ids:
                    pipe.hmget(prefix + "rec:" + window_id, "status", "score", "n_lines", "scored_at")
                    pipe.hget(prefix + "verdict:" + window_id, "label")
                    pipe.exists(prefix + "closed:" + window_id)
                replies = await pipe.execute()
        out: list[dict[str, Any]] = []
        for i, window_id in enumerate(ids):
            rec, verdict, waiting = replies[3 * i : 3 * i + 3]
            status = _text(rec[0]) if rec[0] else (_text(verdict) if verdict else "pending" if waiting else "expired")
            out.append({
                "id": window_id, "number": i, "status": status, "score": _float(_text(rec[1] or b"")),
                "n_lines": int(rec[2]) if rec[2] else None, "scored_at": _float(_text(rec[3] or b"")),
            })  # fmt: skip
        if is_open:  # numbered after the scored ones when the numbering expired (windows_lib.next_after_records)
            window_id = key if count == 0 else f"{key}#{count}"
            out.append({"id": window_id, "number": count, "status": "open", "score": None, "n_lines": None,
                        "scored_at": None})  # fmt: skip
        return out

    # --- mutes -------------------------------------------------------------------------------------------

    async def add_mute(self, record: dict[str, str], note: str, at: float) -> str:
        """Mute the set of distinct messages of this record's window; the mute id."""
        templates = json.loads(record["messages"])["templates"]
        mid = mute_id(templates)
        mute = {"id": mid, "messages": sorted(set(templates)), "window_id": record["id"], "note": note,
                "created_at": at}  # fmt: skip
        with _translated():
            await self.redis.hset(self.mutes_key, mid, json.dumps(mute))
            prefix = self.store.prefix(int(record["_partition"]))
            await self.redis.hset(prefix + "rec:" + record["id"], "mute_id", mid)
        return mid

    async def mutes(self) -> list[dict[str, Any]]:
        with _translated():
            found = await self.redis.hgetall(self.mutes_key)
        return sorted((json.loads(v) for v in found.values()), key=lambda m: m["created_at"])

    async def delete_mute(self, mid: str) -> bool:
        with _translated():
            return bool(await self.redis.hdel(self.mutes_key, mid))

    async def muted(self, ids: Sequence[str]) -> set[str]:
        """Which of these mute ids are set (one round trip per batch)."""
        if not ids:
            return set()
        with _translated():
            found = await self.redis.hmget(self.mutes_key, list(ids))
        return {i for i, v in zip(ids, found, strict=True) if v is not None}
