"""build_batch's window keys (service/intake/batch.py): a session id checked once is remembered, and every
rejection stays what it was without that memory."""

from __future__ import annotations

import pytest

from service.intake import batch as batch_module
from service.intake.batch import build_batch
from service.settings import ServiceSettings


def reasons(lines: list[tuple[int, str, str | None, str | None, None]], **options: object) -> list[tuple[int, str]]:
    batch = build_batch(lines, ServiceSettings(**options))
    return [(r.index, r.reason) for r in batch.rejected]


def test_a_remembered_session_id_gives_the_same_key_and_the_memory_stays_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(batch_module, "MAX_CHECKED_SESSIONS", 3)
    monkeypatch.setattr(batch_module, "_CHECKED_SESSIONS", set())
    lines = [(i, f"read of blk_{i % 5} done", None, None, None) for i in range(20)]
    first = build_batch(lines, ServiceSettings())
    again = build_batch(lines, ServiceSettings())
    assert first.accepted == again.accepted == 20
    keys = [key for key, _ in next(iter(again.groups.values()))]
    assert keys == [f"session:default:blk_{i % 5}" for i in range(20)]
    assert keys == [key for key, _ in next(iter(first.groups.values()))]
    assert 0 < len(batch_module._CHECKED_SESSIONS) <= 3


def test_rejections_do_not_change_once_an_id_is_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shortcut takes only a line naming one remembered id from a valid source; the rest is checked as
    before: several ids against the cap, a source that cannot be part of a key, an id that never passed."""
    monkeypatch.setattr(batch_module, "_CHECKED_SESSIONS", set())
    assert reasons([(0, "blk_1 and blk_2", None, None, None)]) == []  # both now remembered
    assert reasons([(0, "blk_1 and blk_2", None, None, None)], max_sessions_per_line=1) == [(0, "too_many_session_ids")]
    assert reasons([(0, "blk_1", None, "bad:source", None)]) == [(0, "bad_session_id")]
    assert reasons([(0, "x", "has#hash", None, None)]) == [(0, "bad_session_id")]
    assert reasons([(0, "no id here", None, None, None)]) == [(0, "no_session_id")]
    assert "has#hash" not in batch_module._CHECKED_SESSIONS
