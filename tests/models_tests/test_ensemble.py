"""Seeds trained together: the grouped network equals M separate networks, and a fit of M
members equals M fits of one member each."""

from __future__ import annotations

import copy

import pytest
import torch

from data import DataConfig, Prepared, load_panel
from models import GroupedRecurrent, Member, Members, TrainParams, fit, to_floats, validate
from models.lstm import RecurrentNet
from tests.conftest import write_panel


def nets(cell: str, m: int = 3, layers: int = 2, head: int = 4) -> list[RecurrentNet]:
    out = []
    for seed in range(m):
        torch.manual_seed(seed)
        out.append(RecurrentNet(5, 1, 8, layers, dropout=0.0, head_dim=head, cell=cell))
    return out


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("layers,head", [(1, 0), (2, 4)])
def test_grouped_equals_separate_networks_through_training_steps(
    cell: str, layers: int, head: int
) -> None:
    base = nets(cell, layers=layers, head=head)
    sep, grp = Members(copy.deepcopy(base)), GroupedRecurrent(copy.deepcopy(base))
    opt_s = torch.optim.Adam(sep.parameters(), lr=1e-2)
    opt_g = torch.optim.Adam(grp.parameters(), lr=1e-2)
    torch.manual_seed(0)
    for _ in range(3):
        x = torch.randn(6, 3, 16, 5)  # (T, M, B, F): each member its own batch
        y = torch.randn(3, 16)
        for model, opt in ((sep, opt_s), (grp, opt_g)):
            out = model(x)
            assert out.shape == (3, 16)
            loss = ((out - y) ** 2).mean(1).sum()
            opt.zero_grad()
            loss.backward()
            model.clip_grad_norm_(0.05)
            opt.step()
        torch.testing.assert_close(sep(x), grp(x), atol=1e-5, rtol=1e-5)
    for a, b in zip(sep.to_nets(), grp.to_nets(), strict=True):
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            torch.testing.assert_close(pa, pb, atol=1e-5, rtol=1e-5)


def test_clipping_is_per_member() -> None:
    """A member with a huge gradient is clipped without shrinking the others' steps."""
    base = nets("lstm", m=2, layers=1, head=0)
    grp = GroupedRecurrent(copy.deepcopy(base))
    x = torch.randn(4, 2, 8, 5)
    out = grp(x)
    (out[0].sum() * 1e6 + out[1].sum() * 1e-3).backward()
    before = [p.grad.clone() for p in grp.parameters()]  # type: ignore[union-attr]
    grp.clip_grad_norm_(1.0)
    norms = torch.stack([g.pow(2).flatten(1).sum(1) for g in before]).sum(0).sqrt()
    after = torch.stack([p.grad.pow(2).flatten(1).sum(1) for p in grp.parameters()]).sum(0)  # type: ignore[union-attr]
    assert norms[0] > 1e3 and after[0].sqrt() == pytest.approx(1.0, rel=1e-4)
    assert norms[1] < 1.0 and after[1].sqrt() == pytest.approx(float(norms[1]), rel=1e-5)


@pytest.fixture
def prepared(tmp_path) -> Prepared:  # type: ignore[no-untyped-def]
    path = write_panel(tmp_path / "p.parquet", n_dates=90, n_ids=8, n_features=3)
    cfg = DataConfig(path=str(path), id="id", target="target", features=("f*",), folds=2)
    return Prepared(load_panel(cfg), cfg, torch.device("cpu"), eval_time_steps=4)


@pytest.mark.parametrize("grouped", [False, True])
def test_members_fit_equals_fits_one_by_one(prepared: Prepared, grouped: bool) -> None:
    """Seeds x folds trained together give each member exactly its lone training run."""
    p = TrainParams(time_steps=4, epochs=2, batch_size=32, lr=1e-2, max_windows_per_epoch=96)
    members = [Member(f, s) for f in range(2) for s in (11, 12)]

    def net(seed: int) -> RecurrentNet:
        torch.manual_seed(seed)
        return RecurrentNet(3, 1, 6, 1)

    together = [net(m.seed) for m in members]
    model = GroupedRecurrent(together) if grouped else Members(together)
    r = fit(model, prepared, p, members=members)
    alone = []
    for m in members:
        one = net(m.seed)
        fit(one, prepared, p, members=[m])
        alone.append(to_floats(validate(one, prepared, "val", p, [m]))[0])
    final = r.history[-1].members
    for a, b in zip(final, alone, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        assert a["rank_ic"] == pytest.approx(b["rank_ic"], abs=1e-4)
    # the epoch's value is the members' mean
    assert r.history[-1].val["loss"] == pytest.approx(sum(m["loss"] for m in final) / 4)
