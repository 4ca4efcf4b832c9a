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


def trained_model(tmp_path: Path, name: str) -> Path:
    """A one-trial study of a tiny network on the bundled sample, trained: its checkpoint."""
    url = f"sqlite:///{tmp_path}/{name}.db"
    cfg = write_study(
        tmp_path,
        name,
        space="[space]\ntime_steps = 3\nnum_layers = 1\n"
        "hidden_dim = 4\nhead_dim = 0\nbatch_size = 256\nepochs = 1\n",
    )
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "1") == 0
    model = tmp_path / "m.pt"
    assert main(["train", "--study-name", name, "--storage", url, "--out", str(model)]) == 0
    return model


def test_predict_takes_column_flags_and_writes_the_raw_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = trained_model(tmp_path, "pc")
    other = tmp_path / "renamed.parquet"
    pl.read_parquet(SAMPLE).rename({"date": "day", "symbol": "ticker"}).write_parquet(other)
    out = tmp_path / "p.csv"
    args = ["predict", "--model", str(model), "--data", str(other), "--out", str(out)]
    capsys.readouterr()
    assert main([*args, "--dates", "test"]) == 2  # the model's column names are not there
    err = capsys.readouterr().err
    assert (
        "column 'date' ([data] date) not found; name this file's column with predict --date" in err
    )
    assert "column 'symbol' ([data] id) not found; name this file's column with predict --id" in err
    assert "--id '')" not in err  # a training key is no fix for a file to predict
    assert main([*args, "--dates", "test", "--date", "day", "--id", "ticker"]) == 0
    df = pl.read_csv(out)
    cols = ["day", "ticker", "prediction", "lgbm", "blend", "target", "target_raw"]
    assert df.columns == cols  # another file than the verdict's: no row is marked as its
    assert f"{other}: not the data the model was trained and judged on" in capsys.readouterr().err
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
    # the last date's forward return is unknown: both target columns empty, not NaN
    assert main([*args, "--dates", "last", "--date", "day", "--id", "ticker"]) == 0
    assert "NaN" not in out.read_text()
    last = pl.read_csv(out)
    assert last.height > 0 and last["target"].is_null().all() and last["target_raw"].is_null().all()


TINY_STUDY = """
[study]
name = "{name}"
objective = "val_loss"
[data]
path = "{data}"
id = "id"
target = "target"
features = ["f0", "f1"]
[budget]
max_windows_per_epoch = 64
[space]
time_steps = {time_steps}
num_layers = 1
hidden_dim = 4
head_dim = 0
dropout = 0.0
batch_size = 256
epochs = 1
"""


