"""Sequence models over windows X[T, B, F], their training loop and metrics."""

from __future__ import annotations

from models.ensemble import (
    GroupedRecurrent,
    Members,
    average_prediction,
    group,
    per_date_average,
    per_date_zscore,
)
from models.lstm import MLPNet, RecurrentNet
from models.metrics import OBJECTIVES, evaluate, loss_fn, mean_ic
from models.registry import MODELS, build_model
from models.train import (
    OPTIMIZERS,
    EpochResult,
    FitResult,
    Interrupted,
    Member,
    NonFiniteLoss,
    Report,
    Step,
    TrainParams,
    fit,
    predict,
    predict_members,
    to_floats,
    validate,
)

__all__ = [
    "OBJECTIVES",
    "GroupedRecurrent",
    "Member",
    "Members",
    "average_prediction",
    "per_date_average",
    "per_date_zscore",
    "group",
    "predict_members",
    "to_floats",
    "MODELS",
    "OPTIMIZERS",
    "EpochResult",
    "FitResult",
    "Interrupted",
    "MLPNet",
    "NonFiniteLoss",
    "RecurrentNet",
    "Report",
    "Step",
    "TrainParams",
    "build_model",
    "evaluate",
    "fit",
    "loss_fn",
    "mean_ic",
    "predict",
    "validate",
]
