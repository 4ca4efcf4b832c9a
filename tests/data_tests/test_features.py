"""The extended OHLCV features against an independent pandas computation, their look-back,
and that each is past-only (changing later bars leaves them unchanged)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data.features import LOOKBACK, OHLCV_SETS, ohlcv_feature_names, ohlcv_features, ohlcv_lookback

D, S = 90, 3


def bars(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 10 * np.exp(np.cumsum(rng.normal(0, 0.02, (D, S)), axis=0))
    high = close * np.exp(np.abs(rng.normal(0, 0.01, (D, S))))
    low = close * np.exp(-np.abs(rng.normal(0, 0.01, (D, S))))
    opn = close * np.exp(rng.normal(0, 0.01, (D, S)))
    volume = rng.uniform(1e5, 1e6, (D, S))
    close[40:44, 1] = np.nan  # a suspension
    return {"open": opn, "high": high, "low": low, "close": close, "volume": volume}


def expected(b: dict[str, np.ndarray], s: int) -> dict[str, pd.Series]:
    """Each extended feature of security s, by pandas rolling windows."""
    c = pd.Series(b["close"][:, s])
    lc = np.log(c)
    r1 = lc.diff()
    lv = np.log(pd.Series(b["volume"][:, s]))
    amihud = (r1.abs() / (c * pd.Series(b["volume"][:, s]))).rolling(20, min_periods=10).mean()
    return {
        "ret_10": lc - lc.shift(10),
        "ret_60": lc - lc.shift(60),
        "volat_60": r1.rolling(60, min_periods=30).std(ddof=0),
        "vol_rel_20": lv - lv.rolling(20, min_periods=10).mean(),
        "hi_20": lc - np.log(pd.Series(b["high"][:, s])).rolling(20, min_periods=1).max(),
        "lo_20": lc - np.log(pd.Series(b["low"][:, s])).rolling(20, min_periods=1).min(),
        "illiq_20": np.log(amihud.where(amihud > 0)),
    }


def test_extended_features_match_pandas():
    b = bars()
    got = dict(ohlcv_features({k: v.copy() for k, v in b.items()}, "extended"))
    assert list(got) == ohlcv_feature_names(b, "extended") == list(OHLCV_SETS["extended"])
    for s in range(S):
        for name, want in expected(b, s).items():
            np.testing.assert_allclose(
                got[name][:, s], want.to_numpy(), rtol=1e-9, atol=1e-12, err_msg=name
            )


def test_basic_set_is_a_prefix_and_roles_decide():
    b = bars()
    basic = dict(ohlcv_features({k: v.copy() for k, v in b.items()}, "basic"))
    ext = dict(ohlcv_features({k: v.copy() for k, v in b.items()}, "extended"))
    assert list(basic) == list(OHLCV_SETS["basic"])
    for name in basic:
        np.testing.assert_array_equal(basic[name], ext[name])
    close_only = {"close": b["close"].copy()}
    names = [n for n, _ in ohlcv_features(close_only, "extended")]
    assert names == ohlcv_feature_names(close_only, "extended")
    assert names == ["ret_1", "ret_5", "ret_20", "volat_20", "ret_10", "ret_60", "volat_60"]


@pytest.mark.parametrize("which", ["basic", "extended"])
def test_features_are_past_only_within_their_lookback(which):
    b = bars(1)
    at = 75
    base = dict(ohlcv_features({k: v.copy() for k, v in b.items()}, which))
    assert ohlcv_lookback(base) == (60 if which == "extended" else 20)

    def moved(rows: slice, factor: float, cols: tuple[str, ...] = tuple(b)) -> dict:
        bb = {k: v.copy() for k, v in b.items()}
        for c in cols:
            bb[c][rows] *= factor
        return dict(ohlcv_features(bb, which))

    later = moved(slice(at + 1, None), 3.0)  # every later bar changes
    for name in base:
        np.testing.assert_array_equal(base[name][: at + 1], later[name][: at + 1], err_msg=name)
    for name in base:  # bars older than a feature's look-back do not reach it; the oldest does
        n = LOOKBACK[name]
        older = moved(slice(0, at - n), 5.0)
        np.testing.assert_allclose(base[name][at], older[name][at], rtol=1e-9, err_msg=name)
        edge = [
            moved(slice(at - n, at - n + 1), f, (c,))[name][at, 0] for f in (1.5, 0.5) for c in b
        ]
        assert any(abs(e - base[name][at, 0]) > 1e-9 for e in edge), name
