"""`predict`: read a checkpoint written by `train` and score a file with it."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from data import DataConfig, DataError, Panel, load_panel
from data.columns import feature_differences
from data.errors import plural
from data.features import OHLCV_FEATURES, ohlcv_lookback
from data.load import DataWarning, scan
from data.normalize import Scaler, source_features
from data.panel import fingerprint, time_axis
from data.prepared import PanelTensors
from data.split import make_split
from data.windows import run_lengths, window_ends
from models import build_model
from models.baselines import TREE_INSTALL, lgbm_available, tree_from_text, tree_predict
from models.portfolio import blend
from search.evaluate.retrain import FORMAT, TREE_COLUMN, EnsemblePredictor, data_config

# `predict --dates test`'s column marking the verdict's rows (windows of the study's longest
# time_steps ending on a labelled date): on the study's file, the model's mean daily rank IC
# over them is the verdict's test rank IC
VERDICT_ROWS = "in_verdict"
# the column of the model's 50/50 per-date rank blend with the verdict's tree
BLEND_COLUMN = "blend"


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise DataError(f"{path}: model file not found (--model)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:  # a folder, no permission: said as it is
        raise DataError(
            f"{path}: cannot read the model file (--model): {e.strerror or e}"
        ) from None
    except Exception as e:  # not a torch file, or one holding what weights_only refuses
        raise DataError(
            f"{path}: not a model checkpoint (expected the .pt file `optuna-run train` or "
            f"`confirm --final` writes; torch could not read it: {type(e).__name__})"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise DataError(f"{path}: not a checkpoint written by this version of `optuna-run train`")
    return ckpt


def checkpoint_nets(ckpt: dict[str, Any]) -> list[tuple[int, list[nn.Module]]]:
    groups = []
    for m in ckpt["models"]:
        arch = dict(m["arch"])
        name = arch.pop("name")
        nets = []
        for state in m["states"]:
            net = build_model(name, **arch)
            net.load_state_dict(state)
            nets.append(net)
        groups.append((int(arch["time_steps"]), nets))
    return groups


def predict_file(
    ckpt: dict[str, Any], data_path: str, dates: str, device: torch.device
) -> pl.DataFrame:
    """Predictions for every window of the model's time_steps valid dates ending on the
    chosen dates (the longest time_steps of an ensemble). With "test" and a target, the
    boolean column `in_verdict` marks the rows the verdict scored (the study's longest
    time_steps of valid dates and a label: fewer where securities have gaps).

    `dates`: "last" (the file's last date, a submission for the next horizon), "test" (the
    test segment of the study's split, with targets to score) or "all". Only the dates the
    windows need are read (with the history the OHLCV features need before them). The
    model's features are found by name, in any order. A window needs its dates valid, not
    labelled: a file without the given target column (unlabelled data) is scored, its
    `target` and `target_raw` left empty. No window on those dates is a DataError.
    """
    model_features = list(ckpt["feature_names"])
    cfg = data_config(ckpt["data"], data_path)
    read = source_features(cfg.normalize, model_features)  # what the file gives
    cfg = _by_name(cfg, read)
    groups = checkpoint_nets(ckpt)
    T = max(t for t, _ in groups)
    # the verdict's windows: of the longest time_steps the study searched (the same rows for
    # every predictor it compares), which may read further back than the model's own
    E = max(T, int(ckpt.get("eval_time_steps") or T))
    axis = time_axis(cfg)
    history = (E if dates == "test" else T) - 1 + ohlcv_lookback(read)
    first, start = first_date(axis, cfg, dates, history)
    if dates == "test" and start is None:
        raise DataError(
            f"{data_path}: --dates test: the study's split leaves this file no test segment "
            "([data] test_frac = 0, or test_start after its last date); use --dates all or last"
        )
    panel = load_panel(cfg, for_prediction=True, first=first, features=model_features)
    if not panel.has_target:
        warnings.warn(
            f"{data_path}: column {cfg.target!r} ([data] target) is absent or empty: "
            "predicting without labels, the target and target_raw columns are left empty",
            DataWarning,
            stacklevel=2,
        )
    scaler = Scaler.from_record(ckpt["scaler"])
    data = PanelTensors(panel, cfg, device, [scaler])
    D, S, _ = panel.values.shape
    if dates == "test":
        segment = range(D if start is None else int(np.searchsorted(panel.dates, start)), D)
    else:
        segment = range(D - 1 if dates == "last" else 0, D)
    runs = run_lengths(panel.valid)
    ends = window_ends(runs, panel.valid, T, segment)
    if len(ends) == 0:
        raise nothing_to_predict(data_path, dates, T, len(axis))
    forms = functools.cache(lambda: date_forms(cfg))  # read once, by whichever needs it
    if dates == "last":
        _say_short(cfg, panel, ends, forms)
    _say_thin(cfg, panel, ends, int(ckpt.get("cross_section") or 0))
    predictor = EnsemblePredictor(data, groups)
    booster = checkpoint_tree(ckpt, data_path)
    with torch.inference_mode():
        pred = predictor(torch.as_tensor(ends).to(device)).cpu().numpy()
        beside = {} if booster is None else tree_columns(booster, data, ends, pred)
    frame = as_in_file(_prediction_frame(cfg, panel, ends, pred, beside), cfg, forms)
    verdicts = dates == "test" and panel.has_target and "eval_time_steps" in ckpt
    if verdicts and judged_on(ckpt, data_path):
        # the rows the verdict scores: E valid dates up to the row, and a label
        d, s = ends // S, ends % S
        frame = frame.with_columns(
            pl.Series(VERDICT_ROWS, (runs[d, s] >= E) & panel.labelled[d, s])
        )
    return frame


def judged_on(ckpt: dict[str, Any], data_path: str) -> bool:
    """Whether the file at `data_path` is the data the checkpoint's verdict was scored on (the
    same content and settings: its fingerprint); if not, a warning says that its test rows
    are its own split's, not the verdict's."""
    kept = ckpt.get("data_fingerprint")
    if not kept or fingerprint(data_config(ckpt["data"], data_path)) == kept:
        return True
    warnings.warn(
        f"{data_path}: not the data the model was trained and judged on (its content or "
        "settings differ): --dates test is this file's own test segment by the study's "
        f"split, and no row is marked as the verdict's (no {VERDICT_ROWS} column)",
        DataWarning,
        stacklevel=3,
    )
    return False


def checkpoint_tree(ckpt: dict[str, Any], source: str) -> Any | None:
    """The verdict's tree a checkpoint keeps (a LightGBM booster), or None: the checkpoint
    holds none (`train --no-tree`, a classifier, one series), or LightGBM is not installed
    (a warning naming `source` says so and how to add it)."""
    kept = ckpt.get("tree")
    if not kept:
        return None
    if not lgbm_available():
        head = "the model keeps the verdict's LightGBM tree but LightGBM is not installed"
        _no_tree(source, head, f"; {TREE_INSTALL} adds it")
        return None
    try:
        return tree_from_text(str(kept["model"]))
    except Exception as e:  # text another LightGBM version cannot read, or a damaged file
        said = str(e).splitlines()[0] if str(e) else "no message"
        head = "the model's LightGBM tree cannot be read by the installed LightGBM"
        _no_tree(source, f"{head} ({type(e).__name__}: {said})")
        return None


def _no_tree(source: str, why: str, then: str = "") -> None:
    """Warn in one line that the model's tree is left out, `why`, and what follows."""
    warnings.warn(
        f"{source}: {why}: no {TREE_COLUMN} and {BLEND_COLUMN} columns{then}",
        DataWarning,
        stacklevel=4,
    )


