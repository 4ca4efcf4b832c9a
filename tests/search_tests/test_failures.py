"""Faults injected into the real training of one trial (out of memory, NaN weights, a bug)
end that trial only (FAIL, or PRUNED for a non-finite loss) with the reason recorded; the
study goes on and every trial's model is freed."""

from __future__ import annotations

import gc
import itertools
import weakref
from typing import Any

import optuna
import torch

import search.study.objective as objective_module
from data import Prepared, fingerprint, load_panel
from search.config.schema import build_config
from search.storage.rdb import make_storage
from search.study.create import open_study
from search.study.objective import is_out_of_memory
from search.study.pruners import make_sampler, study_pruner
from search.study.runner import Stop, run_trials
from tests.search_tests.studyrun import load, study_toml, tiny_panel, unique_name

S = optuna.trial.TrialState
OOM = "CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.10 GiB total capacity)"


def test_oom_nan_and_errors_end_only_their_trial(tmp_path, monkeypatch):
    name = unique_name("faults")
    config = study_toml(tmp_path, name, data=tiny_panel(tmp_path), epochs=2)
    cfg = build_config(config, cpu=True)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    data = Prepared(load_panel(cfg.data), cfg.data, torch.device("cpu"))
    storage = make_storage(url)
    open_study(storage, cfg, fingerprint(cfg.data), make_sampler(cfg), study_pruner(cfg, data))

    real_fit = objective_module.fit
    calls = itertools.count()
    models: list[weakref.ref[Any]] = []

    def faulty_fit(model: torch.nn.Module, data: Prepared, tp: Any, **kw: Any) -> Any:
        k = next(calls)
        models.append(weakref.ref(model))
        if k == 1:  # the device runs out of memory in the first forward pass

            def oom(*_: Any) -> Any:
                raise torch.OutOfMemoryError(OOM)

            model.forward = oom  # type: ignore[method-assign]
        elif k == 2:  # the weights are NaN, so is the loss
            with torch.no_grad():
                for p in model.parameters():
                    p.fill_(float("nan"))
        elif k == 3:
            raise ValueError("a bug in the objective")
        return real_fit(model, data, tp, **kw)

    monkeypatch.setattr(objective_module, "fit", faulty_fit)
    events: list[dict[str, Any]] = []
    run_trials(
        cfg,
        url,
        data,
        n_trials=6,
        timeout=None,
        max_trials=None,
        on_trial=events.append,
        stop=Stop(),
    )
    study = load(url, name)
    expected = [S.COMPLETE, S.FAIL, S.PRUNED, S.FAIL, S.COMPLETE, S.COMPLETE]
    assert [t.state for t in study.trials] == expected
    assert [e["state"] for e in events] == [s.name for s in expected]
    oom, nan, bug = study.trials[1], study.trials[2], study.trials[3]
    assert oom.user_attrs["fail_reason"] == f"out of memory: {OOM}"
    assert "non-finite loss at epoch 1" in nan.user_attrs["prune_reason"]
    # the epoch that ended non-finite was trained whole, and the record counts it
    assert nan.user_attrs["epochs_run"] == 1 and nan.user_attrs["epochs_trained"] == 1
    assert nan.user_attrs["windows_trained"] > 0
    assert bug.user_attrs["fail_reason"] == "ValueError: a bug in the objective"
    assert events[1]["reason"].startswith("out of memory")
    assert all(t.user_attrs["epochs_run"] == 2 for t in study.trials if t.state == S.COMPLETE)
    gc.collect()
    assert len(models) == 6 and all(r() is None for r in models)


def test_out_of_memory_is_recognised():
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert is_out_of_memory(RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))
