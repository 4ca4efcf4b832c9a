"""Sequence models over windows X[T, B, F], their training loop and metrics."""

from __future__ import annotations

from models.lstm import MLPNet, RecurrentNet
from models.metrics import evaluate, loss_fn, mean_ic
from models.registry import MODELS, build_model
from models.train import (
    OPTIMIZERS,
    EpochResult,
    FitResult,
    Interrupted,
    NonFiniteLoss,
    TrainParams,
    fit,
    predict,
    validate,
)

__all__ = [
    "MODELS",
    "OPTIMIZERS",
    "EpochResult",
    "FitResult",
    "Interrupted",
    "MLPNet",
    "NonFiniteLoss",
    "RecurrentNet",
    "TrainParams",
    "build_model",
    "evaluate",
    "fit",
    "loss_fn",
    "mean_ic",
    "predict",
    "validate",
]
