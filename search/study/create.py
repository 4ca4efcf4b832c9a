"""Create or resume a study, refusing to mix trials of incompatible settings."""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict
from typing import Any

import optuna

from data.errors import plural
from search.config.schema import BudgetConfig, RunConfig
from search.storage.locks import study_lock


class IncompatibleStudy(ValueError):
    """The existing study was made with another direction, objective, space or data."""


def study_spec(cfg: RunConfig, data_fingerprint: str) -> dict[str, Any]:
    """What makes two trials comparable: trials of different specs never share a study."""
    return {
        "direction": ",".join(cfg.study.directions),
        "objective": cfg.study.objective,
        "space": cfg.space.as_dict(),
        "data_fingerprint": data_fingerprint,
        "budget": asdict(cfg.budget),
        "seeds": cfg.search.seeds,
    }


def _canon(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=str)


def spec_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = []
    old = dict(old)
    predates: set[str] = set()  # budget keys added after the study was made
    if isinstance(old.get("budget"), dict) and isinstance(new.get("budget"), dict):
        # a study made before a budget key existed ran with that key's default
        predates = set(asdict(BudgetConfig())) - set(old["budget"])
        old["budget"] = {**asdict(BudgetConfig()), **old["budget"]}
        for k in sorted(set(old["budget"]) | set(new["budget"])):
            o, n = old["budget"].get(k), new["budget"].get(k)
            if _canon(o) != _canon(n):
                hint = (
                    f" (the study predates [budget] {k}; set {k} = {o!r} in [budget], and "
                    "in [cpu.budget] on a CPU, to resume it)"
                    if k in predates
                    else ""
                )
                out.append(f"[budget] {k}: study has {o!r}, this run has {n!r}{hint}")
    for key in ("direction", "objective", "data_fingerprint", "seeds"):
        if _canon(old.get(key)) != _canon(new.get(key)):
            out.append(f"{key}: study has {old.get(key)!r}, this run has {new.get(key)!r}")
    o_space, n_space = old.get("space", {}), new.get("space", {})
    for name in sorted(set(o_space) | set(n_space)):
        if _canon(o_space.get(name)) != _canon(n_space.get(name)):
            out.append(
                f"space.{name}: study has {o_space.get(name)!r}, this run has {n_space.get(name)!r}"
            )
    return out


def data_differences(old: Any, cfg: RunConfig) -> str:
    """What changed in the data since the study was made: the [data] settings that differ,
    else the file's content (the fingerprint hashes both)."""
    new = cfg.to_dict().get("data", {})
    if not isinstance(old, dict):
        return "data: the study was made from other data (its settings were not recorded)"
    keys = [k for k in sorted(set(old) | set(new)) if k != "path"]
    changed = [
        f"[data] {k}: study has {old.get(k)!r}, this run has {new.get(k)!r}"
        for k in keys
        if _canon(old.get(k)) != _canon(new.get(k))
    ]
    if changed:
        return "; ".join(changed)
    where = (
        f" (study: {old.get('path')}, this run: {new.get('path')})"
        if old.get("path") != new.get("path")
        else f" ({new.get('path')})"
    )
    return f"data: the file's content differs from the study's{where}"


def open_study(
    storage: optuna.storages.BaseStorage,
    cfg: RunConfig,
    data_fingerprint: str,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
) -> optuna.Study:
    """Create the study, or load it if it exists and was made with the same spec."""
    name = cfg.study.name
    spec = study_spec(cfg, data_fingerprint)
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        directions=[optuna.study.StudyDirection[d.upper()] for d in cfg.study.directions],
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    old = study.user_attrs.get("spec")
    if old is None:
        # read again and set under the study's lock: of two processes making the study in
        # the same instant, one records its spec and the other is checked against it
        with study_lock(storage, study._study_id):
            old = storage.get_study_user_attrs(study._study_id).get("spec")
            if old is None:
                if study.trials:
                    raise IncompatibleStudy(
                        f"study {name!r} exists with {plural(len(study.trials), 'trial')} but was not "
                        "made by optuna-run (no spec recorded); choose another --study-name"
                    )
                # the config (what a refused process's message reads: the [data] key that
                # differs) before the spec, which another process may read without the lock
                study.set_user_attr("config", cfg.to_dict())
                _set_objective_names(study, list(cfg.study.objectives))
                study.set_user_attr("spec", spec)
    if old is None:
        # the configurations to try first, queued by the process that recorded the spec
        # (outside the lock: a trial's creation takes it)
        for params in queued_params(cfg):
            study.enqueue_trial(params, skip_if_exists=True)
        return study
    diff = spec_differences(old, spec)
    if any(d.startswith("data_fingerprint:") for d in diff):
        detail = data_differences(study.user_attrs.get("config", {}).get("data"), cfg)
        diff = [detail if d.startswith("data_fingerprint:") else d for d in diff]
    if diff:
        raise IncompatibleStudy(
            f"study {name!r} was made with other settings, so its trials cannot be mixed with "
            f"this run's: {'; '.join(diff)}. Use another --study-name, or the study's settings"
        )
    _requeue_interrupted(study, storage, cfg)
    return study


def queued_params(cfg: RunConfig) -> list[dict[str, Any]]:
    """The params [[search.enqueue]] queues: an entry whose params the space all fixes has
    nothing left to queue."""
    return [params for entry in cfg.search.enqueue if (params := cfg.space.searched(entry))]


REQUEUED = "requeued_interrupted"  # study user attr: the queued trials already queued again


def _requeue_interrupted(study: optuna.Study, storage: Any, cfg: RunConfig) -> None:
    """Queue again each configuration of [[search.enqueue]] whose every trial so far was
    ended by a Ctrl-C or SIGTERM (FAIL, "interrupted ..."): a resumed study still tries it
    first. Decided under the study's lock and recorded in the study (REQUEUED), so of
    several processes resuming at once one queues it; queued outside the lock, as a trial's
    creation takes it. Through the proxy (no lock) two processes resuming in the same
    instant may both queue it: one trial more, nothing lost."""
    wanted = queued_params(cfg)
    if not wanted:
        return
    todo = []
    with study_lock(storage, study._study_id):
        done = set(storage.get_study_user_attrs(study._study_id).get(REQUEUED, []))
        trials = study.get_trials(deepcopy=False)
        for params in wanted:
            mine = [t for t in trials if t.system_attrs.get("fixed_params") == params]
            cut = [
                t
                for t in mine
                if t.state == optuna.trial.TrialState.FAIL
                and str(t.user_attrs.get("fail_reason", "")).startswith("interrupted")
            ]
            if mine and len(cut) == len(mine) and mine[-1].number not in done:
                todo.append(params)
                done.add(mine[-1].number)
        if todo:
            study.set_user_attr(REQUEUED, sorted(done))
    for params in todo:
        study.enqueue_trial(params)


def _set_objective_names(study: optuna.Study, names: list[str]) -> None:
    """Label the objectives in the dashboard."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(names)
