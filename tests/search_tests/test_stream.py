"""Predicting one date at a time (`search.stream_predictor`, `optuna-run predict --stream`):
the same numbers as the whole file's `predict --dates all`, new listings and suspensions
counted as in training, and one-line errors for rows that cannot be taken in."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

import search
from search.cli import main

OHLCV_STUDY = """
[study]
name = "{name}"
objective = "val_loss"
[data]
path = "{data}"
id = "id"
target_cs = "rank"
{extra}
[budget]
max_windows_per_epoch = 64
[final]
epochs = 1
seeds = 2
max_windows_per_epoch = 256
patience = 0
[search]
sampler = "random"
pruner = "none"
seed = 7
[space]
time_steps = {time_steps}
num_layers = 1
hidden_dim = 4
head_dim = 0
dropout = 0.0
batch_size = 256
epochs = 1
"""

T_OHLCV = 5
T_FACTORS = "{ choices = [3, 4] }"
N_DATES = 70
LISTED = 36  # A9 (an id that sorts first) is listed on this date
SUSPENDED = 40  # S2 has no row on this date
GONE, BACK = 10, 52  # S5 has no row from GONE to BACK - 1: longer than any window reaches
HALTED = 20  # S1 is not tradable on this date (factor panel)


def _dates(n: int) -> pl.Series:
    start = pl.date(2020, 1, 1)
    return pl.date_range(start, start + pl.duration(days=n - 1), eager=True)


def _absent(d: int, s: str) -> bool:
    return (
        (s == "A9" and d < LISTED)
        or (s == "S2" and d == SUSPENDED)
        or (s == "S5" and GONE <= d < BACK)
    )


def ohlcv_panel(path: Path, n_ids: int = 8) -> Path:
    """Prices of `n_ids` securities and A9, with runs of unchanged prices and volumes (ties
    in the per-date ranks of ret_1, ret_5 and vol_chg) and the gaps above; rows in no order."""
    rng = np.random.default_rng(0)
    dates = _dates(N_DATES)
    frames = []
    for s in [f"S{k}" for k in range(n_ids)] + ["A9"]:
        close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, N_DATES)))
        volume = rng.integers(1_000, 5_000, N_DATES).astype(float)
        if s in ("S0", "S3", "S6", "A9"):
            close[35:48] = close[35]
            volume[35:48] = 1_000.0
        opened = close * np.exp(rng.normal(0, 0.01, N_DATES))
        high = np.maximum(opened, close) * (1 + np.abs(rng.normal(0, 0.01, N_DATES)))
        low = np.minimum(opened, close) * (1 - np.abs(rng.normal(0, 0.01, N_DATES)))
        keep = [d for d in range(N_DATES) if not _absent(d, s)]
        frames.append(
            pl.DataFrame(
                {
                    "date": dates.gather(keep),
                    "id": [s] * len(keep),
                    "open": opened[keep],
                    "high": high[keep],
                    "low": low[keep],
                    "close": close[keep],
                    "volume": volume[keep],
                }
            )
        )
    pl.concat(frames).sample(fraction=1.0, shuffle=True, seed=1).write_parquet(path)
    return path


def factor_panel(path: Path, n_ids: int = 8) -> Path:
    """Factors f0..f2, a given target and a tradable column `ok`, with missing factor values
    (some rows with too many) and the same gaps as the price panel."""
    rng = np.random.default_rng(1)
    rows = []
    for d, date in enumerate(_dates(N_DATES)):
        for s in [f"S{k}" for k in range(n_ids)] + ["A9"]:
            if _absent(d, s):
                continue
            f = rng.normal(size=3)
            if rng.random() < 0.1:
                f[1] = np.nan
            if rng.random() < 0.03:
                f[1:] = np.nan  # 2 of 3 missing: more than max_missing, an invalid row
            ok = not (s == "S1" and d == HALTED)
            r = {"date": date, "id": s, "f0": f[0], "f1": f[1], "f2": f[2], "ok": ok}
            rows.append({**r, "target": float(rng.normal())})
    pl.DataFrame(rows).write_parquet(path)
    return path


def _model(folder: Path, name: str, data: Path, time_steps: object, extra: str, k: int) -> Path:
    toml = folder / f"{name}.toml"
    study = OHLCV_STUDY.format(name=name, data=data, time_steps=time_steps, extra=extra)
    toml.write_text(study)
    url = f"sqlite:///{folder / 'r.db'}"
    search.run_study(config=toml, storage=url, n_trials=k + 1, device="cpu")
    model = folder / f"{name}.pt"
    search.train(study_name=name, storage=url, out=model, device="cpu", tree=False, ensemble=k)
    return model


@pytest.fixture(scope="module")
def ohlcv_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data, model): the basic features derived from OHLCV, ranked per date; 2 seeds
    averaged."""
    folder = tmp_path_factory.mktemp("stream_ohlcv")
    data = ohlcv_panel(folder / "prices.parquet")
    extra = 'normalize = "cs_rank"\nohlcv_set = "basic"'
    return data, _model(folder, "prices", data, T_OHLCV, extra, 1)


