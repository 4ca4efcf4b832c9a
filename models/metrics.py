"""Validation metrics as functions of (predictions, targets, dates, weights) tensors.

Everything stays on the device; the caller syncs once per epoch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def loss_fn(pred: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None, task: str) -> torch.Tensor:
    """Mean (weighted) loss of the last step: MSE for regression, cross-entropy for classes."""
    if task == "classification":
        per = F.cross_entropy(pred, y.long(), reduction="none")
    else:
        per = (pred - y) ** 2
    if w is None:
        return per.mean()
    return (per * w).sum() / w.sum().clamp_min(1e-12)


def mean_ic(
    pred: torch.Tensor, y: torch.Tensor, date: torch.Tensor, min_count: int = 5
) -> torch.Tensor:
    """Mean over dates of the cross-sectional Pearson correlation (information coefficient).

    Dates with fewer than `min_count` securities are left out; NaN when none is left.
    """
    _, inv = torch.unique(date, return_inverse=True)
    n_dates = int(inv.max()) + 1 if inv.numel() else 0
    if n_dates == 0:
        return torch.tensor(float("nan"), device=pred.device)

    def per_date(v: torch.Tensor) -> torch.Tensor:
        return torch.zeros(n_dates, device=pred.device, dtype=torch.float64).index_add_(
            0, inv, v.double()
        )

    n = per_date(torch.ones_like(pred))
    mp, my = per_date(pred) / n, per_date(y) / n
    dp, dy = pred.double() - mp[inv], y.double() - my[inv]
    cov = per_date(dp * dy)
    vp, vy = per_date(dp * dp), per_date(dy * dy)
    ic = cov / (vp * vy).sqrt()
    keep = (n >= min_count) & torch.isfinite(ic)
    return ic[keep].mean() if keep.any() else torch.tensor(float("nan"), device=pred.device)


def corr(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    p, t = pred.double() - pred.double().mean(), y.double() - y.double().mean()
    return (p * t).sum() / ((p * p).sum() * (t * t).sum()).sqrt()


def evaluate(
    pred: torch.Tensor,
    y: torch.Tensor,
    date: torch.Tensor,
    w: torch.Tensor | None,
    task: str,
    panel: bool,
) -> dict[str, torch.Tensor]:
    """Loss and quality metrics of one segment's predictions (device tensors, no sync)."""
    out = {"loss": loss_fn(pred, y, w, task)}
    if task == "classification":
        out["accuracy"] = (pred.argmax(-1) == y.long()).double().mean()
        score = pred.softmax(-1)[:, -1] if pred.shape[-1] == 2 else pred.argmax(-1).double()
    else:
        out["mse"] = out["loss"]
        score = pred
    if panel:
        out["ic"] = mean_ic(score, y, date)
    else:
        out["corr"] = corr(score, y)
    return out
