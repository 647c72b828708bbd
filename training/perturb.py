"""Anomalous windows synthesized from normal ones, for training without labels (``logllm train --unlabeled``).

Each perturbation is a small pure function ``(messages, rng, donors) -> messages`` that mimics one way real
failures show in logs; ``donors`` are messages from elsewhere (other windows, other sources or systems) for the
ones that insert. ``synthesize_anomalies`` draws one per normal window with a seeded RNG and keeps only results
that differ from the window and from every normal window, so no synthetic anomaly is a real normal one.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from functools import partial

from training.data_common import LabeledSequence

Perturbation = Callable[[Sequence[str], random.Random, Sequence[str]], list[str]]
MAX_BLOCK = 3  # longest block wrong_count repeats
MAX_REPEATS = 3  # most extra copies of a block
ROUNDS = 3  # passes over the perturbations before a window counts as unchangeable


def _foreign(messages: Sequence[str], rng: random.Random, donors: Sequence[str], tries: int = 8) -> str:
    """A donor not in the window when a few draws find one (donor pools run to thousands: no filtering pass)."""
    own = set(messages)
    pick = rng.choice(donors)
    for _ in range(tries - 1):
        if pick not in own:
            break
        pick = rng.choice(donors)
    return pick


def drop_message(messages: Sequence[str], rng: random.Random, donors: Sequence[str]) -> list[str]:
    """A step that never happened or whose line was lost (a replica never written, a handshake half done)."""
    if len(messages) < 2:
        return list(messages)
    i = rng.randrange(len(messages))
    return [*messages[:i], *messages[i + 1 :]]


def duplicate_message(messages: Sequence[str], rng: random.Random, donors: Sequence[str]) -> list[str]:
    """A retried step: the same message twice in a row (a timeout, then the retry)."""
    i = rng.randrange(len(messages))
    return [*messages[: i + 1], messages[i], *messages[i + 1 :]]


def swap_messages(messages: Sequence[str], rng: random.Random, donors: Sequence[str]) -> list[str]:
    """Steps out of order (a race). Off by default: concurrent HDFS steps often interleave in normal sessions."""
    pairs = [(i, j) for i in range(len(messages)) for j in range(i + 1, len(messages)) if messages[i] != messages[j]]
    if not pairs:
        return list(messages)
    i, j = rng.choice(pairs)
    out = list(messages)
    out[i], out[j] = out[j], out[i]
    return out


def insert_foreign(messages: Sequence[str], rng: random.Random, donors: Sequence[str]) -> list[str]:
    """A message that does not belong: from another window, another source, or another system's logs."""
    if not donors:
        return list(messages)
    i = rng.randrange(len(messages) + 1)
    return [*messages[:i], _foreign(messages, rng, donors), *messages[i:]]


def cut_end(messages: Sequence[str], rng: random.Random, donors: Sequence[str]) -> list[str]:
    """A process that died or hung mid-way: the window stops after a prefix, with no error line."""
    if len(messages) < 2:
        return list(messages)
    return list(messages[: rng.randrange(1, len(messages))])


def interrupt(messages: Sequence[str], rng: random.Random, donors: Sequence[str]) -> list[str]:
    """An interrupted lifecycle: a prefix, then something from elsewhere (an exception, a shutdown, a takeover)."""
    if not donors:
        return list(messages)
    return [*messages[: rng.randrange(1, len(messages) + 1)], _foreign(messages, rng, donors)]


def drop_terminal(messages: Sequence[str], rng: random.Random, donors: Sequence[str]) -> list[str]:
    """The closing event is missing (a block never reported complete, a job without its 'finished')."""
    return list(messages[:-1]) if len(messages) > 1 else list(messages)


def wrong_count(messages: Sequence[str], rng: random.Random, donors: Sequence[str]) -> list[str]:
    """A block of steps repeated N times (too many replicas, a retry loop, a request storm)."""
    size = rng.randint(1, min(MAX_BLOCK, len(messages)))
    start = rng.randrange(len(messages) - size + 1)
    block = list(messages[start : start + size])
    return [*messages[: start + size], *block * rng.randint(1, MAX_REPEATS), *messages[start + size :]]


