"""The verdict's LightGBM is one draw (its training rows and bagging seeded 0): the same draw
twice predicts the same, another seed another tree, and rows=0 fits on every window."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from data import DataConfig, Prepared, load_panel
from models.baselines import FIT_ROWS, lgbm_baseline
from tests.conftest import write_panel

pytest.importorskip("lightgbm")


def test_tree_draws(tmp_path: Path) -> None:
    path = write_panel(tmp_path / "p.parquet", n_dates=120, n_ids=40)
    cfg = DataConfig(path=str(path), id="id", target="target", features=("f*",))
    data = Prepared(load_panel(cfg), cfg, torch.device("cpu"), eval_time_steps=2)
    tr, va, te = (data.ends(s, 2) for s in ("train", "val", "test"))
    assert len(tr) > 1000

    def fit(**kw: int) -> torch.Tensor:
        return lgbm_baseline(data, tr, va, threads=1, **kw)(te)

    # the verdict's draw: seed 0 on FIT_ROWS rows, here more than there are (every row)
    assert len(tr) < FIT_ROWS and torch.equal(fit(), fit(rows=0, seed=0))
    draw = fit(rows=600)  # 600 of the training rows, drawn with seed 0
    assert torch.equal(draw, fit(rows=600, seed=0))  # the same draw, the same tree
    assert not torch.equal(draw, fit(rows=600, seed=1))  # other rows, other bagging
    assert not torch.equal(draw, fit(rows=0))
