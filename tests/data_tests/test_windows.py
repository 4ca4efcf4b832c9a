"""Window end points and gathered batches, checked by hand on a 6-date x 3-security panel."""

from __future__ import annotations

import numpy as np
import torch

from data import Prepared, gather, run_lengths, window_ends
from tests.data_tests.panels import f0, load, long_file


def gap_panel(tmp_path):
    """f0 = d * 100 + s; (2, 1) absent, (4, 2) not tradable; target 1 everywhere else."""
    path = long_file(
        tmp_path / "gaps.parquet",
        6,
        3,
        {"f0": f0, "target": lambda d, s: 1.0, "ok": lambda d, s: (d, s) != (4, 2)},
        drop={(2, 1)},
    )
    return load(path, tradable="ok")


def test_run_lengths_restart_after_every_gap(tmp_path):
    panel, _ = gap_panel(tmp_path)
    runs = run_lengths(panel.valid)
    assert runs.T.tolist() == [
        [1, 2, 3, 4, 5, 6],
        [1, 2, 0, 1, 2, 3],
        [1, 2, 3, 4, 0, 1],
    ]


def test_window_ends_values_and_order_by_hand(tmp_path):
    panel, _ = gap_panel(tmp_path)
    ends = window_ends(run_lengths(panel.valid), panel.labelled, 3, range(0, 6))
    # (d, s) sorted by date then security; flat index d * 3 + s
    pairs = [(2, 0), (2, 2), (3, 0), (3, 2), (4, 0), (5, 0), (5, 1)]
    assert ends.tolist() == [d * 3 + s for d, s in pairs]
    x = gather(torch.as_tensor(panel.values), torch.as_tensor(ends), 3)  # (T, B, F)
    assert x.shape == (3, 7, 1)
    assert x[:, :, 0].T.tolist() == [
        [0, 100, 200],
        [2, 102, 202],
        [100, 200, 300],
        [102, 202, 302],
        [200, 300, 400],
        [300, 400, 500],
        [301, 401, 501],
    ]


def test_no_window_crosses_a_gap(tmp_path):
    panel, _ = gap_panel(tmp_path)
    runs = run_lengths(panel.valid)
    for T in (1, 2, 3, 4):
        ends = window_ends(runs, panel.labelled, T, range(0, 6))
        d, s = ends // 3, ends % 3
        for t in range(T):
            assert panel.valid[d - t, s].all(), (T, t)
        # and every window of T valid dates with a label is there
        n = sum(
            panel.labelled[dd, ss] and dd >= T - 1 and panel.valid[dd - T + 1 : dd + 1, ss].all()
            for dd in range(6)
            for ss in range(3)
        )
        assert len(ends) == n
    # security 1 has no 4 consecutive valid dates and security 2 lost its run at d = 4
    ends = window_ends(runs, panel.labelled, 4, range(0, 6))
    assert [(int(e) // 3, int(e) % 3) for e in ends] == [(3, 0), (3, 2), (4, 0), (5, 0)]


def test_windows_end_only_inside_the_given_dates_and_thin_by_stride(tmp_path):
    panel, _ = gap_panel(tmp_path)
    runs = run_lengths(panel.valid)
    ends = window_ends(runs, panel.labelled, 2, range(3, 5))
    assert sorted({int(e) // 3 for e in ends}) == [3, 4]
    ends = window_ends(runs, panel.labelled, 1, range(1, 6), stride=2)
    assert sorted({int(e) // 3 for e in ends}) == [1, 3, 5]


def test_batch_gathers_windows_targets_and_fills_missing_after_scaling(tmp_path):
    # 10 dates x 2 securities; f1 is missing at (5, 1); target = d + s / 10
    path = long_file(
        tmp_path / "p.parquet",
        10,
        2,
        {
            "f0": f0,
            "f1": lambda d, s: None if (d, s) == (5, 1) else float(d + s),
            "target": lambda d, s: d + s / 10,
        },
    )
    panel, cfg = load(path, val_frac=0.3, test_frac=0.0)
    data = Prepared(panel, cfg, torch.device("cpu"))
    assert (data.split.train, data.split.val) == (range(0, 6), range(7, 10))
    ends = data.ends("train", 3)
    assert ends.tolist() == [4, 5, 6, 7, 8, 9, 10, 11]  # d = 2..5, both securities
    b = data.batch(ends[[7, 0]], 3)  # windows ending at (5, 1) and (2, 0)
    assert b.x[:, :, 0].T.tolist() == [[301, 401, 501], [0, 100, 200]]  # raw: normalize none
    assert b.x[:, 0, 1].tolist() == [4, 5, 0]  # the missing value is filled with 0
    assert np.allclose(b.y.numpy(), [5.1, 2.0])
    assert b.date.tolist() == [5, 2]
    assert data.ends("val", 3).tolist() == [14, 15, 16, 17, 18, 19]

    robust, cfg = load(path, val_frac=0.3, test_frac=0.0, normalize="robust")
    data = Prepared(robust, cfg, torch.device("cpu"))
    x = data.batch(data.ends("train", 3)[[7]], 3).x  # (T, 1, F)
    assert x[2, 0, 1].item() == 0.0  # NaN -> 0, the feature's centre, after scaling
    assert x[0, 0, 1].item() != 0.0 and x[1, 0, 1].item() != 0.0
    assert x.abs().max().item() <= cfg.clip


def test_the_end_points_kept_are_the_most_recent_ones(tmp_path):
    """Trials draw many time_steps; the end points of only the last 16 asked for are kept (on
    the device, and the index's), the ones still in use found again, the others rebuilt
    equal."""
    path = long_file(tmp_path / "p.parquet", 40, 3, {"f0": f0, "target": lambda d, s: 1.0})
    panel, cfg = load(path, val_frac=0.2, test_frac=0.2)
    data = Prepared(panel, cfg, torch.device("cpu"))
    first = {t: data.ends("train", t) for t in range(1, 25)}
    assert len(data._ends) == 16 and len(data.windows._cache) == 16
    again = data.ends("train", 9)
    assert again is first[9]  # still kept: the same tensor
    rebuilt = data.ends("train", 1)
    assert rebuilt is not first[1] and torch.equal(rebuilt, first[1])
    assert len(data._ends) == 16
    assert data.ends("train", 9) is first[9]  # used since: kept over older ones (10, ...)
    assert data.ends("train", 10) is not first[10]
    # validation windows are of max(time_steps, eval_time_steps) dates: one set for them all
    wide = Prepared(panel, cfg, torch.device("cpu"), eval_time_steps=6)
    assert wide.ends("val", 2) is wide.ends("val", 6) is not wide.ends("val", 7)
