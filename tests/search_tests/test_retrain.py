"""Retrain the best params, save a weights_only checkpoint, predict a submission."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import torch

from data import DataConfig, Prepared, load_panel
from search.cli import main
from search.retrain import FORMAT
from tests.search_tests.helpers import run_cli, write_study


def test_train_then_predict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/r.db"
    cfg = write_study(tmp_path, "rt")
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "3", "--seed", "2") == 0
    model = tmp_path / "m.pt"
    assert main(["train", "--study-name", "rt", "--storage", url, "--out", str(model)]) == 0
    ckpt = torch.load(model, weights_only=True)  # plain containers and tensors only
    assert ckpt["format"] == FORMAT and ckpt["same_data_as_study"] is True
    assert set(ckpt["metrics"]) == {"val", "test"}
    T = ckpt["models"][0]["arch"]["time_steps"]

    sub = tmp_path / "sub.csv"
    assert main(["predict", "--model", str(model), "--out", str(sub)]) == 0
    df = pl.read_csv(sub)
    assert df.columns == ["date", "symbol", "prediction", "target", "target_raw"]
    assert df["date"].n_unique() == 1 and df["date"][0] == "2018-02-07"
    assert df["symbol"].n_unique() == df.height >= 30
    assert df["target"].is_null().all() or df["target"].is_nan().all()  # the future is unknown

    test = tmp_path / "test.parquet"
    assert main(["predict", "--model", str(model), "--out", str(test), "--dates", "test"]) == 0
    tdf = pl.read_parquet(test)
    settings = {k: v for k, v in ckpt["data"].items() if k != "path"}
    settings["features"] = tuple(settings["features"])
    dcfg = DataConfig(path=ckpt["data"]["path"], **settings)
    prep = Prepared(load_panel(dcfg), dcfg, torch.device("cpu"))
    labelled = tdf.filter(pl.col("target").is_not_nan())
    assert labelled.height == prep.count("test", T)
    assert tdf["prediction"].is_finite().all()

    capsys.readouterr()
    assert main(["predict", "--model", str(tmp_path / "none.pt"), "--out", str(sub)]) == 2
    assert "model file not found (--model)" in capsys.readouterr().err
