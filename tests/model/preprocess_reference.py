r"""The preprocessing as it was before the token cache (PREPROCESS_VERSION "2"): one alternation over the line.

Kept verbatim as the reference that ``model.preprocess`` must match byte for byte (tests/model/test_preprocess.py)
and as the "before" of ``bench/preprocess_speed.py``. Do not optimise this file.
"""

from __future__ import annotations

import re

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
    r"[a-zA-Z0-9]*[:\.]*(?:[/\\]+[^/\\\s\[\]]+)+[/\\]*",  # 7 paths
    r"\b[0-9a-fA-F]{8}\b",  # 8a 8-digit hex words
    r"\b[0-9a-fA-F]{10}\b",  # 8b 10-digit hex words
    r"(?:\w+[\w\.]*)@(?:\w+[\w\.]*)\-(?:\w+[\w\.]*)",  # 9a user@host-suffix
    r"(?:\w+[\w\.]*)@(?:\w+[\w\.]*)",  # 9b user@host
    r"[a-zA-Z\.\:\-\_]*\d[a-zA-Z0-9\.\:\-\_]*",  # 10 any token with a digit
)

_VARIABLES = re.compile("|".join(f"(?:{p})" for p in PATTERNS))
_ELLIPSIS = re.compile(r"\.{3,}")


def preprocess(content: str) -> str:
    """The content with every variable replaced by ``<*>``; ``...`` (3+ dots) becomes ``.. `` first."""
    return _VARIABLES.sub("<*>", _ELLIPSIS.sub(".. ", content))