@pytest.fixture(scope="module")
def extended_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data, model): the extended OHLCV features (look-backs up to 60 dates; ret_60 has no
    value on the 48 training dates and is left out), scaled by training-date statistics."""
    folder = tmp_path_factory.mktemp("stream_extended")
    data = ohlcv_panel(folder / "prices.parquet")
    extra = 'normalize = "robust"\nohlcv_set = "extended"'
    return data, _model(folder, "prices", data, T_OHLCV, extra, 1)


@pytest.fixture(scope="module")
def ranked_extended_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data, model): the extended OHLCV features ranked per date, no feature missing allowed
    in a row; ret_60, without a value on the training dates, is left out of the model."""
    folder = tmp_path_factory.mktemp("stream_ranked_extended")
    data = ohlcv_panel(folder / "prices.parquet")
    extra = 'normalize = "cs_rank"\nohlcv_set = "extended"\nmax_missing = 0.0'
    return data, _model(folder, "prices", data, T_OHLCV, extra, 1)


@pytest.fixture(scope="module")
def levels_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data, model): the basic OHLCV features ranked per date and, beside them, each as its
    quantile among the training rows (normalize = "cs_rank+level"); 2 seeds averaged."""
    folder = tmp_path_factory.mktemp("stream_levels")
    data = ohlcv_panel(folder / "prices.parquet")
    extra = 'normalize = "cs_rank+level"\nohlcv_set = "basic"'
    return data, _model(folder, "levels", data, T_OHLCV, extra, 1)


@pytest.fixture(scope="module")
def factor_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data, model): factor columns, robust (training-date) scaling, a tradable column; the
    2 best trials x 2 seeds averaged."""
    folder = tmp_path_factory.mktemp("stream_factors")
    data = factor_panel(folder / "factors.parquet")
    extra = 'normalize = "robust"\ntarget = "target"\nfeatures = ["f*"]\ntradable = "ok"'
    return data, _model(folder, "factors", data, T_FACTORS, extra, 2)


def feed(live: search.StreamPredictor, data: Path, reverse: bool = True) -> pl.DataFrame:
    """Every date of `data` given to `live` in turn (each date's rows in reverse id order
    when `reverse`); the predictions, one per row given, in the rows' order."""
    outs = []
    frame = pl.read_parquet(data).sort("date", "id", descending=[False, reverse])
    for rows in frame.partition_by("date", maintain_order=True):
        out = live.predict(rows)
        assert isinstance(out, pl.DataFrame)
        assert out["id"].to_list() == rows["id"].to_list()
        outs.append(out)
    return pl.concat(outs)


def assert_same(got: pl.DataFrame, want: pl.DataFrame) -> None:
    """The streamed predictions are the file's: a value on the same (date, id) rows, null
    on the others, equal to float tolerance."""
    both = got.join(want.select("date", "id", "prediction"), on=["date", "id"], how="left")
    missing = both["prediction_right"].is_null()
    assert (both["prediction"].is_null() == missing).all()
    assert got["prediction"].is_not_null().sum() == want.height
    np.testing.assert_allclose(
        both.filter(~missing)["prediction"].to_numpy(),
        both.filter(~missing)["prediction_right"].to_numpy(),
        rtol=1e-5,
        atol=1e-6,
    )


def _first_predicted(got: pl.DataFrame, ident: str) -> list[int]:
    """The date numbers (0 = the file's first date) on which `ident` has a prediction."""
    first = _dates(N_DATES)[0]
    rows = got.filter((pl.col("id") == ident) & pl.col("prediction").is_not_null())
    return [(d - first).days for d in rows["date"].to_list()]


def test_day_by_day_equals_the_file_for_features_derived_from_ohlcv(
    ohlcv_model: tuple[Path, Path],
) -> None:
    data, model = ohlcv_model
    live = search.stream_predictor(model=model, device="cpu")
    assert live.columns == ["date", "id", "open", "high", "low", "close", "volume"]
    got = feed(live, data)
    assert_same(got, search.predict(model=model, data=data, dates="all", device="cpu"))
    # ids in the other order on every date: tied values share their average per-date rank
    other = feed(search.stream_predictor(model=model, device="cpu"), data, reverse=False)
    assert_same(other, got.drop_nulls("prediction"))


