"""What a person sees while a study runs: a line per finished trial, a progress bar on a
terminal or a periodic status line elsewhere (a file, a pipe), and a summary."""

from __future__ import annotations

import math
import os
import shlex
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import optuna
from tqdm import tqdm

from data.errors import plural
from search.config.paths import name_stem, study_file, study_flag
from search.storage.rdb import describe
from search.storage.urls import storage_flag


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
        "value": trial.values[0] if trial.values else None,
        "values": list(trial.values) if trial.values else None,
        "epochs": attrs.get("epochs_trained", attrs.get("epochs_run")),
        "best_epoch": attrs.get("best_epoch"),
        "seconds": secs,
        # by name: a trial read back through the proxy holds its params in no set order
        "params": dict(sorted(trial.params.items())),
        "reason": attrs.get("fail_reason") or attrs.get("prune_reason"),
    }


def best_lines(study: optuna.Study, flag: str = "") -> list[str]:
    """The best trial (or the Pareto front), and the confirmed winner when there is one;
    `flag` goes into the commands it prints (their --storage)."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if not done:
        return ["best: no complete trial yet"]
    out = []
    if len(study.directions) > 1:
        front = study.best_trials
        out.append(f"Pareto front: {plural(len(front), 'trial')} {[t.number for t in front]}")
    else:
        best = study.best_trial
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(best.params.items()))
        spread = best.user_attrs.get("seed_std")
        epoch = best.user_attrs.get("best_epoch")
        out.append(
            f"best: trial {best.number} value={best.value:.6g}"
            + (f" (seed spread {spread:.3g})" if spread else "")
            + (f" (epoch {epoch})" if epoch is not None else "")
            + f" {params}"
        )
    confirmed = study.user_attrs.get("confirm")
    if confirmed:
        w = confirmed["trials"][str(confirmed["winner"])]
        out.append(
            f"confirmed winner: trial {confirmed['winner']} mean {w['mean']:.6g} +- "
            f"{w['std']:.2g} over {confirmed['seeds']} seeds"
        )
    elif len(study.directions) > 1:  # no single best: the person picks one of the front
        out.append(
            f"next: optuna-run train {study_flag(study.study_name)}{flag} --trial N "
            "(N a trial of the Pareto front)"
        )
    else:
        out.append(
            f"next: optuna-run confirm {study_flag(study.study_name)}{flag} "
            "(re-trains the best trials with fresh seeds) and optuna-run train"
        )
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def trial_line(ev: dict[str, Any]) -> str:
    """A finished trial in one line: number, state, value, epochs and the best one (when
    there are), seconds, params."""
    v, vs = ev.get("value"), ev.get("values") or []
    params = " ".join(f"{k}={_fmt(x)}" for k, x in ev["params"].items())
    value = "value=" + ("-" if v is None else f"{v:.6g}")
    if len(vs) > 1:  # several objectives: each one's value
        value = "values=" + ",".join(f"{x:.6g}" for x in vs)
    # a trial pruned or failed before its first epoch ended has no best epoch: none said
    counts = "".join(f" {k}={ev[k]}" for k in ("epochs", "best_epoch") if ev.get(k) is not None)
    line = (
        f"trial {ev['number']:>4} {ev['state']:<8} {value}{counts} "
        f"{ev.get('seconds', 0):.1f}s  {params}"
    )
    if ev.get("reason") and ev["state"] != "COMPLETE":
        line += f"  [{ev['reason']}]"
    return line


LOUD_BYTES = 100 * 2**20  # a data file this large says its load step by step


def data_steps(path: Path, say: Callable[[str], None] | None) -> Callable[[str], None] | None:
    """The data load's step lines for `say`, each led by "optuna-run: ", when the file at
    `path` holds LOUD_BYTES or more; None (no lines) for a smaller one, which loads in a few
    seconds, or one that is not there (the load says so)."""
    if say is None or not path.is_file() or path.stat().st_size < LOUD_BYTES:
        return None
    return lambda line: say(f"optuna-run: {line}")


def log_path(url: str, study_name: str) -> Path:
    """The study's log file: beside a SQLite file, else studies/NAME.log here (NAME the
    study name as a file name: `name_stem`)."""
    if url.startswith("sqlite:///") and ":memory:" not in url:
        return Path(url[len("sqlite:///") :]).parent / f"{name_stem(study_name)}.log"
    return Path("studies") / f"{name_stem(study_name)}.log"


def stamped(line: str) -> str:
    """A line of the study's log: the time, the writing process's id in brackets (two runs
    of one study, `optuna-run` in two terminals, append to one log: their status lines would
    otherwise read as one run's), then the line."""
    return f"{datetime.now().isoformat(timespec='seconds')} [{os.getpid()}] {line}\n"


def append_log(log: Path, lines: list[str]) -> None:
    """Append `lines` (each maybe several) time-stamped to the study's log, as the Reporter
    writes the trial and status lines: the start lines before the trials, the summary after."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        for line in lines:
            for part in line.splitlines() or [""]:
                f.write(stamped(part))


STATUS_SECONDS = 60.0  # a status line at least this often when stderr is not a terminal
STATUS_SHARE = 10  # and every tenth of the requested trials


def duration(seconds: float) -> str:
    """12s, 4m05s, 2h03m."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Reporter:
    """What a study says while it runs: a line per finished trial, and its progress.

    On a terminal the progress is a bar (trials done / requested, best so far, ETA). Written
    to a file or a pipe (nohup, Docker, CI) a bar is a stream of carriage-return frames, so
    there it is a status line instead (trials done / requested, complete / pruned / failed,
    best value, elapsed, ETA) every tenth of the requested trials and at least every
    `every_s` seconds (a timer thread: also while one long trial runs). `quiet`: neither;
    `echo` False: no line on stderr at all.

    The ETA is the mean time per trial over the trials this run finished so far (pruned
    trials are cheap, so a recent run of them must not make the rest look short). Every line,
    status lines included, is also appended, time-stamped, to `log` when given, so a
    detached study can be followed with `tail -f`.
    """

    def __init__(
        self,
        total: int | None,
        direction: str = "minimize",
        quiet: bool = False,
        log: Path | None = None,
        *,
        tty: bool | None = None,
        every_s: float = STATUS_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        echo: bool = True,
    ):
        self.log: TextIO | None = None
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            self.log = open(log, "a", buffering=1)  # noqa: SIM115 - closed in close()
        self.total = total
        self.counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0}
        self.best: float | None = None
        self.best_number: int | None = None
        self.quiet = quiet
        self.echo = echo  # False: lines to the log only
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.clock = clock
        self.started = self.last_status = clock()
        self.every_s = every_s
        self.every_n = max(1, math.ceil(total / STATUS_SHARE)) if total else 0
        self.lock = threading.RLock()  # the timer's lines and a signal handler's (re-entrant)
        self.bar: tqdm[Any] | None = None
        if self.tty and not quiet:
            self.bar = tqdm(
                total=total,
                desc="trials",
                unit="trial",
                file=sys.stderr,
                dynamic_ncols=True,
                mininterval=0.5,
                smoothing=0,  # rate = trials finished / time elapsed, not a recent average
            )
        self.sign = 1 if direction == "minimize" else -1
        self.stopped = threading.Event()
        self.timer: threading.Thread | None = None
        if every_s > 0 and (self.log is not None or self.says_status):
            self.timer = threading.Thread(target=self._tick_loop, name="status", daemon=True)
            self.timer.start()

    def start_from(self, study: optuna.Study) -> None:
        """A resumed study's best trial so far, so the status lines show it before this run
        completes a trial of its own (one objective only)."""
        if len(study.directions) != 1:
            return
        with self.lock:
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
                v = t.value
                if (
                    v is not None
                    and math.isfinite(v)
                    and (self.best is None or self.sign * v < self.sign * self.best)
                ):
                    self.best, self.best_number = v, t.number

    @property
    def says_status(self) -> bool:
        """Status lines go to stderr (not a terminal, not quiet); the log always has them."""
        return not self.tty and not self.quiet

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def trial(self, ev: dict[str, Any]) -> None:
        with self.lock:
            self._count(ev)
            self.write(trial_line(ev))
            if self.bar is not None:
                if self.best is not None:
                    self.bar.set_postfix_str(
                        f"best={self.best:.6g} (#{self.best_number})", refresh=False
                    )
                self.bar.update(1)
            if self.every_n and self.done % self.every_n == 0:
                self.status()

    def _count(self, ev: dict[str, Any]) -> None:
        state = ev["state"]
        self.counts[state] = self.counts.get(state, 0) + 1
        v = ev.get("value")
        if len(ev.get("values") or []) > 1:
            return  # several objectives: no single best (the summary gives the Pareto front)
        if (
            state == "COMPLETE"
            and v is not None
            and math.isfinite(v)
            and (self.best is None or self.sign * v < self.sign * self.best)
        ):
            self.best, self.best_number = v, ev["number"]

    def status_line(self) -> str:
        """Trials done / requested (states), best, elapsed and ETA, in one line."""
        n, c = self.done, self.counts
        elapsed = self.clock() - self.started
        line = f"status: {n}/{self.total} trials" if self.total else f"status: {plural(n, 'trial')}"
        line += f" ({c['COMPLETE']} complete, {c['PRUNED']} pruned, {c['FAIL']} failed)"
        if self.best is not None:
            line += f", best {self.best:.6g} (trial {self.best_number})"
        line += f", {duration(elapsed)} elapsed"
        if self.total and n:
            line += f", ETA {duration(elapsed / n * max(self.total - n, 0))}"
        elif not n:
            line += ", first trial running"
        return line

    def status(self) -> None:
        """Say the status line (stderr when it is no terminal, and the log)."""
        with self.lock:
            self.last_status = self.clock()
            line = self.status_line()
            self._log(line)
            if self.says_status:
                print(line, file=sys.stderr, flush=True)

    def tick(self) -> None:
        """The status line when `every_s` seconds passed since the last one."""
        with self.lock:
            if self.clock() - self.last_status >= self.every_s:
                self.status()

    def _tick_loop(self) -> None:
        while not self.stopped.wait(self.every_s):
            self.tick()

    def _log(self, line: str) -> None:
        if self.log is not None:
            self.log.write(stamped(line))

    def write(self, line: str) -> None:
        with self.lock:
            self._log(line)
            if not self.echo:
                pass
            elif self.bar is None:
                print(line, file=sys.stderr, flush=True)
            else:
                self.bar.write(line, file=sys.stderr)

    def close(self) -> None:
        self.stopped.set()
        if self.timer is not None:
            self.timer.join()
            self.timer = None
        with self.lock:
            if self.bar is not None:
                self.bar.close()
            if self.log is not None:
                self.log.close()
                self.log = None

    def summary(
        self,
        study: optuna.Study,
        url: str,
        interrupted: bool = False,
        max_trials: int | None = None,
    ) -> str:
        """The run's closing lines; with `max_trials` (the run's --max-trials), a line saying
        the cap was reached when it was (why this run started fewer trials than asked)."""
        states = [t.state for t in study.get_trials(deepcopy=False)]
        n = {s.name: states.count(s) for s in optuna.trial.TrialState}
        lines = [
            "",
            f"study {study.study_name!r}: this run finished "
            f"{plural(sum(self.counts.values()), 'trial')} "
            f"({self.counts['COMPLETE']} complete, {self.counts['PRUNED']} pruned, "
            f"{self.counts['FAIL']} failed)" + ("; interrupted" if interrupted else ""),
            f"in the study: {plural(len(states), 'trial')} "
            f"({n['COMPLETE']} complete, {n['PRUNED']} pruned, "
            f"{n['FAIL']} failed, {n['RUNNING']} running)",
        ]
        finished = n["COMPLETE"] + n["PRUNED"]
        if max_trials is not None and finished >= max_trials:
            lines.append(
                f"--max-trials {max_trials} reached: the study holds "
                f"{plural(finished, 'complete or pruned trial')}, so no more start"
            )
        flag = storage_flag(url)
        lines.extend(best_lines(study, "" if flag is None else flag))
        lines.append(f"storage: {describe(url)}")
        if url.startswith("grpc://"):  # the dashboard reads the database, not the proxy
            lines.append("view it: optuna-run dashboard --storage DATABASE_URL (the proxy's)")
        else:
            lines.append(f"view it: optuna-run dashboard{flag or ''}")
        name = study_flag(study.study_name)
        lines.append(
            f"report:  optuna-run report {name}{flag or ''} "
            f"--out {shlex.quote(study_file(study.study_name, 'report'))}"
        )
        lines.append(
            f"export:  optuna-run export {name}{flag or ''} "
            f"--out {shlex.quote(study_file(study.study_name, 'best.json'))}"
        )
        if flag is None:  # the URL holds a password: the commands resolve it as this run did
            lines.append("         (each with this run's --storage, or $OPTUNA_STORAGE set)")
        return "\n".join(lines)