def tiny_study(
    folder: Path, name: str, n_trials: int = 1, n_dates: int = 40, n_ids: int = 3
) -> str:
    """The storage URL of TINY_STUDY (time_steps 3) run for `n_trials` on a write_panel file
    of `n_dates` x `n_ids` in `folder`."""
    from tests.conftest import write_panel

    data = write_panel(folder / "panel.parquet", n_dates=n_dates, n_ids=n_ids)
    cfg = folder / f"{name}.toml"
    cfg.write_text(TINY_STUDY.format(name=name, data=data, time_steps=3))
    url = f"sqlite:///{folder}/{name}.db"
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", str(n_trials)) == 0
    return url


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(folder, model, storage URL): one trial of a tiny space on a 40-date, 3-id panel with
    a given target column, retrained into a model of time_steps 3 (seconds)."""
    folder = tmp_path_factory.mktemp("tiny_model")
    url = tiny_study(folder, "tiny")
    model = folder / "m.pt"
    train = ["train", "--study-name", "tiny", "--storage", url, "--out", str(model), "--no-tree"]
    assert main(train) == 0
    return folder, model, url


def test_predict_scores_a_file_without_the_target_column(
    tiny_model: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, model, _ = tiny_model
    labelled = folder / "panel.parquet"
    unlabelled = folder / "unlabelled.parquet"
    pl.read_parquet(labelled).drop("target").write_parquet(unlabelled)
    ref, out = folder / "ref.csv", folder / "no_target.csv"
    base = ["predict", "--model", str(model), "--dates", "all"]
    assert main([*base, "--data", str(labelled), "--out", str(ref)]) == 0
    capsys.readouterr()
    assert main([*base, "--data", str(unlabelled), "--out", str(out)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[-1] == f"wrote {out}: 114 predictions"  # 3 ids x (40 - 2)
    assert "column 'target' ([data] target) is absent" in err[0] and str(unlabelled) in err[0]
    df, want = pl.read_csv(out), pl.read_csv(ref)
    assert df.columns == ["date", "id", "prediction", "target", "target_raw"]
    assert df["target"].is_null().all() and df["target_raw"].is_null().all()
    assert want["target"].is_not_null().all()
    # the same windows, the same predictions: the labels play no part in them
    assert df.select("date", "id").equals(want.select("date", "id"))
    np.testing.assert_allclose(df["prediction"].to_numpy(), want["prediction"].to_numpy())
    # the last date, a submission: no label needed there either
    sub = folder / "sub.parquet"
    args = ["--data", str(unlabelled), "--out", str(sub)]
    assert main(["predict", "--model", str(model), *args]) == 0
    assert pl.read_parquet(sub).height == 3


def test_ids_with_leading_zeros_round_trip_into_predictions(
    tiny_model: tuple[Path, Path, str],
) -> None:
    # A-share codes in a CSV file: 000001 stays 000001 in the predictions, read or streamed
    folder, model, _ = tiny_model
    codes = {"S0": "000000", "S1": "000001", "S2": "600519"}
    panel = pl.read_parquet(folder / "panel.parquet")
    data = folder / "codes.csv"
    panel.with_columns(pl.col("id").replace_strict(codes)).write_csv(data)
    ref = folder / "ids_ref.csv"
    assert _predict(model, folder / "panel.parquet", ref, "all") == 0
    want = pl.read_csv(ref).with_columns(pl.col("id").replace_strict(codes))
    for stream in ([], ["--stream"]):
        out = folder / f"codes_out{len(stream)}.csv"
        args = ["--data", str(data), "--out", str(out), "--dates", "all", *stream]
        assert main(["predict", "--model", str(model), *args]) == 0
        got = pl.read_csv(out, infer_schema=False)  # every field as the file has it
        assert sorted(got["id"].unique()) == ["000000", "000001", "600519"]
        got = got.with_columns(pl.col("prediction").cast(pl.Float64)).sort("date", "id")
        want_sorted = want.sort("date", "id")
        assert got["date"].to_list() == want_sorted["date"].to_list()
        assert got["id"].to_list() == want_sorted["id"].to_list()
        np.testing.assert_allclose(
            got["prediction"].to_numpy(), want_sorted["prediction"].to_numpy(), rtol=1e-5
        )


def test_predict_refuses_a_file_shorter_than_time_steps(
    tiny_model: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, model, _ = tiny_model
    short = folder / "short.parquet"
    pl.read_parquet(folder / "panel.parquet").filter(
        pl.col("date") >= pl.date(2020, 2, 8)
    ).write_parquet(short)  # the last 2 dates
    out = folder / "short.csv"
    capsys.readouterr()
    for dates in ("last", "all"):
        args = ["--data", str(short), "--out", str(out), "--dates", dates]
        assert main(["predict", "--model", str(model), *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"optuna-run: error: {short}: ")
        assert "no security has time_steps = 3 consecutive valid dates" in err
        assert "the file has 2 dates" in err
        assert not out.exists()


@pytest.fixture(scope="module")
def glob_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(folder, model): the tiny study with its features by a glob (f*: f0..f3) on a 60-date,
    3-id panel, one trial retrained into a model of time_steps 3; its predictions on every
    date of the panel in ref.csv."""
    from tests.conftest import write_panel

    folder = tmp_path_factory.mktemp("glob_model")
    data = write_panel(folder / "panel.parquet", n_dates=60, n_ids=3, n_features=4)
    study = TINY_STUDY.format(name="glob", data=data, time_steps=3)
    cfg = folder / "glob.toml"
    cfg.write_text(study.replace('features = ["f0", "f1"]', 'features = ["f*"]'))
    url = f"sqlite:///{folder}/g.db"
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "1") == 0
    model = folder / "m.pt"
    train = ["train", "--study-name", "glob", "--storage", url, "--out", str(model), "--no-tree"]
    assert main(train) == 0
    assert _predict(model, data, folder / "ref.csv", "all") == 0
    return folder, model