PERTURBATIONS: dict[str, Perturbation] = {
    "drop": drop_message,
    "duplicate": duplicate_message,
    "swap": swap_messages,
    "insert": insert_foreign,
    "cut-end": cut_end,
    "interrupt": interrupt,
    "drop-terminal": drop_terminal,
    "wrong-count": wrong_count,
}
DEFAULT_PERTURBATIONS = [name for name in PERTURBATIONS if name != "swap"]


def check_names(names: Sequence[str]) -> list[str]:
    """The names as given, or a ValueError that lists the known ones."""
    unknown = [n for n in names if n not in PERTURBATIONS]
    if unknown or not names:
        raise ValueError(f"perturbations: unknown {unknown or 'empty list'}; choose from {', '.join(PERTURBATIONS)}")
    return list(names)


def perturb(
    messages: Sequence[str],
    rng: random.Random,
    names: Sequence[str],
    donors: Sequence[str],
    *,
    max_messages: int | None = None,
    forbidden: frozenset[tuple[str, ...]] | set[tuple[str, ...]] = frozenset(),
    fit: Callable[[Sequence[str]], list[str]] | None = None,
) -> tuple[str, list[str]] | None:
    """``(name, perturbed window)`` from the first of the shuffled perturbations that changes the window.

    Random draws can miss (a cut at a forbidden length): the shuffled list is tried ``ROUNDS`` times.

    The result is cut to ``max_messages`` (what the model sees) and passed through ``fit`` (if given) before
    comparing, and must differ from the window and from every window in ``forbidden`` (the real normals). ``None``
    when no perturbation can.
    """
    original = tuple(messages[:max_messages])
    for _ in range(ROUNDS):
        order = list(names)
        rng.shuffle(order)
        for name in order:
            out = PERTURBATIONS[name](messages, rng, donors)[:max_messages]
            if fit is not None:
                out = fit(out)
            if tuple(out) != original and tuple(out) not in forbidden and out:
                return name, out
    return None


def synthesize_anomalies(
    normals: Sequence[LabeledSequence],
    names: Sequence[str],
    seed: int,
    *,
    extra_messages: Sequence[str] = (),
    max_messages: int | None = None,
    fixed_length: bool = False,
) -> tuple[list[LabeledSequence], dict[str, int]]:
    """One perturbed copy of each normal window (label 1), and how many each perturbation made.

    Donors for insertions are the distinct messages of the other normal windows plus ``extra_messages`` (another
    source or system). A window no perturbation can change into a non-normal one is skipped (counted as
    ``unchanged``).

    ``fixed_length`` (fixed windows, ``normals`` in log order): a copy keeps its window's number of lines, as a
    fixed window of a real log does, so a model cannot learn "not the usual length" instead of the fault. A longer
    copy loses its last lines; a shorter one takes the next window's first lines, which is what a window holds
    when lines went missing from the stream.
    """
    names = check_names(names)
    rng = random.Random(seed)
    donors = sorted({m for s in normals for m in s.messages} | set(extra_messages))
    real = {tuple(s.messages[:max_messages]) for s in normals}
    counts = dict.fromkeys(names, 0) | {"unchanged": 0}
    out: list[LabeledSequence] = []
    for index, s in enumerate(normals):
        following = normals[(index + 1) % len(normals)].messages if fixed_length else ()
        length = len(s.messages[:max_messages])
        fit = partial(fit_length, length=length, following=following) if fixed_length else None
        made = perturb(s.messages, rng, names, donors, max_messages=max_messages, forbidden=real, fit=fit)
        if made is None:
            counts["unchanged"] += 1
            continue
        counts[made[0]] += 1
        out.append(LabeledSequence(f"{s.sequence_id}~{made[0]}", made[1], 1))
    return out, counts


def fit_length(messages: Sequence[str], length: int, following: Sequence[str]) -> list[str]:
    """``messages`` cut to ``length``, or filled up to it from ``following`` (the lines after the window)."""
    out = list(messages[:length])
    out.extend(following[: length - len(out)])
    return out
