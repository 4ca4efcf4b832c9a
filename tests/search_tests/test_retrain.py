"""Retrain the best params, save a weights_only checkpoint, predict a submission."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import torch

from data import DataConfig, Prepared, load_panel
from search.cli import main
from search.evaluate.retrain import FORMAT
from tests.conftest import SAMPLE
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
    cols = ["date", "symbol", "prediction", "lgbm", "blend", "target", "target_raw"]
    assert df.columns == cols
    assert ckpt["tree"]["name"] == "lgbm" and ckpt["tree"]["model"].startswith("tree")
    assert df["blend"].min() >= 0.0 and df["blend"].max() <= 1.0  # the mean of two ranks
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
    for name, content in (("a.csv", b"date,id\n2020-01-02,A\n"), ("b.pt", b"")):
        (tmp_path / name).write_bytes(content)
        assert main(["predict", "--model", str(tmp_path / name), "--out", str(sub)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"optuna-run: error: {tmp_path / name}: not a model checkpoint ("), (
            err
        )
        assert len(err.splitlines()) == 1 and "pop from" not in err, err


def test_train_refuses_data_too_short_for_the_study_windows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.conftest import write_panel
    from tests.search_tests.test_predict_columns import TINY_STUDY

    data = write_panel(tmp_path / "panel.parquet", n_dates=40, n_ids=3)
    cfg = tmp_path / "short.toml"
    cfg.write_text(TINY_STUDY.format(name="short", data=data, time_steps=8))
    url = f"sqlite:///{tmp_path}/r.db"
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "1") == 0
    short = tmp_path / "few12.parquet"  # 12 dates: a split, but no window of 8 in training
    pl.read_parquet(data).filter(pl.col("date") < pl.date(2020, 1, 13)).write_parquet(short)
    out = tmp_path / "y.pt"
    args = ["--study-name", "short", "--storage", url, "--data", str(short), "--out", str(out)]
    capsys.readouterr()
    assert main(["train", *args, "--no-tree"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"optuna-run: error: {short}: too few dates")
    assert "no security has 8 consecutive valid dates" in err and "12 dates" in err
    assert not out.exists()


def test_input_bins_are_searched_kept_in_the_checkpoint_and_predicted_with(
    tmp_path: Path,
) -> None:
    """A study of ranked features whose trials feed the LSTM 8 pieces of each: `train`
    stores the pieces in the checkpoint's architecture and `predict` rebuilds the same
    network."""
    from tests.search_tests.helpers import TINY_SPACE

    cfg = tmp_path / "bins.toml"
    cfg.write_text(
        f"""
[study]
name = "bins"
[data]
path = "{SAMPLE}"
normalize = "cs_rank"
target_cs = "rank"
[budget]
max_windows_per_epoch = 256
{TINY_SPACE.format()}input_bins = 8
"""
    )
    url = f"sqlite:///{tmp_path}/b.db"
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "2", "--seed", "3") == 0
    model = tmp_path / "b.pt"
    args = ["train", "--study-name", "bins", "--storage", url, "--out", str(model), "--no-tree"]
    assert main([*args, "-q"]) == 0
    ckpt = torch.load(model, weights_only=True)
    arch = ckpt["models"][0]["arch"]
    assert arch["input_bins"] == 8
    first = next(iter(ckpt["models"][0]["states"][0].values()))
    assert first.shape[1] == ckpt["models"][0]["arch"]["n_features"] * 8  # weight_ih_l0
    out = tmp_path / "t.parquet"
    assert main(["predict", "--model", str(model), "--out", str(out), "--dates", "test"]) == 0
    df = pl.read_parquet(out)
    assert df.height > 0 and df["prediction"].is_finite().all()
    # the weights load only into a network of the same pieces (F * 8 inputs)
    from search.evaluate.predict import checkpoint_nets

    nets = checkpoint_nets(ckpt)[0][1]
    assert nets and all(n.input_bins == 8 for n in nets)


def test_every_verb_says_a_data_warning_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A series whose high-low range is a constant share of the close: its hl_range feature
    is left out with a DataWarning, said by search, train and confirm alike as one
    `optuna-run: warning:` line, not as a Python warning with its source line."""
    from tests.search_tests.helpers import TINY_SPACE

    flat = tmp_path / "flat.parquet"
    one = pl.read_parquet(SAMPLE).filter(pl.col("symbol") == "AAPL")
    one.with_columns(high=pl.col("close") * 1.01, low=pl.col("close")).write_parquet(flat)
    cfg = tmp_path / "flat.toml"
    cfg.write_text(
        f"""
[study]
name = "flat"
[data]
path = "{flat}"
target_cs = "none"
normalize = "robust"
[budget]
max_windows_per_epoch = 256
{TINY_SPACE.format()}
"""
    )
    url = f"sqlite:///{tmp_path}/f.db"
    model = tmp_path / "f.pt"
    study = ["--study-name", "flat", "--storage", url]
    runs = {
        "search": ["--config", str(cfg), "--storage", url, "--n-trials", "1", "--seed", "1"],
        "train": ["train", *study, "--out", str(model), "--no-tree"],
        "confirm": ["confirm", *study, "--top", "1", "--seeds", "1", "--no-tree"],
    }
    for verb, args in runs.items():
        capsys.readouterr()
        rc = run_cli(*args)
        err = capsys.readouterr().err
        assert rc == 0, (verb, err)
        lines = [line for line in err.splitlines() if "hl_range" in line]
        assert len(lines) == 1, (verb, err)
        assert lines[0].startswith("optuna-run: warning: ") and (
            f"{flat.name}: feature column 'hl_range' (constant)" in lines[0]
        ), (verb, lines)
        assert "DataWarning" not in err and "load_panel(" not in err, (verb, err)
