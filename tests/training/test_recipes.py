"""``--recipe`` presets and ``--from-service`` settings: a flag or an env var wins over the recipe field by field, and
``--from-service`` defaults to the own-logs recipe and says what it still needs."""

from __future__ import annotations

import pytest

from tests.training.test_trainer import run_cli
from training.settings import RECIPES, TrainSettings

SERVICE = {"from_service": "http://127.0.0.1:1", "source": "web", "unlabeled": True}


def test_a_recipe_fills_only_what_no_flag_or_env_var_gave(monkeypatch: pytest.MonkeyPatch) -> None:
    assert TrainSettings().stage1_samples == 1000 and TrainSettings().max_train_samples is None  # the paper's
    own = TrainSettings(**SERVICE)  # type: ignore[arg-type]
    assert {name: getattr(own, name) for name in RECIPES["own-logs"]} == RECIPES["own-logs"]
    assert own.dataset == "service" and own.max_fpr == 0.01
    monkeypatch.setenv("LOGLLM_LR", "1e-3")
    given = TrainSettings(**SERVICE, stage1_samples=10)  # type: ignore[arg-type]
    assert (given.stage1_samples, given.lr, given.max_train_samples) == (10, 1e-3, 256)
    smoke = TrainSettings(recipe="smoke", stage3_epochs=2.0)
    assert (smoke.stage1_samples, smoke.batch_size, smoke.stage3_epochs, smoke.lr) == (4, 2, 2.0, 1e-3)


def test_from_service_says_what_it_needs() -> None:
    with pytest.raises(SystemExit, match="--from-service needs --source"):
        run_cli("train", "--from-service", "http://127.0.0.1:1", "--unlabeled")
    with pytest.raises(SystemExit, match=r"--source: String should match pattern"):
        run_cli("train", "--from-service", "http://127.0.0.1:1", "--source", "a b", "--unlabeled")
    with pytest.raises(SystemExit, match="--dataset service is what --from-service trains on"):
        run_cli("train", "--dataset", "service", "--unlabeled")