def date_forms(cfg: DataConfig) -> pl.DataFrame:
    """The file's time column as written (`raw`, each distinct value once, in text order)
    beside its values as read (`read`: parsed; an `order` column as it is)."""
    from data.load import parse_time

    key = cfg.order or cfg.date
    raw = scan(cfg.file).select(pl.col(key).unique()).collect().get_column(key).sort()
    read = raw if cfg.order else parse_time(raw, "date", cfg.file)
    return pl.DataFrame({"read": read, "raw": raw})


def _say_short(
    cfg: DataConfig, panel: Panel, ends: np.ndarray, forms: Callable[[], pl.DataFrame]
) -> None:
    """Warn about the securities with a row on the file's last date that get no prediction
    there (fewer than time_steps consecutive valid dates: a new listing whose features still
    lack their history, a return from a suspension): a submission would otherwise be short
    of them without a word."""
    if not cfg.id or not len(panel.dates):
        return
    key = cfg.order or cfg.date
    lf = scan(cfg.file, [cfg.id])
    read = forms()
    day = pl.Series(panel.dates[-1:]).cast(read.schema["read"])  # the last date, as read
    last = read.filter(pl.col("read") == day[0]).get_column("raw")
    if not len(last):
        return
    rows = lf.filter(pl.col(key).is_in(last.implode()))
    if cfg.tradable:  # a suspended security's row (tradable false) is no missing prediction
        rows = rows.filter(pl.col(cfg.tradable).cast(pl.Boolean).fill_null(False))
    there = rows.select(pl.col(cfg.id).cast(pl.String)).drop_nulls()
    have = set(panel.ids[ends % panel.values.shape[1]].tolist())
    missing = sorted(set(there.collect().get_column(cfg.id).to_list()) - have)
    if not missing:
        return
    n_there = there.unique().collect().height
    warnings.warn(
        f"{cfg.path}: {len(missing)} of the {n_there} securities with a row on "
        f"{panel.date_str(len(panel.dates) - 1)} have no prediction: fewer than their "
        "time_steps of consecutive valid dates up to it (a new listing, a return from a "
        f"suspension, features missing), e.g. {missing[:5]}",
        DataWarning,
        stacklevel=3,
    )


