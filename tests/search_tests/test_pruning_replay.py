"""Our storage set-up (make_storage: ServiceCache over the RDB storage) and pruners
(make_pruner) give the same pruning decisions as stock Optuna on the same storage.

Learning curves are recorded once from a seeded generator (fast, slow, noisy and flat
learners, so the pruners have decisions to make); each study replays them in trial order,
reporting the values epoch by epoch and stopping where `should_prune` says. Stock Optuna
(`create_study(storage=URL, pruner=...)`) and our set-up must stop the same trials at the
same epochs.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import pytest

from search.config.schema import build_config
from search.storage.rdb import make_storage
from search.study.pruners import make_pruner, make_sampler
from tests.conftest import SAMPLE
from tests.search_tests.studyrun import fresh_database

N_TRIALS = 80
EPOCHS = 10


def recorded_curves(n: int = N_TRIALS, epochs: int = EPOCHS, seed: int = 7) -> np.ndarray:
    """(n, epochs) validation losses: a floor, a decay rate and noise per trial."""
    rng = np.random.default_rng(seed)
    floor = rng.uniform(0.5, 1.5, size=(n, 1))
    start = floor + rng.uniform(0.1, 2.0, size=(n, 1))
    rate = rng.uniform(0.05, 1.0, size=(n, 1))
    steps = np.arange(epochs)[None, :]
    noise = rng.normal(0, 0.03, size=(n, epochs))
    return floor + (start - floor) * np.exp(-rate * steps) + noise


def replay(study: optuna.Study, curves: np.ndarray) -> list[tuple[str, int]]:
    """Run one trial per curve; return (final state, last epoch reported) per trial."""

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("lr", 1e-4, 1e-2, log=True)  # the sampler has a param to sample
        curve = curves[trial.number]
        for epoch, value in enumerate(curve):
            trial.report(float(value), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(curve.min())

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.optimize(objective, n_trials=len(curves))
    return [(t.state.name, max(t.intermediate_values)) for t in study.get_trials(deepcopy=False)]


def stock_pruner(kind: str) -> optuna.pruners.BasePruner:
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=EPOCHS, reduction_factor=3
        )
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def urls(request, tmp_path) -> Iterator[tuple[str, str]]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'stock.db'}", f"sqlite:///{tmp_path / 'ours.db'}"
    else:
        pg = request.getfixturevalue("pg_url")
        for a in fresh_database(pg):
            for b in fresh_database(pg):
                yield a, b


@pytest.mark.parametrize("kind", ["hyperband", "median"])
def test_same_pruning_decisions_as_stock_optuna(urls, kind, tmp_path: Path):
    stock_url, ours_url = urls
    curves = recorded_curves()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    stock = optuna.create_study(
        study_name="replay",
        storage=stock_url,
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=stock_pruner(kind),
    )
    toml = tmp_path / "replay.toml"
    toml.write_text(
        f'[data]\npath = "{SAMPLE}"\n[search]\nsampler = "random"\npruner = "{kind}"\n'
        f"seed = 0\n[space]\nepochs = {{ low = 1, high = {EPOCHS} }}\n"
    )
    cfg = build_config(toml, cpu=False)
    ours = optuna.create_study(
        study_name="replay",
        storage=make_storage(ours_url),
        sampler=make_sampler(cfg),
        pruner=make_pruner(cfg),
    )
    expected = replay(stock, curves)
    got = replay(ours, curves)
    assert got == expected
    pruned = sum(state == "PRUNED" for state, _ in got)
    assert 10 < pruned < N_TRIALS - 5, f"{pruned} pruned: the replay decides too little"
    # Same params too: the seeded sampler sees the same trials.
    assert [t.params for t in ours.trials] == [t.params for t in stock.trials]
