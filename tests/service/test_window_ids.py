"""Window ids name their kind and source, so a session and a fixed window can never share a key."""

from __future__ import annotations

import pytest

from service.windows.ids import BadWindowName, WindowRef, fixed_key, is_window_key, parse_window_id, session_key


def test_session_and_fixed_window_of_the_same_name_have_different_keys() -> None:
    assert session_key("coll", "100") != fixed_key("coll")
    assert parse_window_id("session:coll:100") != parse_window_id("fixed:coll:100")


@pytest.mark.parametrize(
    ("window_id", "ref"),
    [
        ("session:default:blk_1", WindowRef("session", "default", "blk_1", 0)),
        ("session:web:a:b#2", WindowRef("session", "web", "a:b", 2)),
        ("fixed:bgl:300", WindowRef("fixed", "bgl", None, 300)),
        ("blk_1", None),
        ("bgl:300", None),
        ("session:bad source:x", None),
    ],
)
def test_parse(window_id: str, ref: WindowRef | None) -> None:
    assert parse_window_id(window_id) == ref


def test_key_round_trips() -> None:
    ref = parse_window_id("session:web:a:b#2")
    assert ref is not None and ref.key == "session:web:a:b"
    fixed = parse_window_id("fixed:bgl:300")
    assert fixed is not None and fixed.key == "fixed:bgl"


@pytest.mark.parametrize("source", ["", "a:b", "a b", "a#b", "x" * 257])
def test_bad_sources_are_refused_with_a_reason(source: str) -> None:
    with pytest.raises(BadWindowName, match="source"):
        session_key(source, "x")


@pytest.mark.parametrize("session", ["", "a b", "a#b", "x" * 257])
def test_bad_session_ids_are_refused_with_a_reason(session: str) -> None:
    with pytest.raises(BadWindowName, match="session id"):
        session_key("web", session)


@pytest.mark.parametrize(
    ("name", "is_key"),
    [("session:web:a:b", True), ("fixed:web", True), ("blk_1", False), ("fixed:web:3", False), ("web", False)],
)
def test_window_keys_are_told_from_bare_session_ids(name: str, is_key: bool) -> None:
    assert is_window_key(name) is is_key