# a date ranked over fewer than this share of a thin training date's securities (the 5th
# percentile of the training dates') is said
THIN_SHARE = 0.25


def _say_thin(cfg: DataConfig, panel: Panel, ends: np.ndarray, trained_on: int) -> None:
    """Warn about the predicted dates whose cross-section is far thinner than the training
    dates' (under THIN_SHARE of their 5th percentile) where features are normalised per date
    (cs_rank, cs_zscore, cs_rank+level): a feature's rank among 3 securities means other
    things than among 300, and so does the prediction made of it."""
    if not trained_on or not cfg.normalize.startswith("cs_"):
        return
    S = panel.values.shape[1]
    days = np.unique(ends // S)
    counts = panel.valid[days].sum(1)
    thin = days[counts < THIN_SHARE * trained_on]
    if not len(thin):
        return
    shown = ", ".join(f"{panel.date_str(int(d))} ({int(panel.valid[d].sum())})" for d in thin[:3])
    warn_thin(
        f"{cfg.path}: {plural(len(thin), 'date')} to predict hold far fewer securities than "
        f"the training dates (95% of them held {trained_on} or more), e.g. {shown}",
        cfg.normalize,
        stacklevel=4,
    )


def warn_thin(what: str, normalize: str, stacklevel: int, then: str = "") -> None:
    """The DataWarning of `what` (dates far thinner than the training dates'), the same from
    `predict` and from the stream."""
    warnings.warn(
        f"{what}: the features are ranked per date ([data] normalize = {normalize!r}), so "
        "their values there, and the predictions, are not comparable to training's (a "
        f"partial last date?){then}",
        DataWarning,
        stacklevel=stacklevel,
    )


def tree_columns(
    booster: Any, data: PanelTensors, ends: np.ndarray, pred: np.ndarray
) -> dict[str, np.ndarray]:
    """The tree's predictions at `ends` (column lgbm) and the model's 50/50 blend with it
    (column blend: the mean of the two per-date ranks in [0, 1], each date's rows ranked among
    the rows given for it, as the verdict's blend line scores them)."""
    S = data.n_securities
    e = torch.as_tensor(ends).to(data.device)
    tree = tree_predict(booster, data, e).cpu()
    mixed = blend(torch.as_tensor(pred), tree, date=torch.as_tensor(ends) // S).float()
    return {TREE_COLUMN: tree.numpy(), BLEND_COLUMN: mixed.numpy()}


def nothing_to_predict(data_path: str, dates: str, time_steps: int, n_dates: int) -> DataError:
    """The error of a file where no window ends on the chosen dates."""
    where = {"last": "its last date", "test": "a test-segment date"}.get(dates, "any date")
    return DataError(
        f"{data_path}: no security has time_steps = {time_steps} consecutive valid dates "
        f"ending on {where} (--dates {dates}), so there is nothing to predict; the model "
        f"needs {plural(time_steps, 'date')} of history per prediction and the file has "
        f"{plural(n_dates, 'date')}"
    )


def _by_name(cfg: DataConfig, model_features: list[str]) -> DataConfig:
    """`cfg` naming the model's own feature columns (those not derived from OHLCV), once the
    file is known to hold them all; the file's other columns matching the study's feature
    patterns are named in a warning (the model does not use them)."""
    raw = [n for n in model_features if n not in OHLCV_FEATURES]
    schema = scan(cfg.file).collect_schema()
    roles = {cfg.date, cfg.order, cfg.id, cfg.target, cfg.tradable, cfg.weight}
    roles |= {cfg.open, cfg.high, cfg.low, cfg.close, cfg.volume}
    roles_used = {r for r in roles if r}
    others = feature_differences(cfg.file, schema.names(), raw, cfg.features, roles_used)
    if others and any(ch in p for p in cfg.features for ch in "*?["):
        warnings.warn(
            f"{cfg.path}: column(s) {', '.join(map(repr, others[:8]))}"
            + (f" and {len(others) - 8} more" if len(others) > 8 else "")
            + " match [data] features but the model was not trained on them: not used",
            DataWarning,
            stacklevel=3,
        )
    return replace(cfg, features=tuple(raw))


def first_date(axis: pl.Series, cfg: DataConfig, dates: str, history: int) -> tuple[Any, Any]:
    """(the first date to read, None for all; the first date of the test segment, None when
    there is none) on the file's time `axis`, `history` dates of warm-up before the windows'
    ends; for "all", (None, None)."""
    if dates == "all":
        return None, None
    D = len(axis)
    end = D - 1 if dates == "last" else make_split(axis.to_numpy(), cfg).test.start
    first = max(min(end, D - 1) - history, 0)
    return (axis[first] if first > 0 else None), (axis.to_numpy()[end] if end < D else None)


def _prediction_frame(
    cfg: DataConfig,
    panel: Panel,
    ends: np.ndarray,
    pred: np.ndarray,
    beside: dict[str, np.ndarray] | None = None,
) -> pl.DataFrame:
    S = panel.values.shape[1]
    d, s = ends // S, ends % S
    cols: dict[str, Any] = {cfg.date if not cfg.order else cfg.order: panel.dates[d]}
    if cfg.id:
        cols[cfg.id] = panel.ids[s]
    cols |= prediction_columns(pred) | (beside or {})
    if panel.has_target and panel.target_raw is not None:
        # an unknown target (the forward return past the file's last date) is empty, not NaN
        cols["target"] = pl.Series(panel.target[d, s], nan_to_null=True)
        cols["target_raw"] = pl.Series(panel.target_raw[d, s], nan_to_null=True)
    else:
        cols["target"] = pl.Series([None] * len(ends), dtype=pl.Float32)
        cols["target_raw"] = pl.Series([None] * len(ends), dtype=pl.Float32)
    return pl.DataFrame(cols)


def as_in_file(
    frame: pl.DataFrame, cfg: DataConfig, forms: Callable[[], pl.DataFrame] | None = None
) -> pl.DataFrame:
    """The key columns of `frame` (the panel's: ids as text, times parsed) in the file's
    own types, so that the predictions join back onto the file's rows: an integer id as
    that integer, a date column of eight-digit integers (20240105) as them, a date column
    of text as the text the file holds for that date, a zoned time in its zone. A CSV's id
    stays text (the file's ids are read as text, leading zeros kept). `forms`: the file's
    `date_forms`, where the caller has them."""
    schema = scan(cfg.file, [cfg.id] if cfg.id else []).collect_schema()
    out = []
    if cfg.id and cfg.id in schema and schema[cfg.id].is_integer():
        out.append(pl.col(cfg.id).cast(schema[cfg.id]))
    key = cfg.order or cfg.date
    given = schema.get(key)
    have = frame.schema[key]
    if given is None or cfg.order or given == have:
        return frame.with_columns(out) if out else frame
    if given.is_integer():  # eight digits a date, as they were read
        out.append(pl.col(key).dt.strftime("%Y%m%d").cast(given))
    elif isinstance(given, pl.Datetime) and given.time_zone is not None:
        zone = given.time_zone
        out.append(pl.col(key).dt.replace_time_zone(zone, ambiguous="earliest"))
    elif given == pl.String:  # the file's own text for each date read
        read = (forms or (lambda: date_forms(cfg)))()
        read = read.select(pl.col("read").cast(have).alias(key), pl.col("raw").alias("__raw"))
        firsts = read.group_by(key).agg(pl.col("__raw").first(), pl.len().alias("__n"))
        if (firsts["__n"] > 1).any():  # one date written two ways: the first in text order
            twice = firsts.filter(pl.col("__n") > 1).get_column(key).head(1).to_list()
            warnings.warn(
                f"{cfg.path}: column {key!r} writes some dates in more than one way (e.g. "
                f"{twice[0]}): the predictions give each the first of its forms",
                DataWarning,
                stacklevel=3,
            )
        frame = (
            frame.with_row_index("__row")
            .join(firsts.drop("__n"), on=key, how="left")
            .sort("__row")
            .with_columns(pl.col("__raw").alias(key))
            .drop("__raw", "__row")
        )
    return frame.with_columns(out) if out else frame


def prediction_columns(pred: np.ndarray) -> dict[str, np.ndarray]:
    """The output columns of (N,) predictions, or of (N, C) class log-probabilities: each
    class's probability (prob_k) and the most likely class (prediction)."""
    if pred.ndim == 1:
        return {"prediction": pred}
    prob = np.exp(pred)
    cols = {f"prob_{k}": prob[:, k] for k in range(pred.shape[1])}
    return cols | {"prediction": pred.argmax(-1)}


def midnight_as_dates(df: pl.DataFrame) -> pl.DataFrame:
    """Datetime columns whose every value is at midnight written as dates (2024-01-31, as
    a CSV of dates would give them), not 2024-01-31T00:00:00.000000."""
    for name, dtype in df.schema.items():
        if isinstance(dtype, pl.Datetime):
            col = df.get_column(name)
            if (col.dt.truncate("1d") == col).all():
                df = df.with_columns(col.dt.date())
    return df
