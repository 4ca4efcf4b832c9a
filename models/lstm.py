"""Recurrent regressors/classifiers over one window X[T, B, F]; the head reads the last step."""

from __future__ import annotations

import torch
from torch import nn


class PiecewiseLinear(nn.Module):
    """Each feature in [-0.5, 0.5] (a per-date rank) as `bins` ramps: piece k rises from 0 to
    1 across the k-th of `bins` equal intervals, so (T, B, F) -> (T, B, F * bins) and the
    pieces of a value sum to bins x (its rank + 0.5). A linear layer on the pieces is any
    piecewise-linear function of each rank: the network can treat the tails of a feature
    apart from its middle, which one weight per raw feature cannot. A value outside
    [-0.5, 0.5] saturates (every piece 0 below, every piece 1 above). No parameters."""

    lo: torch.Tensor

    def __init__(self, bins: int) -> None:
        super().__init__()
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        self.bins = bins
        self.register_buffer("lo", torch.linspace(-0.5, 0.5, bins + 1)[:-1], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = ((x.unsqueeze(-1) - self.lo.to(x.dtype)) * self.bins).clamp(0.0, 1.0)
        return z.flatten(-2)


def _encoder(n_features: int, input_bins: int) -> tuple[nn.Module, int]:
    """The input module and the width it hands on: the raw features, or their pieces."""
    if input_bins > 0:
        return PiecewiseLinear(input_bins), n_features * input_bins
    return nn.Identity(), n_features


class RecurrentNet(nn.Module):
    """[the features as `input_bins` pieces each ->] nn.LSTM (or nn.GRU) -> last step's
    output -> linear head, or one hidden layer of `head_dim` units. The hidden state starts
    at zero for every window (no state is carried between windows or batches)."""

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        hidden_dim: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        head_dim: int = 0,
        cell: str = "lstm",
        input_bins: int = 0,
    ) -> None:
        super().__init__()
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.input_bins = input_bins
        self.encode, width = _encoder(n_features, input_bins)
        self.rnn = rnn(width, hidden_dim, num_layers, dropout=dropout if num_layers > 1 else 0.0)
        if head_dim > 0:
            self.head: nn.Module = nn.Sequential(
                nn.Dropout(dropout),
                nn.Linear(hidden_dim, head_dim),
                nn.ReLU(),
                nn.Linear(head_dim, n_outputs),
            )
        else:
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_dim, n_outputs))
        self.n_outputs = n_outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.encode(x))  # (T, B, H); zero initial state
        y = self.head(out[-1])  # (B, n_outputs)
        return y.squeeze(-1) if self.n_outputs == 1 else y


class MLPNet(nn.Module):
    """Baseline: an MLP on the flattened window (no recurrence)."""

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        hidden_dim: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        head_dim: int = 0,
        time_steps: int = 1,
        input_bins: int = 0,
    ) -> None:
        super().__init__()
        self.input_bins = input_bins
        self.encode, width = _encoder(n_features, input_bins)
        width *= time_steps
        layers: list[nn.Module] = []
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden_dim), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden_dim
        if head_dim > 0:
            layers += [nn.Linear(width, head_dim), nn.ReLU()]
            width = head_dim
        layers.append(nn.Linear(width, n_outputs))
        self.net = nn.Sequential(*layers)
        self.n_outputs = n_outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.encode(x)
        T, B, F = x.shape
        y = self.net(x.permute(1, 0, 2).reshape(B, T * F))  # (B, n_outputs)
        return y.squeeze(-1) if self.n_outputs == 1 else y
