"""Group messages into sequences: session windows by id, or fixed/sliding windows by position.

Pure functions, so the offline loaders, ``logllm score`` and the online service cut windows the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from typing import TypeVar

T = TypeVar("T")

HDFS_BLOCK_PATTERN = r"blk_-?\d+"


@lru_cache(maxsize=32)
def session_finder(pattern: str | re.Pattern[str] = HDFS_BLOCK_PATTERN) -> Callable[[str], list[str]]:
    """``session_ids`` with the pattern fixed: what a caller that reads many lines with one pattern calls."""
    regex = re.compile(pattern) if isinstance(pattern, str) else pattern
    if regex.groups:  # findall gives whole matches only for a pattern without groups
        return lambda text: _distinct([match.group(0) for match in regex.finditer(text)])
    findall = regex.findall
    return lambda text: _distinct(findall(text))  # one C call in the common case


def _distinct(found: list[str]) -> list[str]:
    return found if len(found) < 2 else list(dict.fromkeys(found))


def session_ids(text: str, pattern: str | re.Pattern[str] = HDFS_BLOCK_PATTERN) -> list[str]:
    """Distinct session ids in order of appearance; a line naming several ids belongs to each."""
    return session_finder(pattern)(text)


def group_sessions(
    items: Iterable[tuple[str, T]], pattern: str | re.Pattern[str] = HDFS_BLOCK_PATTERN
) -> dict[str, list[T]]:
    """``(line text, payload)`` pairs grouped by the session ids found in the text, in first-seen order."""
    sessions: dict[str, list[T]] = {}
    for text, payload in items:
        for sid in session_ids(text, pattern):
            sessions.setdefault(sid, []).append(payload)
    return sessions


def fixed_windows(items: Sequence[T], size: int, step: int) -> Iterator[tuple[int, list[T]]]:
    """``(start index, window)`` every ``step`` items; a trailing partial window is kept, not dropped."""
    if size <= 0 or step <= 0:
        raise ValueError(f"window size and step must be positive, got size={size} step={step}")
    for start in range(0, len(items), step):
        window = list(items[start : start + size])
        yield start, window
        if start + size >= len(items):
            return
