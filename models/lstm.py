"""Recurrent regressors/classifiers over one window X[T, B, F]; the head reads the last step."""

from __future__ import annotations

import torch
from torch import nn


class RecurrentNet(nn.Module):
    """nn.LSTM (or nn.GRU) -> last step's output -> linear head, or one hidden layer of
    `head_dim` units. The hidden state starts at zero for every window (no state is carried
    between windows or batches)."""

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        hidden_dim: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        head_dim: int = 0,
        cell: str = "lstm",
    ) -> None:
        super().__init__()
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = rnn(
            n_features, hidden_dim, num_layers, dropout=dropout if num_layers > 1 else 0.0
        )
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
        out, _ = self.rnn(x)  # (T, B, H); zero initial state
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
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features * time_steps
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
        T, B, F = x.shape
        y = self.net(x.permute(1, 0, 2).reshape(B, T * F))  # (B, n_outputs)
        return y.squeeze(-1) if self.n_outputs == 1 else y
