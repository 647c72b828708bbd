"""The novelty rule and a source's own model together (service/patterns/policy.py): which mode judges a window,
and ``unless_normal``, where a new template flags only when the model does not call its window clearly normal.

The live tests run the service on a real Redis with real checkpoints on tiny backbones (conftest.py's
``tiny_models``, test_models.py's ``make_app``): ``calm`` (threshold 1, so the model alone never flags, with a
vocabulary of "x y") is registered as a source's own model; ``--novelty-clear-normal`` moves the line under
which its score counts as clearly normal (1: every score; 0: none), so both branches run on a real model's score.
"""

# ruff: noqa: F811  (the fixture make_app comes from test_models.py and is used as an argument)
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from model.vocab import CLEAR_NORMAL, Novelty, decide
from service.patterns.pattern_store import template_id
from service.patterns.policy import NoveltyPolicy
from service.settings import ServiceSettings
from tests.service.test_models import MakeApp, make_app, send_and_score, served, version, wait_for  # noqa: F401


def test_unless_normal_flags_a_new_template_only_when_the_model_does_not_vouch_for_the_window() -> None:
    new = Novelty(novel=("fan <*> failed",))
    assert decide(0.1, 0.5, new, "unless_normal") == (False, None)  # 0.1 < 0.5 x 0.5: clearly normal
    assert decide(0.3, 0.5, new, "unless_normal") == (True, "novel_template")  # under the threshold, not clearly
    assert decide(0.6, 0.5, Novelty(), "unless_normal") == (True, "model")  # nothing new: the model's call
    assert decide(0.1, 0.5, Novelty(known_anomalous=("disk <*> lost",)), "unless_normal") == (
        True, "known_anomalous_template",
    )  # fmt: skip  # training saw it fail: flagged whatever the score
    assert decide(0.2, 0.5, new, "unless_normal", clear_normal=0.25) == (True, "novel_template")
    assert decide(0.1, 0.5, new, "flag") == (True, "novel_template")
    assert decide(0.1, 0.5, new, "annotate") == (False, None)
    assert CLEAR_NORMAL == 0.5


def test_a_sources_own_setting_wins_then_its_own_model_then_the_global_mode() -> None:
    settings = ServiceSettings(sources='{"web": {"novelty": "annotate"}}', novelty="flag")
    policy = NoveltyPolicy.from_settings(settings, is_own=lambda v: v == "own-1")
    assert policy.mode("web", "default-1") == "annotate" and policy.mode("web", "own-1") == "annotate"
    assert policy.mode("db", "own-1") == "flag"  # the default for sources with their own model (measured best)
    tuned = NoveltyPolicy.from_settings(ServiceSettings(novelty="annotate", novelty_own_model="unless_normal"),
                                        is_own=lambda v: v == "own-1")  # fmt: skip
    assert (tuned.mode("db", "own-1"), tuned.mode("db", "default-1")) == ("unless_normal", "annotate")
    assert policy.mode("db", "default-1") == "flag"
    assert NoveltyPolicy.from_settings(settings, is_own=None).mode("db", "own-1") == "flag"  # one model: no own


def test_a_bad_novelty_names_the_source_and_the_field() -> None:
    with pytest.raises(ValueError, match=r"sources\.web\.novelty"):
        ServiceSettings(sources='{"web": {"novelty": "sometimes"}}')
    with pytest.raises(ValueError, match="novelty_own_model"):
        ServiceSettings(novelty_own_model="sometimes")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def calm(tiny_models: dict[str, Path]) -> Path:
    """A source's own model: threshold 1 (the model alone never flags), vocabulary "x y"."""
    from tests.tiny_checkpoints import tiny_checkpoint

    root = tiny_models["default"].parent
    return tiny_checkpoint(root / "calm", root / "encoder", root / "decoder", seed=5, threshold=1.0, normal=("x y",))


def own_model_app(make_app: MakeApp, calm: Path, owners: tuple[str, ...], **settings: Any) -> Any:
    api = make_app(role="all", consumer="w1", novelty="flag", novelty_own_model="unless_normal", novelty_warmup_s=0,
                   **settings)  # fmt: skip
    for source in owners:
        assert api.post("/models", json={"source": source, "checkpoint": str(calm)}).status_code == 202
    wait_for(lambda: (r := served(api, api, "w1")()) and set(owners) <= set(r["models"]), "calm registered")
    return api


@pytest.mark.slow
def test_with_its_own_model_a_new_template_in_a_clearly_normal_window_is_annotated_and_learned(
    make_app: MakeApp, calm: Path, tiny_models: dict[str, Path]
) -> None:
    api = own_model_app(make_app, calm, ("web", "strict"), novelty_clear_normal=1.0,
                        sources='{"strict": {"novelty": "flag"}}')  # fmt: skip
    vouched = send_and_score(api, "web", "s1", ["x y", "x y", "a b"])  # "a b": new to calm's vocabulary
    assert vouched["model_version"] == version(calm)
    assert (vouched["status"], vouched["reason"], vouched["novelty"]["novel"]) == ("normal", None, ["a b"])
    learned = api.get(f"/patterns/{template_id('a b')}", params={"source": "web"}).json()["sources"][0]
    assert learned["learned"] == "normal_window"  # it came out normal, so the source knows it now
    assert send_and_score(api, "web", "s2", ["a b"])["novelty"] is None

    strict = send_and_score(api, "strict", "s1", ["x y", "a b"])  # its own setting: flag, own model or not
    assert (strict["model_version"], strict["status"], strict["reason"]) == (version(calm), "anomalous",
                                                                             "novel_template")  # fmt: skip
    default = send_and_score(api, "db", "s1", ["a b", "x y"])  # the default model: --novelty (flag)
    assert default["model_version"] == version(tiny_models["default"])
    assert (default["status"], default["reason"], default["novelty"]["novel"]) == ("anomalous", "novel_template",
                                                                                   ["x y"])  # fmt: skip


@pytest.mark.slow
def test_with_its_own_model_a_new_template_flags_when_the_model_does_not_call_the_window_clearly_normal(
    make_app: MakeApp, calm: Path
) -> None:
    api = own_model_app(make_app, calm, ("web",), novelty_clear_normal=0.0)  # no score is clearly normal
    flagged = send_and_score(api, "web", "s1", ["x y", "x y", "a b"])
    assert flagged["model_version"] == version(calm) and flagged["score"] < flagged["threshold"] == 1.0
    assert (flagged["status"], flagged["reason"], flagged["novelty"]["novel"]) == ("anomalous", "novel_template",
                                                                                   ["a b"])  # fmt: skip
    known = send_and_score(api, "web", "s2", ["x y", "x y"])  # nothing new: the model's call (never, at 1)
    assert (known["status"], known["novelty"]) == ("normal", None)
