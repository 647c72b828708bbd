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
  month path below.
- Patterns 7, 9 and 10 begin with a run that the next element cannot take back (``[\w.]*`` before ``@``, letters
  before a digit or a slash), so those runs are possessive (``*+``): the same matches, without rescanning a word
  from every split point.

Worst case (linear in the line; anyone who may POST logs chooses the line):
- A run pattern (7, 9a, 9b, 10) that fails after a long run fails again from every later position of that run,
  so a plain scan is quadratic in the run (``'a' * 8000 + '!@1'``). A token with such a run longer than
  ``LONG_TOKEN`` is scanned by ``_linear_spans``: each run pattern is tried only where its left neighbour lies
  in another run (a guard, a lookbehind), because in the same run its outcome is the neighbour's, already known
  to be a failure. Right after a match the neighbour was never tried, so there the outcome comes from the end of
  the run, each run scanned once (``_DeadRuns``). Other tokens keep the plain scan: a failing try reads at most
  ``LONG_TOKEN`` characters there.
- A month + day is the only match that spans whitespace: lines that may hold one are cut at whitespace, each token
  substituted as above, and a month + day is decided from the token that ends in the month and the two after it
  (``_month_day_at``), instead of running every pattern over the whole line.
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

_ELLIPSIS = re.compile(r"\.{3,}")
# Every month + day match contains this (a month's first three letters, maybe more letters, whitespace, a digit).
_MAYBE_MONTH_DAY = re.compile(r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\s+\d")

LONG_TOKEN = 48  # tokens with a longer run take the linear scan (tests set 0 to check that scan everywhere)

_HAS_DIGIT = re.compile(r"\d").search
# Pattern numbers (indexes into PATTERNS) that can only match where a token holds a digit, "@", ":" or a slash.
_NEEDS_DIGIT, _NEEDS_AT, _NEEDS_COLON, _NEEDS_SLASH = (4, 12), (10, 11), (5, 6), (7,)
_MONTH_DAY_INDEX = 3  # needs whitespace, which a token never holds
_PATHS, _USER_AT_HOST, _WITH_DIGIT = (7,), (10, 11), (12,)  # the run patterns

# Where a run pattern may start in the linear scan: where the character before lies in another run of it (for
# 9a/9b: no word character before, nor one before the one or two dots before, since "..." never survives).
_AT_A_RUN_START = {
    7: r"(?:(?<![a-zA-Z0-9:./\\])|(?<=[:./\\])(?=[a-zA-Z0-9])|(?<=[/\\])(?=[:.]))",
    10: r"(?<!\w)(?<!\w\.)(?<!\w\.\.)",
    11: r"(?<!\w)(?<!\w\.)(?<!\w\.\.)",
    12: r"(?<![a-zA-Z.:\-_])",
}
_GUARD_REACH = 3  # the longest guard looks this many characters back


@lru_cache(maxsize=256)
def _alternation(absent: frozenset[int], guarded: bool = False) -> re.Pattern[str]:
    """The patterns not absent, in their order, as one alternation; guarded: run patterns only at a run's start."""
    guard = _AT_A_RUN_START if guarded else {}
    return re.compile("|".join(f"(?:{guard.get(i, '')}{p})" for i, p in enumerate(PATTERNS) if i not in absent))


def _absent_patterns(token: str) -> frozenset[int]:
    """The patterns that need a character the token lacks: leaving them out gives the same matches, fewer tries."""
    return _absent(bool(_HAS_DIGIT(token)), "@" in token, ":" in token, "/" in token or "\\" in token)


@lru_cache(maxsize=16)
def _token_variables(digit: bool, at: bool, colon: bool, slash: bool) -> re.Pattern[str]:
    """The plain alternation for a token with these characters (one cache lookup on the short-token path)."""
    return _alternation(_absent(digit, at, colon, slash))


@lru_cache(maxsize=16)
def _absent(digit: bool, at: bool, colon: bool, slash: bool) -> frozenset[int]:
    absent = {_MONTH_DAY_INDEX}
    for present, needs in ((digit, _NEEDS_DIGIT), (at, _NEEDS_AT), (colon, _NEEDS_COLON), (slash, _NEEDS_SLASH)):
        if not present:
            absent.update(needs)
    return frozenset(absent)


_SEGMENT_AT, _WORD_AT, _DIGIT_AT = re.compile(r"[^/\\\s\[\]]").match, re.compile(r"\w").match, re.compile(r"\d").match


def _path_follows(token: str, end: int) -> bool:
    return token[end - 1] in "/\\" and _SEGMENT_AT(token, end) is not None  # the lead has a slash, a segment follows


def _user_follows(token: str, end: int) -> bool:
    return token.startswith("@", end) and _WORD_AT(token, end + 1) is not None


def _digit_follows(token: str, end: int) -> bool:
    return _DIGIT_AT(token, end) is not None


# Per run pattern (7, 9a/9b, 10): its leading run (7: up to its first segment), and whether what follows the run
# lets the pattern match.
_RUN_PATTERNS = (
    (re.compile(r"[a-zA-Z0-9]*+[:.]*+[/\\]*+").match, _path_follows),
    (re.compile(r"[\w.]*+").match, _user_follows),
    (re.compile(r"[a-zA-Z.:\-_]*+").match, _digit_follows),
)


class _DeadRuns:
    """Whether each run pattern can still match at a position, from the end of its run there.

    From anywhere in a run, the run ends at the same character, and that character decides; so one scan of a
    run answers for every position in it. Positions are asked in increasing order, so each character is scanned
    at most once per pattern.
    """

    def __init__(self, token: str) -> None:
        self.token = token
        self.ends = [0, 0, 0]  # per run pattern: the answer in `dead` holds below this position
        self.dead = [False, False, False]

    def mask(self, p: int) -> int:
        """Bit 1: pattern 7 cannot match at p; 2: 9a/9b cannot; 4: 10 cannot."""
        out = 0
        for k, (lead, follows) in enumerate(_RUN_PATTERNS):
            if p >= self.ends[k]:
                run = lead(self.token, p)  # never None: the run may be empty
                end = run.end() if run else p
                self.ends[k], self.dead[k] = (end, not follows(self.token, end)) if end > p else (p + 1, False)
            out |= self.dead[k] << k
        return out


@lru_cache(maxsize=16)
def _without_dead(absent: frozenset[int]) -> tuple[re.Pattern[str], ...]:
    """The plain alternation for each set of dead run patterns (the index: _DeadRuns.mask)."""
    runs = (_PATHS, _USER_AT_HOST, _WITH_DIGIT)
    return tuple(_alternation(absent.union(*(r for bit, r in enumerate(runs) if mask >> bit & 1))) for mask in range(8))


def _linear_spans(token: str) -> list[tuple[int, int]]:
    """The spans the plain alternation's scan matches, in time linear in the token (module docstring).

    The guarded alternation is exact at a position where the characters its guards look at were themselves tried
    without a match. Right after a match they lie inside it, so the next position (and up to two more after dots,
    which 9a/9b's guards look past) is tried alone, with the plain patterns less the run patterns dead there.
    """
    n = len(token)
    absent = _absent_patterns(token)
    guarded, plain = _alternation(absent, guarded=True), _without_dead(absent)
    dead = _DeadRuns(token)
    spans: list[tuple[int, int]] = []
    pos = 0
    while pos < n:
        p = pos
        while not (found := plain[dead.mask(p)].match(token, p)):
            if token[p] != "." or p - pos + 1 >= _GUARD_REACH or p + 1 >= n:
                break
            p += 1
        if found is None and (found := guarded.search(token, p + 1)) is None:
            break
        spans.append(found.span())
        pos = found.end()
    return spans


@lru_cache(maxsize=4)
def _long_run(longest: int) -> re.Pattern[str]:
    return re.compile(rf"[\w.:\-/\\]{{{longest + 1}}}")  # every class a run pattern reads before it can fail


def _plain_scan_is_bounded(token: str) -> bool:
    """Whether the plain scan is fast enough on this token: a failing try of a run pattern reads no further than
    its run, so with no run past LONG_TOKEN characters it reads at most that much from each position."""
    return len(token) <= LONG_TOKEN or _long_run(LONG_TOKEN).search(token) is None


def _spans(token: str) -> list[tuple[int, int]]:
    if not _plain_scan_is_bounded(token):
        return _linear_spans(token)
    return [m.span() for m in _alternation(_absent_patterns(token)).finditer(token)]


def _replaced(text: str, spans: list[tuple[int, int]], end: int) -> str:
    """text[:end] with each span replaced by ``<*>``."""
    pieces: list[str] = []
    last = 0
    for start, stop in spans:
        pieces += (text[last:start], "<*>")
        last = stop
    pieces.append(text[last:end])
    return "".join(pieces)


@lru_cache(maxsize=TOKEN_CACHE_SIZE)
def _substitute_token(token: str) -> str:
    if not _plain_scan_is_bounded(token):
        return _replaced(token, _linear_spans(token), len(token))
    has_slash = "/" in token or "\\" in token
    return _token_variables(bool(_HAS_DIGIT(token)), "@" in token, ":" in token, has_slash).sub("<*>", token)


_WHITESPACE = re.compile(r"(\s+)")
_MONTH_AT_END = re.compile(rf"\b(?:{_MONTHS})\Z")
_DAY = re.compile(r"\d{1,2}")


def _month_day_at(parts: list[str], k: int) -> int | None:
    """Where in token ``parts[k]`` a month + day begins, if the line's scan matches one there.

    Pattern 4 is letters, whitespace, one or two digits, then whitespace and a word character; so the month ends
    its token, the day is the whole next token and the token after starts with a word character. The scan gets to
    the month unless a match of the token's own covers it.
    """
    month = _MONTH_AT_END.search(parts[k])
    if month is None or k + 4 >= len(parts) or not _DAY.fullmatch(parts[k + 2]) or not _WORD_AT(parts[k + 4]):
        return None
    start = month.start()
    return start if all(stop <= start for _, stop in _spans(parts[k])) else None


def _with_month_days(content: str) -> str:
    parts = _WHITESPACE.split(content)  # tokens at even indexes, the whitespace between them at odd ones
    out: list[str] = []
    k = 0
    while k < len(parts):
        token = parts[k]
        start = _month_day_at(parts, k)
        if start is None:
            out += (_substitute_token(token), *parts[k + 1 : k + 2])
            k += 2
        else:  # the month + day takes the month, the whitespace and the day; the whitespace after stays
            out += (_replaced(token, _spans(token), start), "<*>", parts[k + 3])
            k += 4
    return "".join(out)


def preprocess(content: str) -> str:
    """The content with every variable replaced by ``<*>``; ``...`` (3+ dots) becomes ``.. `` first."""
    if "..." in content:
        content = _ELLIPSIS.sub(".. ", content)
    if _MAYBE_MONTH_DAY.search(content):
        return _with_month_days(content)
    return " ".join(map(_substitute_token, content.split(" ")))
