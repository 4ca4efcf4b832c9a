"""What a quant already has, as predictions on the model's own windows.

- zero: predicts 0 (the MSE reference; it ranks nothing, so its IC and Sharpe count as 0);
- reversal_1, momentum_5, momentum_20: past returns over 1, 5 and 20 dates, each with the
  sign that scored the better rank IC on the training dates. They come from the features
  `ret_1`, `ret_5`, `ret_20` when the panel derives them from a close price, else from the
  target itself lagged by `horizon` (a realised label is known `horizon` dates later);
- ridge: a ridge regression on the last step's normalised features, fitted on the training
  windows, its penalty picked on validation from a small grid by the metric the verdict
  compares (`select`: rank IC by default; MSE for an MSE verdict, where a penalty picked by
  rank IC can shrink ridge to the constant's MSE, rank IC barely moving);
- lgbm: a gradient-boosted tree (LightGBM, 63 leaves) on the same features and rows, fitted
  on the training windows and early-stopped on validation; only when lightgbm is installed
  (else `missing_baselines` says so).

Both fit on every training window up to FIT_ROWS (beyond it, that many drawn at random): a
tree fitted on a fifth of the Shanghai panel's windows scores 0.005 below one fitted on all
of them (bench/tree_luck.py), and a model measured against a weakened tree is flattered.

Every baseline is a (D, S) signal or a function of the end points, so it is scored by the
same metrics on exactly the same windows as the model.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from data.prepared import PanelTensors, Prepared

# ridge and the tree fit on every training window up to this many (beyond: drawn at random);
# the tree fits 1.5 million windows of 14 features in ~20 s on two cores
FIT_ROWS = 2_000_000
# the tree's LightGBM parameters (beside them: its seed and threads)
TREE_PARAMS = {
    "objective": "regression",
    "num_leaves": 63,
    "learning_rate": 0.05,
    "min_data_in_leaf": 200,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "deterministic": True,
    "verbosity": -1,
}
# windows gathered at a time to fit or apply ridge
CHUNK_ROWS = 32_768


def _lagged_sum(y: torch.Tensor, start: int, length: int, step: int = 1) -> torch.Tensor:
    """(D, S): sum of y[d - start - j * step] for j in 0..length-1 (a missing value, or a
    date before the first, counts 0)."""
    z = torch.nan_to_num(y.double(), nan=0.0)
    D = y.shape[0]
    out = torch.zeros_like(z)
    for j in range(length):
        lag = start + j * step
        if lag < D:
            out[lag:] += z[: D - lag]
    return out.float()


def past_returns(data: Prepared) -> dict[str, torch.Tensor]:
    """(D, S) past-return signals known at each date: 1, 5 and 20 dates. The ret_1 / ret_5 /
    ret_20 features where the panel has them; else built from the labels known by each date,
    before any transform (`target_raw`, where the target was ranked, scaled or made classes):
    the label of h dates before is the h-date return ending on the date (h the horizon), and
    a k-date return is max(1, round(k / h)) of them end to end, never overlapping (with h > 1,
    "1 date" is the h-date return); a span that rounds to the same count as a shorter one is
    the same signal and left out (with h = 5, "5 dates" is "1 date")."""
    names = list(data.panel.feature_names)
    own = {"ret_1": 1, "ret_5": 5, "ret_20": 20}
    if all(n in names for n in own):
        return {f"r{k}": data.values[:, :, names.index(n)] for n, k in own.items()}
    h = data.cfg.horizon
    raw = data.panel.target_raw
    y = data.target if raw is None else torch.as_tensor(raw, device=data.device)
    counts: dict[int, int] = {}  # count of labels -> the first span that takes it
    for k in own.values():
        counts.setdefault(max(1, round(k / h)), k)
    return {f"r{k}": _lagged_sum(y, h, n, h) for n, k in counts.items()}


def _rank_ic(score: torch.Tensor, y: torch.Tensor, date: torch.Tensor) -> float:
    from models.metrics import panel_metrics, series_metrics

    if date.unique().numel() == date.numel():  # one series
        return float(series_metrics(score, y.double())["rank_ic"])
    return float(panel_metrics(score, y.double(), date)["rank_ic"])


def signal_baselines(
    data: Prepared, train_ends: torch.Tensor
) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Zero, reversal and momentum, signed on the training windows `train_ends`."""
    S = data.n_securities
    r = past_returns(data)
    d, s = train_ends // S, train_ends % S
    y = data.target[d, s]
    out: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "zero": lambda e: torch.zeros(len(e), device=e.device)
    }
    for name, key in (("reversal_1", "r1"), ("momentum_5", "r5"), ("momentum_20", "r20")):
        if key not in r:  # the same signal as a shorter span's (a long horizon)
            continue
        sig = torch.nan_to_num(r[key], nan=0.0)
        sign = -1.0 if name.startswith("reversal") else 1.0
        if _rank_ic(sign * sig[d, s], y, d) < 0:
            sign = -sign
            name += " (sign flipped)"
        out[name] = _signal(sig, sign, S)
    return out


