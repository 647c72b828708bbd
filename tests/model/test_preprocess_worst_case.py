"""The preprocessing's worst case is linear: lines built to stall a backtracking scan (long runs of one character
class, near-matches of every pattern, repeated) cost about what a real log line of the same length costs, and
still come out byte-identical to the plain alternation in tests/model/preprocess_reference.py.

Hypothesis builds the lines (derandomized: the same lines on every run). Time is compared as a ratio against
the median of real lines of the same length, measured in the same run; no absolute seconds are asserted.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model import preprocess as module
from tests.model.preprocess_reference import preprocess as reference
from tests.model.test_preprocess import _every_line

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
LENGTH = 6000  # characters per timed line: a plain scan takes ~quadratic time, hundreds of times a real line's
WORST_OVER_MEDIAN = 60  # measured 10-36 after the fix on a loaded 2-core machine; ~400 before it

# Character classes of the patterns' runs, and what may end a run: near-misses of what each pattern needs next.
RUNS = {
    "letters": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "hex": "0123456789abcdefABCDEF",
    "word": "abcxyz019_\u00e9\u0663",
    "word and dots": "ab.",
    "pattern 10's run": "aZ.:-_",
    "path lead": "ab1:.",
    "slashes": "/\\",
    "digits and dots": "12.",
    "colons and hex": "ab:",
}
ENDS = [
    "",
    "!",
    "@",
    "@!",
    "!@1",
    "@a",
    "@a-",
    "@a-!",
    "/",
    "/ ",
    "/[",
    "//]",
    ":/",
    "1",
    "!1",
    ".5",
    "-",
    ":",
    "\u0663",
]
NEAR = [
    "a@b", "a@b-", "a@", "@b", "a.@b.-c", "1.2.3", "1.2.3.4.5", "1.2.3.4:", "aa:bb:cc:dd:ee", "aa:bb:cc:dd:ee:ff:00",
    "deadbee", "deadbeef1", "abcdef01234", "a:/", "a/", "//", "a/[b]", "Jun 1", "Jun 14x", "June  3", "Jun 123 x",
    "true1", "falsehood", "onet", "Monday1", "x1", "1a", "a-1", "a_b:c", "..", "a.. b",
]  # fmt: skip
SEPARATORS = ["", "", ".", "-", ":", "_", "@", "/", " ", "\t", "[", "é"]


@st.composite
def adversarial_lines(draw: st.DrawFn, length: int) -> str:
    """A unit (a run of one class, a near-miss, a separator) repeated to the length; letters varied by a drawn
    seed so that the per-token cache cannot answer for the repeats."""
    run_class = RUNS[draw(st.sampled_from(sorted(RUNS)))]
    run_length = draw(st.sampled_from([0, 1, 2, 7, 40, 300, length]))
    end, near, separator = draw(st.sampled_from(ENDS)), draw(st.sampled_from(NEAR)), draw(st.sampled_from(SEPARATORS))
    rng = random.Random(draw(st.integers(0, 2**32)))
    units: list[str] = []
    while sum(map(len, units)) < length:
        units.append("".join(rng.choice(run_class) for _ in range(run_length)) + end + near + separator)
    return "".join(units)[:length]


@contextmanager
def linear_scan_for_every_token() -> Iterator[None]:
    """Every token through the linear scan (not only the long ones), with a cold token cache."""
    saved = module.LONG_TOKEN
    module.LONG_TOKEN = 0
    module._substitute_token.cache_clear()
    try:
        yield
    finally:
        module.LONG_TOKEN = saved
        module._substitute_token.cache_clear()


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(adversarial_lines(length=120), st.booleans())
def test_adversarial_lines_stay_byte_identical_to_the_reference(line: str, every_token: bool) -> None:
    if every_token:
        with linear_scan_for_every_token():
            assert module.preprocess(line) == reference(line), repr(line)
    else:
        assert module.preprocess(line) == reference(line), repr(line)


def seconds(line: str, repeats: int = 3) -> float:
    """The fastest of a few runs, each with a cold token cache (as for a line of new tokens)."""
    best = float("inf")
    for _ in range(repeats):
        module._substitute_token.cache_clear()
        started = time.perf_counter()
        module.preprocess(line)
        best = min(best, time.perf_counter() - started)
    return best


def real_lines(length: int, count: int) -> list[str]:
    """Real log lines of the fixtures, joined by spaces into lines of the given length."""
    text = [
        line
        for name in ("bgl/BGL.log", "thunderbird/Thunderbird.log", "hdfs/HDFS.log", "liberty/Liberty.log")
        for line in (FIXTURES / name).read_text(encoding="utf-8", errors="replace").splitlines()
    ]
    out, i = [], 0
    for _ in range(count):
        line = ""
        while len(line) < length:
            line += text[i % len(text)] + " "
            i += 7
        out.append(line[:length])
    return out


def test_no_crafted_line_costs_much_more_than_a_real_one() -> None:
    timed: list[tuple[float, str]] = []
    real = real_lines(LENGTH, 40)
    real_timed: list[float] = []

    @settings(max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(adversarial_lines(length=LENGTH))
    def time_one(line: str) -> None:  # a real line timed beside each crafted one: a neighbour's load hits both
        timed.append((seconds(line), line))
        real_timed.append(seconds(real[len(real_timed) % len(real)]))

    time_one()
    worst, line = max(timed)
    ratio = worst / statistics.median(real_timed)
    print(f"{len(timed)} crafted lines of {LENGTH} characters; the slowest took {ratio:.1f}x the median real line")
    assert ratio < WORST_OVER_MEDIAN, f"{ratio:.0f}x the median real line: {line[:120]!r}..."


@pytest.mark.parametrize("where", ["shared data", "fixtures"])
def test_the_linear_scan_is_byte_identical_on_every_real_line(where: str, request: pytest.FixtureRequest) -> None:
    folder = request.getfixturevalue("shared_data") if where == "shared data" else FIXTURES
    lines = set(_every_line(folder))
    with linear_scan_for_every_token():
        differing = [(line, new, old) for line in lines if (new := module.preprocess(line)) != (old := reference(line))]
    assert differing == []
