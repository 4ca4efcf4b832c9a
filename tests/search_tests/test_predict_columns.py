"""`optuna-run predict` on a file with other column names (--date / --id), and the target
on both scales: `target` as the model sees it, `target_raw` as the file has it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from search.cli import main
from tests.conftest import SAMPLE
from tests.search_tests.helpers import run_cli, write_study


def test_predict_takes_column_flags_and_writes_the_raw_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/r.db"
    cfg = write_study(
        tmp_path,
        "pc",
        space="[space]\ntime_steps = 3\nnum_layers = 1\n"
        "hidden_dim = 4\nhead_dim = 0\nbatch_size = 256\nepochs = 1\n",
    )
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "1") == 0
    model = tmp_path / "m.pt"
    assert main(["train", "--study-name", "pc", "--storage", url, "--out", str(model)]) == 0
    other = tmp_path / "renamed.parquet"
    pl.read_parquet(SAMPLE).rename({"date": "day", "symbol": "ticker"}).write_parquet(other)
    out = tmp_path / "p.csv"
    args = ["predict", "--model", str(model), "--data", str(other), "--out", str(out)]
    capsys.readouterr()
    assert main([*args, "--dates", "test"]) == 2  # the model's column names are not there
    assert "column 'date' ([data] date) not found" in capsys.readouterr().err
    assert main([*args, "--dates", "test", "--date", "day", "--id", "ticker"]) == 0
    df = pl.read_csv(out)
    assert df.columns == ["day", "ticker", "prediction", "target", "target_raw"]
    labelled = df.filter(pl.col("target").is_not_nan())
    # raw: next-day returns of a few percent; the model's target: z-scored per date
    raw = labelled["target_raw"].to_numpy()
    assert 0.003 < np.nanstd(raw) < 0.1
    assert 0.5 < np.nanstd(labelled["target"].to_numpy()) < 1.5
    # the raw target is the file's next-day close-to-close return
    src = pl.read_parquet(SAMPLE).sort("symbol", "date")
    row = labelled.row(0, named=True)
    s = src.filter(pl.col("symbol") == row["ticker"])
    i = s["date"].cast(pl.String).to_list().index(row["day"])
    assert row["target_raw"] == pytest.approx(s["close"][i + 1] / s["close"][i] - 1, rel=1e-4)