def test_day_by_day_equals_the_file_for_the_extended_ohlcv_features(
    extended_model: tuple[Path, Path],
) -> None:
    data, model = extended_model
    live = search.stream_predictor(model=model, device="cpu")
    assert live.history == T_OHLCV - 1 + 60
    want = search.predict(model=model, data=data, dates="all", device="cpu")
    assert_same(feed(live, data), want)


def test_a_feature_training_left_out_changes_neither_rows_nor_ranks_of_the_file(
    ranked_extended_model: tuple[Path, Path],
) -> None:
    """The rows a model predicts and the per-date ranks of its features are taken over the
    model's features only, as in training: ret_60 (no value before date 60, left out of the
    model) would otherwise make every row before it invalid (max_missing 0) and, after it,
    rank each feature among other rows."""
    data, model = ranked_extended_model
    ckpt = torch.load(model, weights_only=True)
    assert "ret_60" not in ckpt["feature_names"] and "ret_20" in ckpt["feature_names"]
    want = search.predict(model=model, data=data, dates="all", device="cpu")
    assert min(_first_predicted(want, "S1")) < 60
    assert_same(feed(search.stream_predictor(model=model, device="cpu"), data), want)


def test_day_by_day_equals_the_file_for_ranks_and_levels(
    levels_model: tuple[Path, Path],
) -> None:
    """The levels' training quantiles travel in the checkpoint: a date's rows alone give the
    file's predictions, and the rows' columns are the OHLCV ones, no level named."""
    data, model = levels_model
    ckpt = torch.load(model, weights_only=True)
    names = list(ckpt["feature_names"])
    half = len(names) // 2
    assert names[half:] == [n + ":level" for n in names[:half]] and "ret_1" in names
    assert ckpt["scaler"]["knots"].shape == (half, 1001)
    live = search.stream_predictor(model=model, device="cpu")
    assert live.columns == ["date", "id", "open", "high", "low", "close", "volume"]
    want = search.predict(model=model, data=data, dates="all", device="cpu")
    assert_same(feed(live, data), want)
    # the levels reach the network: without them (their knots all equal) it predicts otherwise
    flat = dict(ckpt, scaler={**ckpt["scaler"], "knots": torch.zeros_like(ckpt["scaler"]["knots"])})
    torch.save(flat, model.with_name("flat.pt"))
    other = search.predict(model=model.with_name("flat.pt"), data=data, dates="all", device="cpu")
    assert not np.allclose(other["prediction"].to_numpy(), want["prediction"].to_numpy())


def test_day_by_day_equals_the_file_for_a_robust_factor_ensemble(
    factor_model: tuple[Path, Path],
) -> None:
    data, model = factor_model
    live = search.stream_predictor(model=model, device="cpu")
    assert sorted(live.columns) == ["date", "f0", "f1", "f2", "id", "ok"]
    want = search.predict(model=model, data=data, dates="all", device="cpu")
    assert_same(feed(live, data), want)


def test_new_listings_and_gaps_count_time_steps_valid_dates_again(
    ohlcv_model: tuple[Path, Path], factor_model: tuple[Path, Path]
) -> None:
    data, model = ohlcv_model
    got = feed(search.stream_predictor(model=model, device="cpu"), data)
    # derived features: a listing's first date lacks ret_1, ret_5, ret_20, vol_chg and
    # volat_20 (5 of 7 missing > max_missing 0.5): its first valid date is its second
    T = T_OHLCV
    listed = _first_predicted(got, "A9")
    assert listed[0] == LISTED + T and listed == list(range(LISTED + T, N_DATES))
    suspended = _first_predicted(got, "S2")
    assert SUSPENDED - 1 in suspended and SUSPENDED + T in suspended
    assert not set(range(SUSPENDED, SUSPENDED + T)) & set(suspended)
    back = _first_predicted(got, "S5")
    assert max(d for d in back if d < BACK) == GONE - 1 and min(d for d in back if d > GONE) == (
        BACK + T
    )
    data, model = factor_model
    live = search.stream_predictor(model=model, device="cpu")
    got = feed(live, data)
    T = live.time_steps
    # factors: valid from the first date on; not tradable breaks the run as a gap does
    assert _first_predicted(got, "A9")[0] == LISTED + T - 1
    halted = set(_first_predicted(got, "S1"))
    assert HALTED - 1 in halted and HALTED + T in halted
    assert not set(range(HALTED, HALTED + T)) & halted


