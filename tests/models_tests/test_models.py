"""The networks and the training loop: [T, B, F] windows, zero state, last step, clipping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from data import DataConfig, Prepared, load_panel
from models import TrainParams, build_model, fit, loss_fn, mean_ic
from models.lstm import RecurrentNet
from models.train import EpochResult, Report, to_floats, validate
from tests.conftest import write_panel


def net(name: str = "lstm", **kw: int) -> torch.nn.Module:
    torch.manual_seed(0)
    args = dict(
        n_features=3, n_outputs=1, hidden_dim=8, num_layers=2, dropout=0.0, head_dim=4, time_steps=5
    )
    args.update(kw)
    return build_model(name, **args).eval()  # type: ignore[arg-type]


def test_input_is_time_major_and_output_one_per_window() -> None:
    m = net()
    x = torch.randn(5, 7, 3)  # (T, B, F)
    assert m(x).shape == (7,)
    # time is dim 0: changing only the last step of window 2 changes only prediction 2
    y0 = m(x)
    x2 = x.clone()
    x2[-1, 2] += 1.0
    y1 = m(x2)
    changed = (y0 - y1).abs() > 1e-7
    assert changed.tolist() == [False, False, True, False, False, False, False]


def test_state_restarts_at_zero_for_every_window() -> None:
    m = net()
    x = torch.randn(5, 6, 3)
    batch = m(x)
    alone = torch.stack([m(x[:, i : i + 1])[0] for i in range(6)])
    torch.testing.assert_close(batch, alone)  # no state shared across windows or calls
    torch.testing.assert_close(m(x), batch)
    lstm = m.rnn  # type: ignore[union-attr]
    out, _ = lstm(x)
    h0 = torch.zeros(2, 6, 8)
    out0, _ = lstm(x, (h0, h0))
    torch.testing.assert_close(out, out0)


def test_head_reads_the_last_step() -> None:
    m = net()
    x = torch.randn(5, 4, 3)
    out, _ = m.rnn(x)  # type: ignore[union-attr]
    torch.testing.assert_close(m(x), m.head(out[-1]).squeeze(-1))  # type: ignore[operator]


def test_gru_and_mlp_share_the_interface() -> None:
    x = torch.randn(5, 4, 3)
    for name in ("gru", "mlp"):
        m = net(name, n_outputs=2, num_layers=1, head_dim=0)
        assert m(x).shape == (4, 2)
    with pytest.raises(
        ValueError, match=r"unknown model 'tcn'; valid names are \['gru', 'lstm', 'mlp'\]"
    ):
        net("tcn")


def test_losses() -> None:
    pred, y = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0])
    assert loss_fn(pred, y, None, "regression").item() == pytest.approx(2.5)
    assert loss_fn(pred, y, torch.tensor([1.0, 0.0]), "regression").item() == pytest.approx(1.0)
    logits = torch.tensor([[10.0, -10.0], [-10.0, 10.0]])
    assert loss_fn(logits, torch.tensor([0.0, 1.0]), None, "classification").item() < 1e-6


def test_mean_ic_by_hand() -> None:
    date = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    y = torch.tensor([1.0, 2, 3, 4, 5, 1, 2, 3, 4, 5])
    pred = torch.tensor([1.0, 2, 3, 4, 5, 5, 4, 3, 2, 1])  # +1 on date 0, -1 on date 1
    assert mean_ic(pred, y, date).item() == pytest.approx(0.0)
    assert mean_ic(y, y, date).item() == pytest.approx(1.0)
    assert np.isnan(mean_ic(pred, y, date, min_count=6).item())


@pytest.fixture
def prepared(tmp_path) -> Prepared:  # type: ignore[no-untyped-def]
    path = write_panel(tmp_path / "p.parquet", n_dates=80, n_ids=6, n_features=3)
    cfg = DataConfig(path=str(path), id="id", target="target", features=("f*",))
    return Prepared(load_panel(cfg), cfg, torch.device("cpu"))


def test_gradient_norm_is_clipped(prepared: Prepared) -> None:
    m = net("mlp", num_layers=1, head_dim=0, time_steps=4)
    before = torch.cat([p.detach().flatten().clone() for p in m.parameters()])
    p = TrainParams(
        time_steps=4, epochs=1, batch_size=10_000, lr=1.0, optimizer="sgd", grad_clip=1e-3, seed=0
    )
    fit(m, prepared, p)
    after = torch.cat([q.detach().flatten() for q in m.parameters()])
    # one SGD step of lr 1 with the gradient norm clipped to 1e-3 moves the weights by <= 1e-3
    assert 0 < (after - before).norm().item() <= 1e-3 + 1e-7


def test_fit_reports_every_epoch_and_tracks_the_best(prepared: Prepared) -> None:
    seen = []
    m = RecurrentNet(3, 1, hidden_dim=4)
    p = TrainParams(time_steps=4, epochs=3, batch_size=64, lr=1e-2, seed=0)
    r = fit(m, prepared, p, on_epoch=lambda e: seen.append((e.epoch, e.val_loss)), keep_best=True)
    assert [e for e, _ in seen] == [1, 2, 3] and r.epochs_run == 3
    assert r.best_val_loss == min(v for _, v in seen)
    assert seen[r.best_epoch - 1][1] == r.best_val_loss
    assert r.best_state is not None and set(r.best_state) == set(m.state_dict())


def test_validation_subset_is_fixed_and_the_value_scores_every_date(tmp_path) -> None:
    path = write_panel(tmp_path / "w.parquet", n_dates=200, n_ids=12, n_features=3)
    cfg = DataConfig(path=str(path), id="id", target="target", features=("f*",))
    data = Prepared(load_panel(cfg), cfg, torch.device("cpu"))
    full = data.ends("val", 4)
    S = data.n_securities
    by_date = data.ends("val", 4, max_dates=6)
    dates = sorted({int(e) // S for e in by_date})
    assert len(dates) <= 6 and set(by_date.tolist()) <= set(full.tolist())
    capped = data.ends("val", 4, max_dates=6, max_windows=20)
    assert len(capped) == 20 and set(capped.tolist()) <= set(by_date.tolist())
    assert capped.tolist() == sorted(capped.tolist())  # date order kept
    assert {int(e) // S for e in capped} <= set(dates)
    # fixed: another Prepared of the same data picks the same windows
    again = Prepared(load_panel(cfg), cfg, torch.device("cpu"))
    assert again.ends("val", 4, max_dates=6, max_windows=20).tolist() == capped.tolist()

    seen: list[EpochResult] = []
    m = RecurrentNet(3, 1, hidden_dim=4)
    p = TrainParams(
        time_steps=4, epochs=3, batch_size=64, lr=1e-2, seed=0, val_dates=6, val_windows=20
    )
    r = fit(m, data, p, on_epoch=seen.append, keep_best=True)
    n_val_dates = len({int(e) // S for e in full})
    assert all(e.val["dates"] <= 6 for e in seen)  # each report: the subset
    assert r.final is not None and r.best.val["dates"] == n_val_dates  # the value: every date
    # the value is the best epoch's weights scored on every validation date
    assert r.best_state is not None
    m2 = RecurrentNet(3, 1, hidden_dim=4)
    m2.load_state_dict(r.best_state)
    direct = to_floats(validate(m2, data, "val", p))[0]
    assert direct["loss"] == pytest.approx(r.best.val["loss"], rel=1e-6)
    assert all(e.train_seconds > 0 and e.val_seconds > 0 and e.windows > 0 for e in seen)


def test_reports_inside_epochs_only_look(prepared: Prepared) -> None:
    """`report_every` validates inside epochs at the multiples of it (the first batch end
    past each); the fit's weights and epochs are those of a fit without it."""
    p = TrainParams(
        time_steps=4,
        epochs=3,
        batch_size=32,
        lr=1e-2,
        seed=0,
        max_windows_per_epoch=96,
        report_every=40,
    )
    assert prepared.count("train", 4) > 96

    def trained(report: bool) -> tuple[list[EpochResult], list[Report], RecurrentNet]:
        torch.manual_seed(1)
        m = RecurrentNet(3, 1, hidden_dim=4, num_layers=2, dropout=0.3)  # dropout: its RNG
        epochs: list[EpochResult] = []
        reports: list[Report] = []
        fit(m, prepared, p, on_epoch=epochs.append, on_report=reports.append if report else None)
        return epochs, reports, m

    epochs, reports, m = trained(True)
    # 32 windows a batch, 96 an epoch: the first batch end at or past each multiple of 40,
    # except an epoch's last batch (80 -> 96 and 280 -> 288 report as epoch ends)
    assert [(r.epoch, r.done) for r in reports] == [(1, 64), (2, 128), (2, 160), (3, 224), (3, 256)]
    assert [e.done for e in epochs] == [96, 192, 288]
    assert [r.fraction for r in reports] == pytest.approx([2 / 3, 1 / 3, 2 / 3, 1 / 3, 2 / 3])
    assert [r.windows for r in reports] == [64, 32, 64, 32, 64]
    assert all(r.val["dates"] > 0 and math.isfinite(r.val["loss"]) for r in reports)
    assert all(r.val_seconds > 0 and r.train_seconds > 0 for r in reports)
    plain_epochs, none, plain = trained(False)
    assert none == []
    for a, b in zip(m.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert [e.val["loss"] for e in epochs] == [e.val["loss"] for e in plain_epochs]
    with pytest.raises(RuntimeError, match="stop here"):  # on_report may end the fit

        def stop(r: Report) -> None:
            raise RuntimeError("stop here")

        fit(RecurrentNet(3, 1, hidden_dim=4), prepared, p, on_report=stop)


def test_fit_says_where_it_stands_after_every_batch(prepared: Prepared) -> None:
    """`on_step` after each batch: epoch of planned, windows of the epoch trained, networks."""
    from models import Step

    p = TrainParams(
        time_steps=4, epochs=2, batch_size=40, lr=1e-2, seed=0, max_windows_per_epoch=96
    )
    steps: list[Step] = []
    fit(RecurrentNet(3, 1, hidden_dim=4), prepared, p, on_step=steps.append)
    assert [(s.epoch, s.trained) for s in steps] == [
        (1, 40),
        (1, 80),
        (1, 96),
        (2, 40),
        (2, 80),
        (2, 96),
    ]
    assert {(s.planned, s.per_epoch, s.networks) for s in steps} == {(2, 96, 1)}


def test_piecewise_linear_pieces_of_a_rank() -> None:
    from models.lstm import PiecewiseLinear

    enc = PiecewiseLinear(4)
    x = torch.tensor([-0.5, -0.3, 0.0, 0.2, 0.5, -2.0, 2.0])
    z = enc(x.view(1, 7, 1))  # (T=1, B=7, F=1) -> (1, 7, 4)
    assert z.shape == (1, 7, 4)
    expect = torch.tensor(
        [
            [0.0, 0.0, 0.0, 0.0],  # the lowest rank: no piece has begun
            [0.8, 0.0, 0.0, 0.0],  # 0.2 into the first quarter of width 0.25
            [1.0, 1.0, 0.0, 0.0],
            [1.0, 1.0, 0.8, 0.0],
            [1.0, 1.0, 1.0, 1.0],  # the highest rank: every piece full
            [0.0, 0.0, 0.0, 0.0],  # outside [-0.5, 0.5]: saturated
            [1.0, 1.0, 1.0, 1.0],
        ]
    )
    torch.testing.assert_close(z[0], expect)
    inside = z[0, :5].sum(-1)
    torch.testing.assert_close(inside, (x[:5] + 0.5) * 4)  # the pieces add up to the rank
    # features stay apart: (T, B, F) -> (T, B, F * K), feature f's pieces at [f*K, (f+1)*K)
    x3 = torch.rand(2, 5, 3) - 0.5
    z3 = enc(x3)
    assert z3.shape == (2, 5, 12)
    torch.testing.assert_close(z3[..., 4:8], enc(x3[..., 1:2]))
    assert not list(enc.parameters()) and "lo" not in enc.state_dict()


@pytest.mark.parametrize("name", ["lstm", "gru", "mlp"])
def test_input_bins_feed_the_network_pieces(name: str) -> None:
    m = net(name, input_bins=8)
    assert m.input_bins == 8  # type: ignore[union-attr]
    if name != "mlp":
        assert m.rnn.input_size == 3 * 8  # type: ignore[union-attr]
    x = torch.rand(5, 7, 3) - 0.5
    y = m(x)
    assert y.shape == (7,) and torch.isfinite(y).all()
    y.sum().backward()  # the pieces pass gradients to every weight
    assert all(p.grad is not None for p in m.parameters())
    # the same weights in a fresh network of the same arch give the same outputs
    twin = net(name, input_bins=8)
    twin.load_state_dict(m.state_dict())
    torch.testing.assert_close(twin(x), y.detach())