def _signal(sig: torch.Tensor, sign: float, S: int) -> Callable[[torch.Tensor], torch.Tensor]:
    def predict(e: torch.Tensor) -> torch.Tensor:
        return sign * sig[e // S, e % S]

    return predict


def last_step(data: PanelTensors, ends: torch.Tensor) -> torch.Tensor:
    """(B, F) normalised features at each end point (the model's last step)."""
    return data.batch(ends, 1).x[0]


def _subsample(ends: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """`n` of the end points drawn with `seed`; all of them when there are no more (or n=0)."""
    if n <= 0 or len(ends) <= n:
        return ends
    g = torch.Generator().manual_seed(seed)
    return ends[torch.randperm(len(ends), generator=g)[:n].to(ends.device)]


def _chunks(ends: torch.Tensor, rows: int = CHUNK_ROWS) -> list[torch.Tensor]:
    return list(ends.split(rows))


def _moments(data: Prepared, ends: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Float64 sums over the windows `ends` of x, y, x x^T and x y (x: the last step's
    features, y: the target), CHUNK_ROWS windows at a time: no (rows, F) float64 copy."""
    S, F = data.n_securities, data.n_features
    dev = data.device
    sx = torch.zeros(F, dtype=torch.float64, device=dev)
    xtx = torch.zeros(F, F, dtype=torch.float64, device=dev)
    sy = torch.zeros((), dtype=torch.float64, device=dev)
    xty = torch.zeros(F, dtype=torch.float64, device=dev)
    for e in _chunks(ends):
        x = last_step(data, e).double()  # (chunk, F)
        y = data.target[e // S, e % S].double()
        sx += x.sum(0)
        sy += y.sum()
        xtx += x.T @ x
        xty += x.T @ y
    return sx, sy, xtx, xty


def _val_score(data: Prepared, pred: torch.Tensor, ends: torch.Tensor, select: str) -> float:
    """The validation value of metric `select` (as the verdict scores it), signed so that
    higher is better; rank IC where the metric is not one evaluate gives."""
    from models.metrics import OBJECTIVES, evaluate

    S = data.n_securities
    d, s = ends // S, ends % S
    if select == "rank_ic" or data.cfg.task != "regression":
        return _rank_ic(pred, data.target[d, s], d)
    w = None if data.weight is None else data.weight[d, s]
    m = evaluate(pred, data.target[d, s], d, w, "regression", panel=S > 1)
    if select not in m:
        return _rank_ic(pred, data.target[d, s], d)
    minimize = any(k == select and how == "minimize" for k, how in OBJECTIVES.values())
    v = float(m[select])
    return -v if minimize else v


def ridge_baseline(
    data: Prepared, train_ends: torch.Tensor, val_ends: torch.Tensor, select: str = "rank_ic"
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Ridge on the last step's features; the penalty (x rows) picked by the validation value
    of `select`, the metric the verdict compares (rank IC by default). Fitted from the
    centred moments, so it holds no copy of the fitting rows."""
    e = _subsample(train_ends, FIT_ROWS)
    n = len(e)
    sx, sy, xtx, xty = _moments(data, e)
    mx, my = sx / n, sy / n
    xtx = xtx - n * torch.outer(mx, mx)  # centred: sum of (x - mx)(x - mx)^T
    xty = xty - n * mx * my
    best: tuple[float, torch.Tensor] | None = None
    eye = torch.eye(len(mx), dtype=torch.float64, device=mx.device)
    for lam in (1e-3, 1e-1, 1e1, 1e3):
        beta = torch.linalg.solve(xtx + lam * n * eye, xty)
        score = _val_score(data, _linear(data, val_ends, mx, beta, my), val_ends, select)
        if best is None or score > best[0]:
            best = (score, beta)
    assert best is not None
    beta = best[1]
    return lambda ends: _linear(data, ends, mx, beta, my)


def _linear(
    data: Prepared, ends: torch.Tensor, mx: torch.Tensor, beta: torch.Tensor, my: torch.Tensor
) -> torch.Tensor:
    """(x - mx) beta + my at each end point, CHUNK_ROWS windows at a time."""
    if len(ends) == 0:
        return torch.zeros(0, device=ends.device)
    parts = [((last_step(data, e).double() - mx) @ beta + my).float() for e in _chunks(ends)]
    return torch.cat(parts)


def lgbm_available() -> bool:
    return importlib.util.find_spec("lightgbm") is not None


TREE_INSTALL = 'pip install -e ".[tree]"'


def missing_baselines(tree: bool = True) -> list[str]:
    """One line for each baseline asked for but left out: why, and how to have it."""
    if tree and not lgbm_available():
        return [
            f"no lgbm row: LightGBM is not installed; {TREE_INSTALL} adds it (the `tree` extra)"
        ]
    return []


class TreePredictor:
    """The verdict's LightGBM: predictions at end points of `data` (the last step's features),
    and its trees as text for a checkpoint (`tree_from_text` reads them back)."""

    def __init__(self, data: PanelTensors, booster: Any) -> None:
        self.data = data
        self.booster = booster

    def __call__(self, ends: torch.Tensor) -> torch.Tensor:
        return tree_predict(self.booster, self.data, ends)

    def text(self) -> str:
        """The trees up to the early-stopped round, as LightGBM writes a model file."""
        return str(self.booster.model_to_string(num_iteration=self.booster.best_iteration))


def tree_from_text(text: str) -> Any:
    """A LightGBM booster from `TreePredictor.text`."""
    import lightgbm as lgb

    return lgb.Booster(model_str=text)


def tree_predict(booster: Any, data: PanelTensors, ends: torch.Tensor) -> torch.Tensor:
    """(N,) the booster's predictions at end points `ends` (its best round when it has one:
    every round of a booster read back from text, which holds those only)."""
    if len(ends) == 0:
        return torch.zeros(0, device=ends.device)
    x = last_step(data, ends).cpu().numpy()
    best = getattr(booster, "best_iteration", 0) or None
    p = booster.predict(x, num_iteration=best)
    return torch.as_tensor(np.asarray(p, dtype=np.float32), device=ends.device)


def lgbm_baseline(
    data: Prepared,
    train_ends: torch.Tensor,
    val_ends: torch.Tensor,
    threads: int = 0,
    seed: int = 0,
    rows: int = FIT_ROWS,
) -> TreePredictor:
    """LightGBM regression on the last step's features, early-stopped on validation, fitted
    on `rows` training windows drawn with `seed` (0: every one), its bagging seeded alike."""
    import lightgbm as lgb

    S = data.n_securities
    e = _subsample(train_ends, rows, seed)
    X = last_step(data, e).cpu().numpy()
    y = data.target[e // S, e % S].cpu().numpy()
    Xv = last_step(data, val_ends).cpu().numpy()
    yv = data.target[val_ends // S, val_ends % S].cpu().numpy()
    params = {**TREE_PARAMS, "seed": seed, "num_threads": threads}
    booster = lgb.train(
        params,
        lgb.Dataset(X, y),
        num_boost_round=1000,
        valid_sets=[lgb.Dataset(Xv, yv)],
        callbacks=[lgb.early_stopping(50, verbose=False)],
    )
    return TreePredictor(data, booster)


def baselines(
    data: Prepared,
    train_ends: torch.Tensor,
    val_ends: torch.Tensor,
    tree: bool = True,
    select: str = "rank_ic",
) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Every baseline, fitted or signed on `train_ends` (and tuned on `val_ends`, ridge's
    penalty by `select`, the metric the verdict compares)."""
    out = signal_baselines(data, train_ends)
    out["ridge"] = ridge_baseline(data, train_ends, val_ends, select)
    if tree and lgbm_available():
        out["lgbm"] = lgbm_baseline(data, train_ends, val_ends)
    return out