def _predict(model: Path, data: Path, out: Path, dates: str) -> int:
    args = ["--data", str(data), "--out", str(out), "--dates", dates]
    return main(["predict", "--model", str(model), *args])


def test_predict_finds_features_by_name_and_names_only_the_differences(
    glob_model: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, model = glob_model
    panel = pl.read_parquet(folder / "panel.parquet")
    ref = folder / "ref.csv"
    # the same names in another order, and a column the glob matches that the model lacks
    other = folder / "reordered.parquet"
    panel.select("f3", "target", "f1", "id", "f0", "date", "f2").with_columns(
        f9=pl.lit(1.0)
    ).write_parquet(other)
    out = folder / "reordered.csv"
    capsys.readouterr()
    assert _predict(model, other, out, "all") == 0
    err = capsys.readouterr().err
    assert "column(s) 'f9' match [data] features but the model was not trained on them" in err
    assert err.count("optuna-run: warning: ") == 1, err  # once, though the file is read twice
    want, got = pl.read_csv(ref), pl.read_csv(out)
    assert got.select("date", "id").equals(want.select("date", "id"))
    np.testing.assert_allclose(got["prediction"].to_numpy(), want["prediction"].to_numpy())
    # two features gone, one of them renamed: only the differences, on one short line
    bad = folder / "renamed.parquet"
    panel.drop("f3").rename({"f2": "f2_v2"}).write_parquet(bad)
    assert _predict(model, bad, folder / "bad.csv", "all") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < 300
    assert err.startswith(f"optuna-run: error: {bad}: 2 of the model's 4 feature columns ")
    assert "not found: 'f2', 'f3'; renamed? 'f2' -> 'f2_v2'" in err
    # renamed to a name the study's glob would not match: still found as the likely rename
    outside = folder / "outside.parquet"
    panel.rename({"f1": "xf1"}).write_parquet(outside)
    assert _predict(model, outside, folder / "bad.csv", "all") == 2
    assert "not found: 'f1'; renamed? 'f1' -> 'xf1'" in capsys.readouterr().err


def test_predict_reads_only_the_dates_its_windows_need(
    glob_model: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, model = glob_model
    ref = pl.read_csv(folder / "ref.csv")
    # an infinite value on the first date: refused by what reads it, not by what does not
    first = pl.col("date") == pl.col("date").min()
    spoilt = folder / "spoilt.parquet"
    pl.read_parquet(folder / "panel.parquet").with_columns(
        f1=pl.when(first).then(float("inf")).otherwise("f1")
    ).write_parquet(spoilt)
    capsys.readouterr()
    assert _predict(model, spoilt, folder / "all.csv", "all") == 2
    assert "infinite values" in capsys.readouterr().err
    for dates in ("last", "test"):
        out = folder / f"{dates}.csv"
        assert _predict(model, spoilt, out, dates) == 0
        got = pl.read_csv(out)
        want = ref.filter(pl.col("date").is_in(got["date"].unique().implode()))
        assert got.height == want.height > 0
        # float32 networks on batches of another size: equal to float32 rounding
        np.testing.assert_allclose(
            got["prediction"].to_numpy(), want["prediction"].to_numpy(), rtol=1e-5, atol=1e-7
        )
        np.testing.assert_allclose(got["target_raw"].to_numpy(), want["target_raw"].to_numpy())
    assert pl.read_csv(folder / "last.csv")["date"].unique().to_list() == [ref["date"].max()]
    assert pl.read_csv(folder / "test.csv").height > 3


def test_datetimes_at_midnight_read_as_dates(tmp_path):
    """A pandas-written file of datetimes at midnight says its dates as dates (the start
    line, the study's split) and the predictions CSV writes them so; a time of day stays."""
    import datetime as dt

    from data import DataConfig, load_panel
    from search.evaluate.predict import midnight_as_dates

    days = [dt.datetime(2020, 1, d) for d in range(1, 21)]
    x = [float((7 * d) % 11) for d in range(20)]
    df = pl.DataFrame({"date": days, "x": x, "y": [v / 10 for v in x]})
    df.write_parquet(tmp_path / "dt.parquet")
    panel = load_panel(
        DataConfig(path=str(tmp_path / "dt.parquet"), id="", target="y", features=("x",))
    )
    assert [panel.date_str(d) for d in (0, 1, 19)] == ["2020-01-01", "2020-01-02", "2020-01-20"]
    assert midnight_as_dates(df).write_csv().splitlines()[1] == "2020-01-01,0.0,0.0"
    # an intraday panel whose first bar is at midnight: every date to the second
    hourly = df.with_columns(pl.col("date") + pl.duration(hours=pl.int_range(0, 20)))
    hourly.write_parquet(tmp_path / "h.parquet")
    panel = load_panel(
        DataConfig(path=str(tmp_path / "h.parquet"), id="", target="y", features=("x",))
    )
    assert [panel.date_str(d) for d in (0, 1)] == ["2020-01-01T00:00:00", "2020-01-02T01:00:00"]
    noon = df.with_columns(pl.col("date") + pl.duration(hours=12))
    assert midnight_as_dates(noon).write_csv().splitlines()[1].startswith("2020-01-01T12:00:00")


def test_the_test_predictions_mark_the_verdicts_rows_whose_rank_ic_is_the_verdicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A winner of time_steps 3 in a study that searched up to 6, on a panel with gaps: the
    verdict scores windows of 6 valid dates (the same rows for every predictor), predict
    those of 3; `in_verdict` marks the verdict's, and their mean daily rank IC is the one the
    checkpoint's verdict stored: the networks' per-date average is taken over the rows
    predict writes, in the verdict too. So are the verdict's tree (column lgbm) and the 50/50
    rank blend with it (column blend): their rank ICs there are the verdict's lines, and the
    streaming predictor writes the same columns."""
    from scipy.stats import spearmanr

    from tests.conftest import write_panel

    gaps = [(d, s) for s in range(10) for d in (66 + s % 4, 71 + s % 3) if s % 2 == 0]
    data = write_panel(tmp_path / "gaps.parquet", n_dates=80, n_ids=10, drop=gaps)
    cfg = tmp_path / "gaps.toml"
    cfg.write_text(
        TINY_STUDY.format(name="gaps", data=data, time_steps="{ low = 3, high = 6 }")
        + "[search]\n[[search.enqueue]]\ntime_steps = 3\n"
    )
    url = f"sqlite:///{tmp_path}/r.db"
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "1") == 0
    model = tmp_path / "m.pt"
    train = ["train", "--study-name", "gaps", "--storage", url, "--out", str(model)]
    assert main(train) == 0
    said = capsys.readouterr()
    assert "a saved model's predict writes it (column blend)" in said.out + said.err
    import torch

    ckpt = torch.load(model, weights_only=True)
    assert ckpt["models"][0]["arch"]["time_steps"] == 3 and ckpt["eval_time_steps"] == 6
    out = tmp_path / "test.csv"
    capsys.readouterr()
    assert main(["predict", "--model", str(model), "--out", str(out), "--dates", "test"]) == 0
    err = capsys.readouterr().err
    df = pl.read_csv(out)
    cols = ["date", "id", "prediction", "lgbm", "blend", "target", "target_raw", "in_verdict"]
    assert df.columns == cols
    rows = df.filter(pl.col("in_verdict"))
    assert f"{rows.height} of them the verdict's rows (column in_verdict)" in err
    assert "the verdict's tree (lgbm) and their 50/50 rank blend (blend)" in err

    def rank_ic(frame: pl.DataFrame, column: str = "prediction") -> float:
        per_date = [
            spearmanr(g[column], g["target"])[0]
            for _, g in frame.filter(pl.col("target").is_not_nan()).group_by("date")
            if g.height >= 5
        ]
        return float(np.mean(per_date))

    labelled = df.filter(pl.col("target").is_not_nan())
    assert 0 < rows.height < labelled.height  # the gaps leave windows of 3 but not of 6
    assert len(ckpt["models"][0]["states"]) > 1  # several networks, averaged per date
    assert rank_ic(rows) == pytest.approx(ckpt["metrics"]["test"]["rank_ic"], abs=1e-6)
    verdict = ckpt["verdict"]
    assert df["lgbm"].n_unique() > 2  # a tree that splits (ties among its leaves)
    assert rank_ic(rows, "lgbm") == pytest.approx(verdict["test"]["lgbm"]["rank_ic"], abs=1e-6)
    blended = verdict["next"]["rank_ic"]["blend"]
    assert rank_ic(rows, "blend") == pytest.approx(blended, abs=1e-6)
    # the blend: the mean of the two per-date ranks among the rows written for the date
    day = df.filter(pl.col("date") == df["date"].max())
    want = (day["prediction"].rank() - 1 + day["lgbm"].rank() - 1) / (2 * (day.height - 1))
    np.testing.assert_allclose(day["blend"].to_numpy(), want.to_numpy(), atol=1e-6)
    streamed = tmp_path / "streamed.csv"
    args = ["--model", str(model), "--out", str(streamed), "--dates", "test", "--stream"]
    assert main(["predict", *args]) == 0
    got = pl.read_csv(streamed).sort("date", "id")
    assert got.select("date", "id").equals(df.select("date", "id"))
    for name in ("prediction", "lgbm"):
        np.testing.assert_allclose(got[name].to_numpy(), df[name].to_numpy(), atol=1e-5)
    # the streamed blend is the mean of the streamed columns' ranks on each date (a near-tie
    # of the networks' float32 outputs may swap two ranks against predict's file)
    for _, g in got.group_by("date"):
        if g.height > 1:
            want = (g["prediction"].rank() - 1 + g["lgbm"].rank() - 1) / (2 * (g.height - 1))
            np.testing.assert_allclose(g["blend"].to_numpy(), want.to_numpy(), atol=1e-6)
    assert np.abs(got["blend"].to_numpy() - df["blend"].to_numpy()).max() < 0.2
    # where LightGBM is not installed: the model's columns, and one line saying why no more
    import search.evaluate.predict as predict_module

    monkeypatch.setattr(predict_module, "lgbm_available", lambda: False)
    capsys.readouterr()
    assert main(["predict", "--model", str(model), "--out", str(out), "--dates", "test"]) == 0
    err = capsys.readouterr().err
    assert pl.read_csv(out).columns == [c for c in cols if c not in ("lgbm", "blend")]
    assert "LightGBM is not installed: no lgbm and blend columns; pip install" in err
    # a tree the installed LightGBM cannot read: the same, with what it said
    monkeypatch.undo()
    damaged = tmp_path / "damaged.pt"
    torch.save({**ckpt, "tree": {"name": "lgbm", "model": "not a tree"}}, damaged)
    assert main(["predict", "--model", str(damaged), "--out", str(out), "--dates", "test"]) == 0
    err = capsys.readouterr().err
    assert pl.read_csv(out).columns == [c for c in cols if c not in ("lgbm", "blend")]
    assert "the model's LightGBM tree cannot be read by the installed LightGBM" in err, err
    # the last dates have no label: never the verdict's
    assert not df.filter(pl.col("target").is_null() | pl.col("target").is_nan())["in_verdict"].any()
    # another file (here the same rows less its first date): its test rows are its own
    # split's, none of them the verdict's, and a line says so
    other = tmp_path / "other.parquet"
    pl.read_parquet(data).filter(pl.col("date") > pl.col("date").min()).write_parquet(other)
    args = ["--model", str(model), "--data", str(other), "--dates", "test"]
    assert main(["predict", *args, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "in_verdict" not in pl.read_csv(out).columns
    assert f"{other}: not the data the model was trained and judged on" in err, err
    assert "verdict's rows" not in err


def test_dates_test_without_a_test_segment_says_so(
    tiny_model: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A study split without test dates ([data] test_frac = 0) leaves `--dates test` nothing
    to score: one line says why, not that the file's history is too short."""
    import torch

    folder, model, _ = tiny_model
    ckpt = torch.load(model, weights_only=True)
    ckpt["data"] = {**ckpt["data"], "test_frac": 0.0, "test_start": None}
    no_test = folder / "no_test.pt"
    torch.save(ckpt, no_test)
    args = ["predict", "--model", str(no_test), "--data", str(folder / "panel.parquet")]
    assert main([*args, "--dates", "test", "--out", str(folder / "t.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"optuna-run: error: {folder / 'panel.parquet'}: --dates test: the study's split leaves "
        "this file no test segment ([data] test_frac = 0, or test_start after its last date); "
        "use --dates all or last"
    ]
    assert main([*args, "--dates", "all", "--out", str(folder / "a.csv")]) == 0


def test_predictions_join_back_onto_the_file(tmp_path: Path) -> None:
    """The key columns come back in the file's own types: integer ids as integers, a date
    column of eight-digit integers as them, one of ISO text as that text; so a user's
    `file.join(predictions, on=[date, id])` works (it used to fail: String ids, Date dates)."""
    import search

    model = trained_model(tmp_path, "pj")
    src = pl.read_parquet(SAMPLE)
    codes = {s: i + 600000 for i, s in enumerate(sorted(src["symbol"].unique()))}
    as_ints = src.with_columns(
        pl.col("symbol").replace_strict(codes, return_dtype=pl.Int64),
        pl.col("date").cast(pl.Date).dt.strftime("%Y%m%d").cast(pl.Int64),
    )
    as_text = src.with_columns(pl.col("date").cast(pl.Date).dt.strftime("%Y-%m-%d"))
    for name, df in (("ints", as_ints), ("text", as_text)):
        path = tmp_path / f"{name}.parquet"
        df.write_parquet(path)
        got = search.predict(model=model, data=path, dates="test")
        assert got.schema["date"] == df.schema["date"], name
        assert got.schema["symbol"] == df.schema["symbol"], name
        joined = df.join(got, on=["date", "symbol"], how="inner")
        assert len(joined) == len(got) > 0, name
    # a security listed on the last two dates gets no prediction there: said, not silent
    last = src.filter(pl.col("date") >= src["date"].unique().sort()[-2])
    listed = pl.concat([src, last.head(2).with_columns(pl.lit("NEW").alias("symbol"))])
    path = tmp_path / "listed.parquet"
    listed.write_parquet(path)
    with pytest.warns(
        search.DataWarning,
        match=r"1 of the \d+ securities with a row on \S+ have no prediction: fewer than their time_steps .*'NEW'",
    ):
        got = search.predict(model=model, data=path, dates="last")
    assert "NEW" not in got["symbol"].to_list()
    # a last date of 3 securities where training dates held about 40: its per-date ranks
    # mean other things, said by predict and by the stream
    days = src["date"].unique().sort()
    partial = src.filter(
        (pl.col("date") < days[-1]) | pl.col("symbol").is_in(["AAPL", "MSFT", "XOM"])
    )
    path = tmp_path / "partial.parquet"
    partial.write_parquet(path)
    thin = r"hold far fewer securities than the training dates \(95% of them held \d+ or more\), e\.g\. \S+ \(3\)"
    with pytest.warns(search.DataWarning, match=thin):
        search.predict(model=model, data=path, dates="last")
    stream = search.stream_predictor(model=model)
    with pytest.warns(
        search.DataWarning, match=r"3 rows for .* far fewer securities than the training dates"
    ):
        stream.predict(partial.filter(pl.col("date") == days[-1]))
