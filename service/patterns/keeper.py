"""The classifier's pattern step: the novelty rule before the verdicts are final, the per-source counts after.

``decide`` runs right after scoring: it asks Redis which templates each source has learned and when the source
was first seen, then applies model/vocab.py's ``window_novelty`` and ``decide``, the same two functions
``logllm score`` uses, so offline and online verdicts follow one rule. ``record`` runs once the verdicts are
final (mutes applied) and before they are written: it counts every template per source and learns the
templates of windows that came out normal or muted. Lookup before update means a template first seen in the
window being scored is not yet learned, in that window or in any other of the same batch. Session transitions
and counts (the vocabulary's rules for whole sessions), and a fixed window's counts over their ceiling and missing
steps (its rules, model/window_rules.py), are looked up and learned the same way, in ``pat:S:paths``.

A template the checkpoint saw only in anomalous windows is never learned from a window's outcome, only
explicitly (feedback "normal", a mute, ``POST /patterns/{id}/learn``): it is the signal novelty exists for.
A session's unusual paths and counts are learned from a normal outcome only when the model called the session
clearly normal (``learn_below``): in a warm-up the rules only annotate, so an anomalous session the model passed
with doubts would otherwise teach its counts, and every later session like it would pass too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

from redis.exceptions import ResponseError

from model.vocab import (
    CountFinding,
    NoveltyMode,
    Transition,
    Vocabulary,
    decide,
    normal_shape,
    rare_transitions,
    templates_only,
    unusual_counts,
    window_findings,
    window_novelty,
)
from model.window_rules import Step
from service.metrics import ServiceMetrics
from service.patterns.pattern_store import (
    PatternStore,
    SourceBatch,
    TemplateUse,
    count_id,
    path_id,
    step_id,
    template_id,
)
from service.patterns.policy import NoveltyPolicy
from service.records.record_store import window_parts
from service.windows.store import ClosedWindow, StoreUnavailable, Verdict

Pair = tuple[ClosedWindow, Verdict]
log = logging.getLogger(__name__)
LEARNED_FROM_WINDOW = "normal_window"
UNKNOWN_SOURCE = "this model was not trained on logs like these; train one for them"
# A source whose recent lines' templates the vocabulary knows at least this share of needs no warm-up: the
# vocabulary is what the warm-up would learn, and the checkpoint's rules were picked for logs like these.
KNOWN_COVERAGE = 0.99


def source_of(window: ClosedWindow) -> str:
    return window_parts(window.window_id, window.window_key).source


def whole_session(window: ClosedWindow) -> bool:
    """A session window from its first line to its close: the only kind whose start, end and counts the session
    rules may read. A fixed window's ends are cuts; a session past max_session_lines continues in window #1, #2..."""
    parts = window_parts(window.window_id, window.window_key)
    return parts.kind == "session" and parts.number == 0 and window.reason != "size"


def fixed_window(window: ClosedWindow) -> bool:
    """A fixed window: the only kind the window rules (counts over their ceiling, missing steps) read."""
    return window_parts(window.window_id, window.window_key).kind == "fixed"