def test_a_security_gone_long_enough_is_forgotten_and_its_slot_reused(
    ohlcv_model: tuple[Path, Path],
) -> None:
    data, model = ohlcv_model
    live = search.stream_predictor(model=model, device="cpu")
    frame = pl.read_parquet(data).sort("date", "id")
    parts = frame.partition_by("date", maintain_order=True)
    reach = live.history + 1  # the dates a prediction reads, its own included
    for rows in parts[: GONE + reach - 1]:
        live.predict(rows)
    slot = live.rolling.slot["S5"]  # absent on the last reach - 1 dates: still known
    live.predict(parts[GONE + reach - 1])
    assert "S5" not in live.rolling.slot
    assert GONE + reach - 1 < LISTED
    n_slots = live.rolling.n_slots
    for rows in parts[GONE + reach : LISTED + 1]:
        live.predict(rows)
    assert live.rolling.slot["A9"] == slot and live.rolling.n_slots == n_slots
    for rows in parts[LISTED + 1 : BACK + 1]:
        live.predict(rows)
    assert live.rolling.slot["S5"] == n_slots  # back: a new listing, in a new slot


def test_a_date_missing_a_security_and_extra_columns_are_fine(
    factor_model: tuple[Path, Path],
) -> None:
    data, model = factor_model
    frame = pl.read_parquet(data).sort("date", "id")
    parts = frame.partition_by("date", maintain_order=True)
    live = search.stream_predictor(model=model, device="cpu")
    for rows in parts[:10]:
        live.predict(rows.with_columns(row_id=pl.int_range(rows.height), note=pl.lit("x")))
    # a pandas frame gives a pandas frame back, on the rows' index
    rows = parts[10].filter(pl.col("id") != "S3").to_pandas()
    rows.index = rows.index + 100
    out = live.predict(rows)
    assert list(out.index) == list(rows.index) and list(out["id"]) == list(rows["id"])
    assert out["prediction"].notna().all()
    assert "S3" not in set(out["id"])


def test_bad_rows_raise_one_line_and_change_nothing(factor_model: tuple[Path, Path]) -> None:
    data, model = factor_model
    parts = pl.read_parquet(data).sort("date", "id").partition_by("date", maintain_order=True)
    live = search.stream_predictor(model=model, device="cpu")
    want = feed(search.stream_predictor(model=model, device="cpu"), data, reverse=False)
    for rows in parts[:8]:
        live.predict(rows)
    bad = {
        "rows: column(s) 'f1' (a model feature) not found": parts[8].drop("f1"),
        "rows: column(s) 'ok' ([data] tradable) not found": parts[8].drop("ok"),
        "rows of 2020-01-08: not after the previous date, 2020-01-08": parts[7],
        "rows of 2020-01-04: not after the previous date": parts[3],
        "2 dates (2020-01-09 to 2020-01-10) in one call": pl.concat(parts[8:10]),
        "rows of 2020-01-09: 1 id(s) on more than one row, e.g. 'S4'": pl.concat(
            [parts[8], parts[8].filter(pl.col("id") == "S4")]
        ),
        "column 'f0' has type String, expected numbers": parts[8].with_columns(
            pl.col("f0").cast(pl.String)
        ),
        "infinite values": parts[8].with_columns(f2=pl.lit(float("inf"))),
        "none given": parts[8].head(0),
    }
    for message, rows in bad.items():
        with pytest.raises(search.DataError, match=re.escape(message)) as e:
            live.predict(rows)
        assert "\n" not in str(e.value)
    with pytest.raises(search.DataError, match="expected a polars or pandas DataFrame"):
        live.predict(parts[8].to_dicts())  # type: ignore[arg-type]
    # the predictor is as it was: the next date gives what an undisturbed stream gives
    for rows in parts[8:12]:
        out = live.predict(rows)
    day = want.filter(pl.col("date") == out["date"][0])
    np.testing.assert_allclose(out["prediction"].to_numpy(), day["prediction"].to_numpy())


