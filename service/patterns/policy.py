"""Which novelty mode judges a window: the rule and a source's own model together.

On a new system most false alarms are templates the first part of its log never showed. Once the source is served
by a model trained on its own logs (models per source), that model might vouch for such a window:
``--novelty-own-model`` sets the mode for those sources apart from ``--novelty`` (the default model's). Its choices
are the rule's (``flag``, ``annotate``, ``off``) and ``unless_normal`` (a new template flags only when the model does
not call its window clearly normal). Its default is ``flag``: scripts/learn_loop.py measured the policies side by
side on four new systems (docs/training.md, "The loop on four new systems"), and the own models of the CPU recipe
scored foreign lines as low as clean windows, so ``unless_normal`` let 9 of the 12 foreign-line faults through, while
``flag`` caught all 12 at 2 of 128 clean windows flagged. A source's own ``novelty`` in ``--sources`` wins over both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from model.vocab import CLEAR_NORMAL, NoveltyMode


@dataclass(frozen=True)
class NoveltyPolicy:
    default: NoveltyMode = "flag"  # sources scored by the default model (--novelty)
    own_model: NoveltyMode = "flag"  # sources scored by their own model (--novelty-own-model)
    sources: Mapping[str, NoveltyMode] = field(default_factory=dict)  # --sources' novelty, per source name
    clear_normal: float = CLEAR_NORMAL  # --novelty-clear-normal: share of the threshold under which unless_normal
    # trusts the model
    is_own: Callable[[str], bool] | None = None  # model version -> a source's own model scored it (the router's)

    def mode(self, source: str, model_version: str) -> NoveltyMode:
        chosen = self.sources.get(source)
        if chosen is not None:
            return chosen
        if self.is_own is not None and self.is_own(model_version):
            return self.own_model
        return self.default

    @classmethod
    def from_settings(cls, settings: Any, is_own: Callable[[str], bool] | None) -> NoveltyPolicy:
        per_source = {name: over.novelty for name, over in settings.sources.items() if over.novelty is not None}
        return cls(settings.novelty, settings.novelty_own_model, per_source, settings.novelty_clear_normal, is_own)