class PatternKeeper:
    """One per classifier loop; ``vocabulary`` None (a checkpoint without one) turns the novelty rule off."""

    def __init__(
        self,
        patterns: PatternStore,
        vocabulary: Vocabulary | None,
        mode: NoveltyMode = "flag",
        warmup_s: float = 0.0,
        metrics: ServiceMetrics | None = None,
        vocabulary_for: Callable[[str], Vocabulary | None] | None = None,
        learn_below: float = 0.5,
        policy: NoveltyPolicy | None = None,
    ) -> None:
        self.patterns = patterns
        self.vocabulary = vocabulary
        # models per source (service/scoring/model_router.py): the vocabulary of the model that scored a window, by
        # the model version on its verdict, so a source's templates are judged by its own model's training
        self.vocabulary_for = vocabulary_for
        self._views: dict[int, tuple[Vocabulary, Vocabulary]] = {}
        self.mode: NoveltyMode = mode if vocabulary is not None or vocabulary_for is not None else "off"
        # the mode per window (policy.py): per source, and for sources their own model scores; ``mode`` otherwise
        self.policy = policy if policy is not None and self.mode != "off" else NoveltyPolicy(self.mode, self.mode)
        self.warmup_s = warmup_s
        self.learn_below = learn_below  # a normal session teaches its paths and counts only under this score
        self.covered: set[str] = set()  # sources the vocabulary covers (KNOWN_COVERAGE): no warm-up needed
        self.lines_seen: dict[str, int] = {}  # lines of each source this worker counted
        self.metrics = metrics
        # the template rule's view; the session rules run on their own (rare_transitions, unusual_counts), for
        # whole sessions only, and the window rules (window_findings) for fixed windows only
        self.templates_only = templates_only(vocabulary) if vocabulary is not None else None
        if vocabulary is None and vocabulary_for is None and mode != "off":
            log.warning("novelty off: the checkpoint has no vocabulary (logllm vocab makes one); patterns still kept")

    def _vocabulary(self, verdict: Verdict) -> Vocabulary | None:
        return self.vocabulary if self.vocabulary_for is None else self.vocabulary_for(verdict.model_version)

    def _templates_only(self, vocabulary: Vocabulary | None) -> Vocabulary | None:
        """The template rule's view of a vocabulary, made once per vocabulary."""
        if vocabulary is None or vocabulary is self.vocabulary:
            return self.templates_only if vocabulary is not None else None
        found = self._views.get(id(vocabulary))
        if found is None or found[0] is not vocabulary:
            if len(self._views) > 256:
                self._views.clear()
            found = self._views[id(vocabulary)] = (vocabulary, templates_only(vocabulary))
        return found[1]

    async def decide(self, pairs: Sequence[Pair], sequences: Sequence[Sequence[str]]) -> list[Pair]:
        """The verdicts with the novelty rule applied: label, reason and the templates it found."""
        learned: dict[str, frozenset[str]] = {}
        learned_findings: dict[str, frozenset[str]] = {}
        warming: set[str] = set()
        rare: list[tuple[Transition, ...]] = [()] * len(pairs)  # by the checkpoint; the source may know some
        odd: list[tuple[CountFinding, ...]] = [()] * len(pairs)  # the same for counts (a fixed window's too)
        left_out: list[tuple[Step, ...]] = [()] * len(pairs)  # fixed windows' missing steps
        shaped = [False] * len(pairs)  # whole sessions of a normal training shape (the shape rule clears them)
        vocabularies = [self._vocabulary(verdict) for _, verdict in pairs]
        modes = [self.policy.mode(source_of(window), verdict.model_version) for window, verdict in pairs]
        if any(m != "off" and v is not None for m, v in zip(modes, vocabularies, strict=True)):
            asked: dict[str, set[str]] = {}
            session_ids: dict[str, set[str]] = {}  # path_id / count_id of the whole sessions' findings
            for i, ((window, _), messages) in enumerate(zip(pairs, sequences, strict=True)):
                source = source_of(window)
                asked.setdefault(source, set()).update(template_id(m) for m in messages)
                vocab = vocabularies[i]
                if whole_session(window) and vocab is not None:
                    rare[i] = rare_transitions(messages, vocab)
                    odd[i] = unusual_counts(messages, vocab)
                    shaped[i] = normal_shape(messages, vocab)
                    findings = session_ids.setdefault(source, set())
                    findings.update(path_id(pair) for pair in rare[i])
                    findings.update(count_id(found) for found in odd[i])
                elif fixed_window(window) and vocab is not None:
                    odd[i], left_out[i] = window_findings(messages, vocab)
                    findings = session_ids.setdefault(source, set())
                    findings.update(count_id(found) for found in odd[i])
                    findings.update(step_id(step) for step in left_out[i])
            try:
                now, states = await self.patterns.lookup(asked, session_ids)
            except StoreUnavailable:
                raise  # the loop retries through short outages
            except ResponseError:  # a script error must not cost the verdicts: the model decides this batch
                log.exception("novelty lookup failed; this batch is decided by the model alone")
                return [(w, replace(v, reason="model" if v.label == "anomalous" else None)) for w, v in pairs]
            learned = {source: state.learned for source, state in states.items()}
            learned_findings = {source: state.learned_findings for source, state in states.items()}
            warming = {source for source, state in states.items()
                       if now - state.first_seen < self.warmup_s and source not in self.covered}  # fmt: skip
        out: list[Pair] = []
        for (window, verdict), messages, candidates, counts, steps, shape, vocab, policy_mode in zip(
            pairs, sequences, rare, odd, left_out, shaped, vocabularies, modes, strict=True
        ):
            templates_only = self._templates_only(vocab)
            if verdict.score is None or templates_only is None or policy_mode == "off":
                out.append((window, replace(verdict, reason="model" if verdict.label == "anomalous" else None)))
                continue
            source = source_of(window)
            ids = learned.get(source, frozenset())
            known_findings = learned_findings.get(source, frozenset())
            templates = window_novelty(messages, templates_only, {m for m in messages if template_id(m) in ids})
            novelty = replace(
                templates,
                transitions=tuple(p for p in candidates if path_id(p) not in known_findings),
                counts=tuple(c for c in counts if count_id(c) not in known_findings),
                normal_shape=shape,
                missing=tuple(s for s in steps if step_id(s) not in known_findings),
            )
            mode: NoveltyMode = "annotate" if source in warming else policy_mode
            threshold = float(verdict.threshold or 0.0)
            anomalous, reason = decide(verdict.score, threshold, novelty, mode, self.policy.clear_normal)
            out.append((window, replace(
                verdict, label="anomalous" if anomalous else "normal", reason=reason, novel=novelty.novel,
                known_anomalous=novelty.known_anomalous, transitions=novelty.transitions, counts=novelty.counts,
                missing=novelty.missing,
            )))  # fmt: skip
        return out

    async def record(self, pairs: Sequence[Pair], sequences: Sequence[Sequence[str]]) -> None:
        """Count each source's templates of this batch, with an example line and the windows that held them."""
        uses: dict[str, dict[str, TemplateUse]] = {}
        counts: dict[str, list[int]] = {}  # source -> [lines, windows, lines whose template the vocabulary knows]
        for (window, verdict), messages in zip(pairs, sequences, strict=True):
            source = source_of(window)
            scored_by = self._vocabulary(verdict)  # the vocabulary of the model that scored it (models per source)
            anomalous_only = scored_by.anomalous_only if scored_by is not None else {}
            normal = scored_by.normal if scored_by is not None else {}
            tally = counts.setdefault(source, [0, 0, 0])
            tally[0] += len(messages)
            tally[1] += 1
            tally[2] += sum(m in normal or m in anomalous_only for m in messages)
            by_template = uses.setdefault(source, {})
            learns = verdict.label in ("normal", "muted")
            for i, message in enumerate(messages):
                use = by_template.get(message)
                if use is None:
                    vocab = "normal" if message in normal else "anomalous_only" if message in anomalous_only else ""
                    use = by_template[message] = TemplateUse(message, example=window.raw_line(i), windows=[],
                                                             vocab=vocab)  # fmt: skip
                use.count += 1
                if use.windows is not None and window.window_id not in use.windows:
                    use.windows.append(window.window_id)
                if learns and message not in anomalous_only:
                    use.learn = LEARNED_FROM_WINDOW
        await self._learn_session_findings(pairs)
        known = self.vocabulary is not None
        batches = {s: SourceBatch(n, windows, hits if known else -1) for s, (n, windows, hits) in counts.items()}
        try:
            found = await self.patterns.update_sources(
                {source: list(templates.values()) for source, templates in uses.items()}, batches
            )
        except StoreUnavailable:
            raise
        except ResponseError:  # counts are not worth a verdict
            log.exception("pattern update failed; this batch's templates are not counted")
            return
        for source, update in found.items():
            self.lines_seen[source] = self.lines_seen.get(source, 0) + counts[source][0]
            judged = self.lines_seen[source] >= self.patterns.config.coverage_min_lines
            if update.coverage is not None and judged and update.coverage >= KNOWN_COVERAGE:
                self.covered.add(source)  # the checkpoint was trained on logs like these: its rules apply now
            elif update.coverage is not None and update.coverage < KNOWN_COVERAGE:
                self.covered.discard(source)
            if update.warn:
                log.warning(
                    "source %s: %.0f%% of its recent lines have a template the checkpoint's vocabulary knows (under"
                    " %.0f%%): %s", source, 100 * (update.coverage or 0.0),
                    100 * self.patterns.config.coverage_warn_below, UNKNOWN_SOURCE,
                )  # fmt: skip
            if self.metrics is None:
                continue
            label = self.metrics.source_label(source)
            if update.new:
                self.metrics.new_templates.labels(source=label).inc(update.new)
            if update.coverage is not None:
                self.metrics.source_vocabulary_coverage.labels(source=label).set(update.coverage)

    async def _learn_session_findings(self, pairs: Sequence[Pair]) -> None:
        """Rare transitions, unusual counts and missing steps of windows that came out muted, or normal (a warm-up,
        ``annotate``) with a score under ``learn_below``, become the source's: one call per source."""
        by_source: dict[str, tuple[list[Transition], list[CountFinding], list[Step]]] = {}
        for window, verdict in pairs:
            if (verdict.transitions or verdict.counts or verdict.missing) and self._teaches(verdict):
                transitions, counts, steps = by_source.setdefault(source_of(window), ([], [], []))
                transitions.extend(verdict.transitions)
                counts.extend(verdict.counts)
                steps.extend(verdict.missing)
        for source, (transitions, counts, steps) in by_source.items():
            try:
                await self.patterns.learn_session_findings(source, transitions, counts, steps)
            except ResponseError:
                log.exception("learning the session findings of source %s failed", source)

    def _teaches(self, verdict: Verdict) -> bool:
        """A mute is an operator's word; a normal outcome the rules did not decide is the model's alone, trusted
        only when it is clear. On the shipped checkpoint's validation split the anomalous HDFS sessions with counts
        no normal session showed all score over 0.91, and 343 of 388 normal sessions under 0.5."""
        if verdict.label == "muted":
            return True
        return verdict.label == "normal" and verdict.score is not None and verdict.score < self.learn_below
