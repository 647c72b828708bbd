r"""LogLLM preprocessing: replace the variable parts of a message with ``<*>``, by regexes only (no parser).

The patterns and their order follow the paper's reference code (shared/LOGLLM.md). Two quirks of that code are
decided deliberately here (PREPROCESS_VERSION "2" records the decisions; checkpoints store it):
1. booleans get word boundaries: ``falsehood`` stays ``falsehood`` (the reference turns it into ``<*>hood``).
2. month + day keeps the space that follows: ``Jun 14 15:16:01 x`` -> ``<*> <*> x`` (the reference eats it
   and glues the next token on: ``<*><*> x``). The reference's ``\s+\b`` after the day becomes a lookahead,
   so what matches is unchanged (``Jun 14:30`` and a line-final ``Jun 14`` still do not match); only the
   whitespace stays, as it was.
Everything else is the reference's alternation, in its order; nothing is truncated here.

Speed (the output is byte-identical to the plain one-pass alternation, kept in tests/model/preprocess_reference.py):
- No pattern but month + day matches across a space, and none starts on one (a space is also a non-word
  character, as the ends of a string are for ``\b``), so a line without a month + day is its space-separated tokens,
  each substituted alone, joined by spaces. Logs repeat tokens far more than
  lines, so each distinct token is substituted once (an LRU cache); lines that may hold a month + day take the
  whole-line path.
- Patterns 7, 9 and 10 begin with a run that the next element cannot take back (``[\w.]*`` before ``@``, letters
  before a digit or a slash), so those runs are possessive (``*+``): the same matches, without rescanning a word
  from every split point.
"""

from __future__ import annotations

import re
from functools import lru_cache

PREPROCESS_VERSION = "2"
TOKEN_CACHE_SIZE = 1 << 16  # distinct tokens kept; ~100 bytes each

_NUMBER_WORDS = (
    "zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|"
    "seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|thousand|million|"
    "billion"
)
_WEEKDAYS = "Mon|Monday|Tue|Tuesday|Wed|Wednesday|Thu|Thursday|Fri|Friday|Sat|Saturday|Sun|Sunday"
_MONTHS = (
    "Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|Jun(?:e)?|Jul(?:y)?|Aug(?:ust)?|Sep(?:tember)?|"
    "Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?"
)

PATTERNS: tuple[str, ...] = (
    r"\b(?:True|true|False|false)\b",  # 1 booleans (quirk 1: word boundaries added)
    rf"\b(?:{_NUMBER_WORDS})\b",  # 2 number words
    rf"\b(?:{_WEEKDAYS})\b",  # 3 weekdays
    rf"\b(?:{_MONTHS})\s+\d{{1,2}}(?=\s+\b)",  # 4 month + day (quirk 2: space kept)
    r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?::\d{1,5})?",  # 5 IPv4 with optional port
    r"(?:[0-9A-Fa-f]{2}:){11}[0-9A-Fa-f]{2}",  # 6a long MAC-like
    r"(?:[0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}",  # 6b MAC
    r"[a-zA-Z0-9]*+[:\.]*+(?:[/\\]+[^/\\\s\[\]]+)+[/\\]*",  # 7 paths
    r"\b[0-9a-fA-F]{8}\b",  # 8a 8-digit hex words
    r"\b[0-9a-fA-F]{10}\b",  # 8b 10-digit hex words
    r"\w[\w\.]*+@\w[\w\.]*+\-\w[\w\.]*",  # 9a user@host-suffix (reference: (\w+[\w\.]*) for each part)
    r"\w[\w\.]*+@\w[\w\.]*",  # 9b user@host
    r"[a-zA-Z\.\:\-\_]*+\d[a-zA-Z0-9\.\:\-\_]*",  # 10 any token with a digit
)

_VARIABLES = re.compile("|".join(f"(?:{p})" for p in PATTERNS))
_ELLIPSIS = re.compile(r"\.{3,}")
# Every month + day match contains this (a month's first three letters, maybe more letters, whitespace, a digit).
_MAYBE_MONTH_DAY = re.compile(r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\s+\d")


_HAS_DIGIT = re.compile(r"\d").search
# Pattern numbers (indexes into PATTERNS) that can only match where a token holds a digit, "@", ":" or a slash.
_NEEDS_DIGIT, _NEEDS_AT, _NEEDS_COLON, _NEEDS_SLASH = (4, 12), (10, 11), (5, 6), (7,)
_MONTH_DAY_INDEX = 3  # needs whitespace, which a token never holds


@lru_cache(maxsize=16)
def _token_variables(digit: bool, at: bool, colon: bool, slash: bool) -> re.Pattern[str]:
    """The alternation without the patterns that need a character the token lacks: the same matches, fewer tries."""
    absent = {_MONTH_DAY_INDEX}
    for present, needs in ((digit, _NEEDS_DIGIT), (at, _NEEDS_AT), (colon, _NEEDS_COLON), (slash, _NEEDS_SLASH)):
        if not present:
            absent.update(needs)
    return re.compile("|".join(f"(?:{p})" for i, p in enumerate(PATTERNS) if i not in absent))


@lru_cache(maxsize=TOKEN_CACHE_SIZE)
def _substitute_token(token: str) -> str:
    has_slash = "/" in token or "\\" in token
    variables = _token_variables(bool(_HAS_DIGIT(token)), "@" in token, ":" in token, has_slash)
    return variables.sub("<*>", token)


def preprocess(content: str) -> str:
    """The content with every variable replaced by ``<*>``; ``...`` (3+ dots) becomes ``.. `` first."""
    if "..." in content:
        content = _ELLIPSIS.sub(".. ", content)
    if _MAYBE_MONTH_DAY.search(content):
        return _VARIABLES.sub("<*>", content)
    return " ".join(map(_substitute_token, content.split(" ")))
