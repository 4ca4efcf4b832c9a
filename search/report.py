"""What a person sees while a study runs: a progress bar, a line per finished trial, a summary."""

from __future__ import annotations

import math
import sys
from typing import Any

import optuna
from tqdm import tqdm

from search.storage import describe


def trial_event(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """A finished trial as a plain dict (sent between processes)."""
    attrs = trial.user_attrs
    secs = (
        (trial.datetime_complete - trial.datetime_start).total_seconds()
        if trial.datetime_complete and trial.datetime_start
        else attrs.get("train_seconds", 0.0)
    )
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.value,
        "epochs": attrs.get("epochs_run"),
        "best_epoch": attrs.get("best_epoch"),
        "seconds": secs,
        "params": trial.params,
        "reason": attrs.get("fail_reason") or attrs.get("prune_reason"),
    }


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


class Reporter:
    """Progress bar (trials done / requested, best so far, ETA) and one line per trial."""

    def __init__(self, total: int | None, direction: str = "minimize", quiet: bool = False):
        self.counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0}
        self.best: float | None = None
        self.best_number: int | None = None
        self.quiet = quiet
        self.bar = tqdm(
            total=total,
            desc="trials",
            unit="trial",
            file=sys.stderr,
            dynamic_ncols=True,
            disable=quiet,
            mininterval=0.5,
        )
        self.sign = 1 if direction == "minimize" else -1

    def trial(self, ev: dict[str, Any]) -> None:
        state = ev["state"]
        self.counts[state] = self.counts.get(state, 0) + 1
        v = ev.get("value")
        if (
            state == "COMPLETE"
            and v is not None
            and math.isfinite(v)
            and (self.best is None or self.sign * v < self.sign * self.best)
        ):
            self.best, self.best_number = v, ev["number"]
        params = " ".join(f"{k}={_fmt(x)}" for k, x in ev["params"].items())
        value = "-" if v is None else f"{v:.6g}"
        line = (
            f"trial {ev['number']:>4} {state:<8} value={value} epochs={ev.get('epochs')} "
            f"best_epoch={ev.get('best_epoch')} {ev.get('seconds', 0):.1f}s  {params}"
        )
        if ev.get("reason") and state != "COMPLETE":
            line += f"  [{ev['reason']}]"
        self.write(line)
        if self.best is not None:
            self.bar.set_postfix_str(f"best={self.best:.6g} (#{self.best_number})", refresh=False)
        self.bar.update(1)

    def write(self, line: str) -> None:
        if self.quiet:
            print(line, file=sys.stderr)
        else:
            self.bar.write(line, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()

    def summary(self, study: optuna.Study, url: str, interrupted: bool = False) -> str:
        states = [t.state for t in study.get_trials(deepcopy=False)]
        n = {s.name: states.count(s) for s in optuna.trial.TrialState}
        lines = [
            "",
            f"study {study.study_name!r}: this run finished {sum(self.counts.values())} trials "
            f"({self.counts['COMPLETE']} complete, {self.counts['PRUNED']} pruned, "
            f"{self.counts['FAIL']} failed)" + ("; interrupted" if interrupted else ""),
            f"in the study: {len(states)} trials ({n['COMPLETE']} complete, {n['PRUNED']} pruned, "
            f"{n['FAIL']} failed, {n['RUNNING']} running)",
        ]
        try:
            best = study.best_trial
            params = ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items())
            lines.append(
                f"best: trial {best.number} value={best.value:.6g} "
                f"(epoch {best.user_attrs.get('best_epoch')}) {params}"
            )
        except ValueError:
            lines.append("best: no complete trial yet")
        lines.append(f"storage: {describe(url)}")
        dash_url = url if not url.startswith("sqlite:///") else "sqlite:///" + describe(url)
        from search.storage import mask

        if url.startswith("grpc://"):  # the dashboard reads the database, not the proxy
            lines.append("view it: optuna-dashboard DATABASE_URL (the proxy's --storage)")
        else:
            lines.append(f"view it: optuna-dashboard {mask(dash_url)}")
        lines.append(
            f"export:  optuna-run export --study-name {study.study_name} "
            f"--out studies/{study.study_name}-best.json"
        )
        return "\n".join(lines)
