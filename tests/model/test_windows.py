"""Session and fixed/sliding windows."""

from __future__ import annotations

import pytest

from model.windows import fixed_windows, group_sessions, session_ids


def test_session_ids_in_order_and_distinct() -> None:
    line = "Deleting block blk_-1608999687919862906 file blk_-1608999687919862906 and blk_7503483334202473044"
    assert session_ids(line) == ["blk_-1608999687919862906", "blk_7503483334202473044"]
    assert session_ids("no block here") == []
    assert session_ids("req=abc-12 done", r"req=([\w-]+)") == ["req=abc-12"]
    assert session_ids("req=a req=b req=a", r"req=(\w)") == ["req=a", "req=b"]  # whole matches, with groups


def test_a_line_naming_several_sessions_joins_each() -> None:
    lines = [("blk_1 start", "a"), ("blk_2 and blk_1", "b"), ("none", "c"), ("blk_2 end", "d")]
    grouped = group_sessions(lines)
    assert grouped == {"blk_1": ["a", "b"], "blk_2": ["b", "d"]}


def test_fixed_windows_step_equal_to_size_keep_the_partial_tail() -> None:
    assert list(fixed_windows(list(range(7)), 3, 3)) == [(0, [0, 1, 2]), (3, [3, 4, 5]), (6, [6])]


def test_sliding_windows() -> None:
    assert list(fixed_windows(list(range(5)), 3, 1)) == [(0, [0, 1, 2]), (1, [1, 2, 3]), (2, [2, 3, 4])]


def test_bgl_sized_windows_count() -> None:
    assert len(list(fixed_windows(list(range(2000)), 100, 100))) == 20


@pytest.mark.parametrize(("size", "step"), [(0, 1), (1, 0), (-1, 5)])
def test_window_arguments_are_validated(size: int, step: int) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        list(fixed_windows([1, 2], size, step))