def test_cli_stream_writes_what_the_file_path_writes(
    ohlcv_model: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, model = ohlcv_model
    for dates in ("all", "last", "test"):
        base = ["predict", "--model", str(model), "--data", str(data), "--dates", dates]
        files = tmp_path / f"{dates}.csv", tmp_path / f"{dates}-stream.csv"
        assert main([*base, "--out", str(files[0])]) == 0
        assert main([*base, "--out", str(files[1]), "--stream"]) == 0
        want, got = pl.read_csv(files[0]), pl.read_csv(files[1])
        assert got.columns == ["date", "id", "prediction"]
        assert got.select("date", "id").equals(want.select("date", "id"))
        np.testing.assert_allclose(
            got["prediction"].to_numpy(), want["prediction"].to_numpy(), rtol=1e-5, atol=1e-6
        )
    assert pl.read_csv(tmp_path / "last-stream.csv")["date"].n_unique() == 1
    err = capsys.readouterr().err
    assert "wrote" in err and "error" not in err


def test_cli_stream_refuses_a_duplicated_row_up_front_naming_the_file(
    ohlcv_model: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A (date, id) pair on two rows stops `predict --stream` before any date is fed, with
    the line the whole-file path says: the file, the pair, one line, exit status 2."""
    data, model = ohlcv_model
    frame = pl.read_parquet(data)
    late = _dates(N_DATES)[N_DATES - 3]
    twice = tmp_path / "twice.parquet"
    pl.concat([frame, frame.filter((pl.col("date") == late) & (pl.col("id") == "S0"))]).sort(
        "date", "id"
    ).write_parquet(twice)
    lines = []
    for stream in ([], ["--stream"]):
        out = tmp_path / f"y{len(stream)}.csv"
        base = ["predict", "--model", str(model), "--data", str(twice), "--out", str(out)]
        capsys.readouterr()
        assert main([*base, "--dates", "all", *stream]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and not out.exists(), err
        lines.append(err.strip())
    assert lines[1] == lines[0], lines
    assert lines[1].startswith(f"optuna-run: error: {twice}: 1 duplicate (date, id) row, e.g. "), (
        lines
    )
    assert f"{late} S0; expected one row per date and id" in lines[1], lines


def test_a_date_the_stream_cannot_take_in_names_the_file(
    factor_model: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A date whose rows cannot be fed (here an id left empty) is said with the file's name
    as well as the date."""
    data, model = factor_model
    frame = pl.read_parquet(data)
    late = _dates(N_DATES)[N_DATES - 3]
    gap = tmp_path / "gap.parquet"
    frame.with_columns(
        id=pl.when((pl.col("date") == late) & (pl.col("id") == "S0"))
        .then(None)
        .otherwise(pl.col("id"))
    ).write_parquet(gap)
    out = tmp_path / "y.csv"
    base = ["predict", "--model", str(model), "--data", str(gap), "--out", str(out)]
    capsys.readouterr()
    assert main([*base, "--dates", "all", "--stream"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and not out.exists(), err
    assert err.startswith(f"optuna-run: error: {gap}: rows of {late}: column 'id' "), err


def test_cli_stream_without_the_id_column_or_with_empty_ids_is_one_line(
    ohlcv_model: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No id column (the duplicate check must leave it to the column check), and two empty
    ids on one date (not a duplicated pair): one line each, naming what is wrong."""
    data, model = ohlcv_model
    frame = pl.read_parquet(data)
    late = _dates(N_DATES)[N_DATES - 3]
    no_id = tmp_path / "noid.parquet"
    frame.rename({"id": "ticker"}).write_parquet(no_id)
    empty = tmp_path / "empty.parquet"
    frame.with_columns(
        id=pl.when((pl.col("date") == late) & pl.col("id").is_in(["S0", "S1"]))
        .then(None)
        .otherwise(pl.col("id"))
    ).write_parquet(empty)
    for path, words in ((no_id, "'id'"), (empty, "empty")):
        out = tmp_path / "y.csv"
        argv = ["predict", "--model", str(model), "--data", str(path), "--out", str(out)]
        capsys.readouterr()
        assert main([*argv, "--dates", "all", "--stream"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err and words in err, err
        assert "duplicate" not in err, err


def test_a_date_given_twice_reads_the_same_from_pandas_and_polars_rows() -> None:
    """A pandas frame's dates are datetimes at midnight: the same date, given first as pandas
    rows then as polars rows (or the other way), is shown the same way twice."""
    import datetime as dt

    from data.config import DataConfig
    from data.rolling import RollingPanel

    cfg = DataConfig(path="x.parquet", id="id", target="y", normalize="none")
    rows = pl.DataFrame({"date": [dt.date(2019, 1, 2)] * 2, "id": ["a", "b"], "f0": [1.0, 2.0]})
    as_pandas = pl.from_pandas(rows.to_pandas())  # what the predictor makes of pandas rows
    for first, then in [(as_pandas, rows), (rows, as_pandas), (as_pandas, as_pandas)]:
        live = RollingPanel(cfg, ["f0"], 2)
        live.push(first)
        with pytest.raises(search.DataError) as e:
            live.push(then)
        assert "rows of 2019-01-02: not after the previous date, 2019-01-02;" in str(e.value)
