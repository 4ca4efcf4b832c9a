"""Without LightGBM the verdict says, in one line, that it has no tree row and how to have it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from data import DataConfig, Prepared, load_panel
from models import baselines
from search.evaluate.verdict import build_verdict, format_verdict
from tests.conftest import write_panel


def _verdict(path: Path, tree: bool) -> str:
    cfg = DataConfig(path=str(path), id="id", target="target", features=("f*",))
    data = Prepared(load_panel(cfg), cfg, torch.device("cpu"), eval_time_steps=2)
    v = build_verdict(data, lambda e: torch.zeros(len(e)), tree=tree)
    return format_verdict(v)


def test_a_verdict_without_lightgbm_says_so_with_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_panel(tmp_path / "p.parquet", n_dates=60, n_ids=6)
    monkeypatch.setattr(baselines, "lgbm_available", lambda: False)  # as if not installed
    text = _verdict(path, tree=True)
    (line,) = [x for x in text.splitlines() if "lgbm" in x]
    assert line == (
        'no lgbm row: LightGBM is not installed; pip install -e ".[tree]" adds it '
        "(the `tree` extra)"
    )
    assert "lgbm" not in _verdict(path, tree=False)  # left out on purpose: nothing to say
