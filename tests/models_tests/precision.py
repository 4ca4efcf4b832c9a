"""The check the precision tests share: one network trained in float32 and in a mixed
precision on the same data, the LSTM's dtypes in training and in validation observed."""

from __future__ import annotations

from dataclasses import replace

import torch

from data import Prepared
from models import TrainParams, fit
from models.lstm import RecurrentNet
from models.train import PRECISIONS


def check_mixed_against_fp32(
    data: Prepared, base: TrainParams, precision: str, hidden: int, rel: float = 0.02
) -> None:
    """Train one network in fp32 and in `precision` from the same initial weights: the
    mixed run's LSTM computed its training passes in that precision (the recurrence, not
    only the head) and its validation in float32, its weights stayed float32, and its best
    validation loss is fp32's within `rel`."""
    losses = {}
    for name in ("fp32", precision):
        torch.manual_seed(0)
        net = RecurrentNet(data.n_features, 1, hidden, 1)
        train: set[torch.dtype] = set()
        val: set[torch.dtype] = set()
        hook = net.rnn.register_forward_hook(
            lambda m, i, o, t=train, v=val: (t if m.training else v).add(o[0].dtype)
        )
        r = fit(net, data, replace(base, precision=name))
        hook.remove()
        assert train == {PRECISIONS[name] or torch.float32}, name
        assert val == {torch.float32}, name
        assert all(p.dtype == torch.float32 for p in net.parameters()), name
        losses[name] = r.best_val_loss
    assert abs(losses[precision] - losses["fp32"]) <= rel * abs(losses["fp32"]), losses
