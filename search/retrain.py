"""Retrain a study's best params, save a checkpoint, and predict with it.

A checkpoint holds only tensors and plain containers of strings and numbers, so it loads
with `torch.load(..., weights_only=True)`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import polars as pl
import torch

from data import DataConfig, DataError, Prepared, fingerprint, load_panel
from data.normalize import apply
from data.windows import gather, run_lengths, window_ends
from models import TrainParams, build_model, fit, validate
from search.export import ExportError, best_record, versions

FORMAT = "lstm-panel-search/1"


def data_config(settings: dict[str, Any], path: str) -> DataConfig:
    s = dict(settings)
    s["features"] = tuple(s.get("features") or ())
    s.pop("path", None)
    return DataConfig(path=path, **s)


def _finite(d: dict[str, torch.Tensor]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for k, v in d.items():
        f = float(v)
        out[k] = f if math.isfinite(f) else None
    return out


def train_best(
    study: optuna.Study,
    out: Path,
    device: torch.device,
    data_path: str | None = None,
    seed: int | None = 0,
) -> dict[str, Any]:
    """Retrain the best trial's params on the study's data; save the best-epoch weights."""
    rec = best_record(study)
    config = rec["config"]
    if not config:
        raise ExportError(f"study {study.study_name!r} holds no config: not made by optuna-run")
    cfg = data_config(config["data"], data_path or config["data"]["path"])
    params = rec["params"]
    panel = load_panel(cfg)
    same_data = fingerprint(cfg) == rec["data_fingerprint"]
    data = Prepared(panel, cfg, device)
    T = int(params["time_steps"])
    budget = config["budget"]
    tp = TrainParams(
        time_steps=T,
        epochs=int(params["epochs"]),
        batch_size=int(params["batch_size"]),
        lr=float(params["lr"]),
        weight_decay=float(params["weight_decay"]),
        optimizer=str(params["optimizer"]),
        grad_clip=float(params["grad_clip"]),
        max_windows_per_epoch=int(budget["max_windows_per_epoch"]),
        eval_batch_size=int(budget["eval_batch_size"]),
        patience=int(budget["patience"]),
        seed=seed,
    )
    if seed is not None:
        torch.manual_seed(seed)
    arch: dict[str, Any] = {
        "name": str(params["model"]),
        "n_features": data.n_features,
        "n_outputs": cfg.n_classes if cfg.task == "classification" else 1,
        "hidden_dim": int(params["hidden_dim"]),
        "num_layers": int(params["num_layers"]),
        "dropout": float(params["dropout"]),
        "head_dim": int(params["head_dim"]),
        "time_steps": T,
    }
    model = build_model(arch["name"], **{k: v for k, v in arch.items() if k != "name"})
    result = fit(model, data, tp, keep_best=True)
    assert result.best_state is not None
    model.load_state_dict(result.best_state)
    metrics = {"val": _finite(validate(model, data, "val", tp))}
    if data.count("test", T):
        metrics["test"] = _finite(validate(model, data, "test", tp))
    ckpt = {
        "format": FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "model": arch,
        "params": params,
        "data": {**cfg.settings(), "path": cfg.path},
        "feature_names": list(panel.feature_names),
        "scaler": {
            "center": torch.as_tensor(data.scaler.center),
            "scale": torch.as_tensor(data.scaler.scale),
            "clip": float(data.scaler.clip),
        },
        "metrics": metrics,
        "best_epoch": result.best_epoch,
        "study_name": study.study_name,
        "trial_number": rec["trial_number"],
        "study_value": rec["value"],
        "data_fingerprint": fingerprint(cfg),
        "same_data_as_study": same_data,
        "versions": versions(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    torch.save(ckpt, tmp)
    tmp.replace(out)
    return ckpt


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise DataError(f"{path}: model file not found (--model)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise DataError(f"{path}: not a model checkpoint: {str(e).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise DataError(f"{path}: not a checkpoint written by `optuna-run train`")
    return ckpt


def predict_file(
    ckpt: dict[str, Any], data_path: str, dates: str, device: torch.device
) -> pl.DataFrame:
    """Predictions for every window of `time_steps` valid dates ending on the chosen dates.

    `dates`: "last" (the file's last date, a submission for the next horizon), "test" (the
    test segment of the study's split, with targets to score) or "all".
    """
    cfg = data_config(ckpt["data"], data_path)
    panel = load_panel(cfg)
    if list(panel.feature_names) != list(ckpt["feature_names"]):
        raise DataError(
            f"{data_path}: features {panel.feature_names} differ from the model's "
            f"{ckpt['feature_names']}"
        )
    arch = dict(ckpt["model"])
    model = build_model(arch.pop("name"), **arch)
    model.load_state_dict(ckpt["state_dict"])
    model.to(device).eval()
    T = int(ckpt["model"]["time_steps"])
    D, S, _ = panel.values.shape
    if dates == "last":
        segment = range(D - 1, D)
    elif dates == "test":
        segment = Prepared(panel, cfg, torch.device("cpu")).split.test
    else:
        segment = range(0, D)
    ends = window_ends(run_lengths(panel.valid), panel.valid, T, segment)
    values = torch.as_tensor(panel.values).to(device)  # (D, S, F)
    center = ckpt["scaler"]["center"].to(device)
    scale = ckpt["scaler"]["scale"].to(device)
    e_t = torch.as_tensor(ends).to(device)
    preds = []
    with torch.inference_mode():
        for i in range(0, len(e_t), 8192):
            e = e_t[i : i + 8192]
            x = apply(gather(values, e, T), center, scale, ckpt["scaler"]["clip"])  # (T, B, F)
            preds.append(model(x))
    pred = torch.cat(preds).cpu().numpy() if preds else np.zeros(0)
    d, s = ends // S, ends % S
    cols: dict[str, Any] = {
        cfg.date if not cfg.order else cfg.order: panel.dates[d],
    }
    if cfg.id:
        cols[cfg.id] = panel.ids[s]
    if pred.ndim == 2:
        for k in range(pred.shape[1]):
            cols[f"prob_{k}"] = torch.as_tensor(pred).softmax(-1)[:, k].numpy()
        cols["prediction"] = pred.argmax(-1)
    else:
        cols["prediction"] = pred
    cols["target"] = panel.target[d, s]
    return pl.DataFrame(cols)
