"""Model registry: a plain dict from name to builder."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from models.lstm import MLPNet, RecurrentNet


def _lstm(**kw: int | float) -> nn.Module:
    kw.pop("time_steps", None)
    return RecurrentNet(cell="lstm", **kw)  # type: ignore[arg-type]


def _gru(**kw: int | float) -> nn.Module:
    kw.pop("time_steps", None)
    return RecurrentNet(cell="gru", **kw)  # type: ignore[arg-type]


def _mlp(**kw: int | float) -> nn.Module:
    return MLPNet(**kw)  # type: ignore[arg-type]


MODELS: dict[str, Callable[..., nn.Module]] = {"lstm": _lstm, "gru": _gru, "mlp": _mlp}


def build_model(
    name: str,
    *,
    n_features: int,
    n_outputs: int,
    hidden_dim: int,
    num_layers: int,
    dropout: float,
    head_dim: int,
    time_steps: int,
    input_bins: int = 0,
) -> nn.Module:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names are {sorted(MODELS)}")
    return MODELS[name](
        n_features=n_features,
        n_outputs=n_outputs,
        hidden_dim=hidden_dim,
        num_layers=num_layers,
        dropout=dropout,
        head_dim=head_dim,
        time_steps=time_steps,
        input_bins=input_bins,
    )
