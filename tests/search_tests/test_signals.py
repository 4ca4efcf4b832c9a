"""Crash safety: SIGINT / Ctrl-C ends the running trials as FAIL and leaves nothing RUNNING;
a worker killed with SIGKILL has its trial failed by the heartbeat and re-run with the same
params, by a live worker or by the next run's start-up check."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest

from search.cli import main as cli_main
from tests.search_tests.studyrun import (
    assert_numbers_unique,
    cli_env,
    finish,
    load,
    start_cli,
    states,
    study_toml,
    tiny_panel,
    training,
    unique_name,
    wait_for,
)

INTERRUPTED = (
    "optuna-run: interrupted; rerun the same command to resume the study (it runs its "
    "--n-trials or --timeout again; --max-trials N caps the study at N trials in all)"
)
REASON = "interrupted (SIGINT/SIGTERM)"
EXITED = "interrupted (SIGINT/SIGTERM), exited at once"
FAIL = optuna.trial.TrialState.FAIL
COMPLETE = optuna.trial.TrialState.COMPLETE
RUNNING = optuna.trial.TrialState.RUNNING


def _assert_clean_interrupt(
    rc: int, err: str, url: str, name: str
) -> list[optuna.trial.FrozenTrial]:
    assert rc == 130, err
    assert "Traceback" not in err, err
    assert err.rstrip().splitlines()[-1] == INTERRUPTED
    study = load(url, name)
    assert RUNNING not in {t.state for t in study.trials}
    failed = [t for t in study.trials if t.state == FAIL]
    assert failed and all(t.user_attrs["fail_reason"] == REASON for t in failed)
    assert all(t.intermediate_values for t in failed)  # each was stopped mid-training
    # this run's summary counts the trials the stop ended as failed, as the study does
    trials = study.trials
    n = {s: sum(t.state.name == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL")}
    assert (
        f"study {name!r}: this run finished {len(trials)} trial{'s' * (len(trials) != 1)} "
        f"({n['COMPLETE']} complete, {n['PRUNED']} pruned, {n['FAIL']} failed); interrupted"
    ) in err.splitlines(), err
    assert all(f"trial {t.number:>4} FAIL" in err for t in failed), err
    return failed


def test_sigint_mid_trial_then_rerun_resumes(tmp_path, monkeypatch):
    name = unique_name("int1")
    panel = tiny_panel(tmp_path, n_ids=200)
    # every training window each epoch (43 batches), 12 epochs: the trial is still training
    # when the signal comes
    slow = study_toml(tmp_path, name, data=panel, epochs=12, windows=0, file="slow")
    url = f"sqlite:///{tmp_path / 'x.db'}"
    proc = start_cli(["--config", str(slow), "--storage", url, "--n-trials", "20"], tmp_path)
    wait_for(lambda: training(url, name), 120, "a trial past its first epoch")
    proc.send_signal(signal.SIGINT)
    rc, _, err = finish(proc, 60)
    failed = _assert_clean_interrupt(rc, err, url, name)
    assert len(failed) == 1
    # the study's log says how the run ended, as stderr does
    assert (tmp_path / f"{name}.log").read_text().splitlines()[-1].endswith(INTERRUPTED)
    before = len(load(url, name).trials)
    # Rerunning the same command resumes the study (the budget is part of its spec).
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cli_main(["--config", str(slow), "--storage", url, "--n-trials", "2", "-q"]) == 0
    study = load(url, name)
    assert [t.state for t in study.trials[before:]] == [COMPLETE, COMPLETE]
    assert study.trials[failed[0].number].state == FAIL
    assert_numbers_unique(study)


def _no_trial_left_running_after_two_ctrl_cs(proc, url: str, name: str, group: bool) -> None:
    """Two Ctrl-Cs 50 ms apart: the second exits at once, its trials told FAIL first, and
    says so last, on stderr and in the study's log."""
    for _ in range(2):
        if group:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
    rc, _, err = finish(proc, 60)
    assert rc == 130, err
    trials = load(url, name).trials
    assert RUNNING not in {t.state for t in trials}, [t.state for t in trials]
    failed = [t for t in trials if t.state == FAIL]
    assert failed and all(t.user_attrs["fail_reason"] in (REASON, EXITED) for t in failed)
    last = err.rstrip().splitlines()[-1]
    assert last.startswith("optuna-run: exited at once (status 130): "), err
    assert "of this run told FAIL" in last
    log = (Path(url[len("sqlite:///") :]).parent / f"{name}.log").read_text()
    assert log.rstrip().endswith(last), log


def test_a_second_ctrl_c_exits_at_once_and_leaves_nothing_running(tmp_path):
    name = unique_name("int3")
    slow = study_toml(tmp_path, name, data=tiny_panel(tmp_path, n_ids=200), epochs=12, windows=0)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    proc = start_cli(["--config", str(slow), "--storage", url, "--n-trials", "20"], tmp_path)
    wait_for(lambda: training(url, name), 120, "a trial past its first epoch")
    _no_trial_left_running_after_two_ctrl_cs(proc, url, name, group=False)


def _two_workers_training(tmp_path, prefix: str) -> tuple[subprocess.Popen[str], str, str]:
    """`optuna-run --workers 2` in a session of its own, once both workers are mid-trial:
    (its process, the storage URL, the study name). 40 epochs of every window: each trial
    trains for seconds after both have reported, so neither ends before the signal."""
    name = unique_name(prefix)
    slow = study_toml(tmp_path, name, data=tiny_panel(tmp_path, n_ids=200), epochs=40, windows=0)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    args = ["--config", str(slow), "--storage", url, "--n-trials", "20", "--workers", "2"]
    proc = start_cli(args, tmp_path, start_new_session=True)
    wait_for(lambda: training(url, name, at_least=2), 180, "both workers mid-training")
    return proc, url, name


@pytest.mark.slow
def test_ctrl_c_with_two_workers(tmp_path):
    """Ctrl-C reaches the whole process group: the parent relays it once, the workers end
    their trials as FAIL and exit; the invocation exits 130 with one line."""
    proc, url, name = _two_workers_training(tmp_path, "int2")
    os.killpg(proc.pid, signal.SIGINT)
    rc, _, err = finish(proc, 60)
    failed = _assert_clean_interrupt(rc, err, url, name)
    assert len(failed) == 2
    assert "SIGINT: ending the running trials (FAIL)" in err


@pytest.mark.slow
def test_a_second_ctrl_c_with_two_workers_leaves_nothing_running(tmp_path):
    proc, url, name = _two_workers_training(tmp_path, "int4")
    _no_trial_left_running_after_two_ctrl_cs(proc, url, name, group=True)


def _victim(url: str, name: str, epochs: int) -> optuna.trial.FrozenTrial:
    """Wait for a RUNNING trial past its first epoch with at least two still to train."""
    found: list[optuna.trial.FrozenTrial] = []

    def look() -> bool:
        if training(url, name):
            for t in load(url, name).get_trials(deepcopy=False, states=(RUNNING,)):
                if 1 <= len(t.intermediate_values) <= epochs - 3 and "worker" in t.user_attrs:
                    found.append(t)
        return bool(found)

    wait_for(look, 120, "a trial mid-training")
    return found[0]


@pytest.mark.slow
def test_sigkilled_worker_trial_is_failed_and_rerun_by_a_live_worker(tmp_path):
    """Two workers; one is killed mid-trial. The other, once the dead trial's heartbeat is
    older than the grace period, fails it, runs its params again as a new trial, and the
    study still reaches --max-trials."""
    name = unique_name("kill")
    epochs = 40
    panel = tiny_panel(tmp_path, n_ids=200)
    config = study_toml(tmp_path, name, data=panel, epochs=epochs, heartbeat=(1, 2))
    url = f"sqlite:///{tmp_path / 'x.db'}"
    args = ["--config", str(config), "--storage", url, "--workers", "2"]
    proc = start_cli([*args, "--n-trials", "100", "--max-trials", "8"], tmp_path)
    target = _victim(url, name, epochs)
    pid = int(target.user_attrs["worker"].rsplit(":", 1)[1])
    os.kill(pid, signal.SIGKILL)
    rc, _, err = finish(proc, 120)
    assert rc == 1, err
    assert "killed by SIGKILL" in err
    study = load(url, name)
    assert states(url, name) == {"COMPLETE": 8, "FAIL": 1}
    dead = study.trials[target.number]
    assert dead.state == FAIL
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retries) == 1
    assert retries[0].state == COMPLETE
    assert retries[0].params == dead.params
    assert retries[0].user_attrs["worker"] != dead.user_attrs["worker"]
    assert_numbers_unique(study)


def test_sigkilled_run_is_recovered_by_the_next_run(tmp_path, monkeypatch):
    """`optuna-run` killed with SIGKILL mid-trial leaves that trial RUNNING with a silent
    heartbeat. The next run fails it when it starts and re-runs its params first."""
    name = unique_name("kill1")
    epochs = 40
    panel = tiny_panel(tmp_path, n_ids=200)
    config = study_toml(tmp_path, name, data=panel, epochs=epochs, heartbeat=(1, 2))
    url = f"sqlite:///{tmp_path / 'x.db'}"
    args = ["--config", str(config), "--storage", url]
    proc = start_cli([*args, "--n-trials", "50"], tmp_path)
    target = _victim(url, name, epochs)
    assert target.user_attrs["worker"].endswith(f":{proc.pid}")
    proc.kill()
    finish(proc, 30)
    assert load(url, name).trials[target.number].state == RUNNING
    time.sleep(3.5)  # past the grace period (SQLite's clock counts whole seconds)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cli_main([*args, "--n-trials", "1", "-q"]) == 0
    study = load(url, name)
    dead = study.trials[target.number]
    assert dead.state == FAIL
    retry = study.trials[-1]
    assert retry.state == COMPLETE
    assert retry.system_attrs["failed_trial"] == dead.number
    assert retry.params == dead.params and retry.params
    assert RUNNING not in {t.state for t in study.trials}
    assert_numbers_unique(study)


@pytest.mark.parametrize("delay", [0.2, 0.5])
def test_ctrl_c_while_it_starts_is_one_line(tmp_path, delay) -> None:
    """Ctrl-C while torch and the data still load stops with one line and status 130, no
    traceback, and leaves no study behind."""
    url = f"sqlite:///{tmp_path}/early.db"
    proc = start_cli(
        [
            "--config",
            str(study_toml(tmp_path, "early", data=tiny_panel(tmp_path))),
            "--storage",
            url,
        ],
        tmp_path,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    rc, _, err = finish(proc)
    assert rc == 130, err
    assert err.strip() == "optuna-run: interrupted before any trial started", err
    assert not (tmp_path / "early.db").exists()


@pytest.mark.parametrize("delay", [0.2, 0.5])
def test_sigterm_while_it_starts_is_one_line(tmp_path, delay) -> None:
    """SIGTERM (`kill`, `docker stop`) while torch and the data still load stops as a
    Ctrl-C does: one line, status 130, no study. It ended the process without a word
    (status 143)."""
    url = f"sqlite:///{tmp_path}/early.db"
    toml = study_toml(tmp_path, "early", data=tiny_panel(tmp_path))
    proc = start_cli(["--config", str(toml), "--storage", url], tmp_path)
    time.sleep(delay)
    proc.send_signal(signal.SIGTERM)
    rc, _, err = finish(proc)
    assert rc == 130, err
    assert err.strip() == "optuna-run: interrupted before any trial started", err
    assert not (tmp_path / "early.db").exists()


def test_workers_of_a_killed_run_end_their_trials_and_exit(tmp_path) -> None:
    """`optuna-run --workers 2` killed outright (SIGKILL, the OOM killer): its workers are
    told (SIGHUP on the parent's death, once per thread of it), end their running trials as
    FAIL and exit, and leave no trial RUNNING and no process training on alone."""
    proc, url, name = _two_workers_training(tmp_path, "orphan")
    os.kill(proc.pid, signal.SIGKILL)
    finish(proc, 30)

    def gone() -> bool:  # no process of the run's session is left
        return not [
            p
            for p in os.listdir("/proc")
            if p.isdigit() and _session(int(p)) == proc.pid and int(p) != proc.pid
        ]

    assert _session(os.getpid()) == os.getsid(0)  # the check reads sessions right
    wait_for(gone, 60, "the workers to exit")
    trials = load(url, name).trials
    assert RUNNING not in {t.state for t in trials}
    failed = [t for t in trials if t.state == FAIL]
    orphaned = "interrupted: the optuna-run that started this worker ended (killed?)"
    assert len(failed) == 2 and all(t.user_attrs["fail_reason"] == orphaned for t in failed)


def _session(pid: int) -> int | None:
    """The session id of process `pid` (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # after "pid (comm)": state, ppid, pgrp, session, ...
            return int(f.read().rsplit(")", 1)[1].split()[3])
    except (OSError, IndexError, ValueError):
        return None


# the CLI, with a Ctrl-C (SIGINT to itself) at the moment the module WHEN names is looked up
CTRL_C_AT = """
import os, signal, sys

class CtrlCAt:
    def find_spec(self, name, path=None, target=None):
        if WHEN:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, CtrlCAt())
from search.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _cli_with_ctrl_c_at(when: str, args: list[str], cwd) -> subprocess.CompletedProcess[str]:
    """`optuna-run ARGS` in a subprocess, Ctrl-C sent when the module test `when` (a Python
    expression of `name`) first holds."""
    import sys

    return subprocess.run(
        [sys.executable, "-c", CTRL_C_AT.replace("WHEN", when), *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_ctrl_c_inside_numpys_import_stops_the_run_in_one_line(tmp_path) -> None:
    """A Ctrl-C that lands inside numpy's import (torch loads it) stops the run with one line
    and 130. It was swallowed there and left numpy half-loaded: the run went on, every trial
    failed, and the run ended on an AttributeError."""
    url = f"sqlite:///{tmp_path}/mid.db"
    toml = study_toml(tmp_path, "mid", data=tiny_panel(tmp_path))
    out = _cli_with_ctrl_c_at(
        'name.startswith("numpy") and name.endswith("core.multiarray")',
        ["--config", str(toml), "--storage", url, "-q"],
        tmp_path,
    )
    assert out.returncode == 130, out.stderr[-3000:]
    assert out.stderr.strip() == "optuna-run: interrupted before any trial started", out.stderr
    assert not (tmp_path / "mid.db").exists()


def test_ctrl_c_while_the_command_line_itself_loads_is_one_line(tmp_path) -> None:
    """A Ctrl-C in the first hundredth of a second, while `search.cli.app` loads, is one
    line and 130 too, not a traceback."""
    out = _cli_with_ctrl_c_at('name == "search.cli.app"', ["--help"], tmp_path)
    assert out.returncode == 130, out.stderr[-3000:]
    assert out.stderr.strip() == "optuna-run: interrupted", out.stderr


def test_ctrl_c_during_a_library_import_waits_for_the_import(tmp_path, monkeypatch) -> None:
    """A Ctrl-C that lands inside a library's import is held until the import is done, then
    raised: the library is whole (not half-loaded) and the KeyboardInterrupt still comes."""
    import sys

    from search.study.stop import import_holding_ctrl_c

    (tmp_path / "ctrl_c_mid_import.py").write_text(
        "import os, signal, time\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "time.sleep(0.05)\n"
        "LOADED = True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        import_holding_ctrl_c(("ctrl_c_mid_import",))
    assert sys.modules["ctrl_c_mid_import"].LOADED
    assert signal.getsignal(signal.SIGINT) is before
    del sys.modules["ctrl_c_mid_import"]


def test_a_held_ctrl_c_does_what_the_handler_in_place_would(tmp_path, monkeypatch) -> None:
    """SIGINT ignored (a job started in the background): a Ctrl-C held over an import is
    dropped, as it would have been; a handler set from Python is called with it instead."""
    import sys

    from search.study.stop import import_holding_ctrl_c

    monkeypatch.syspath_prepend(str(tmp_path))
    seen: list[int] = []
    for i, handler in enumerate([signal.SIG_IGN, lambda signum, frame: seen.append(signum)]):
        (tmp_path / f"ctrl_c_held_{i}.py").write_text(
            "import os, signal\nos.kill(os.getpid(), signal.SIGINT)\n"
        )
        before = signal.signal(signal.SIGINT, handler)
        try:
            import_holding_ctrl_c((f"ctrl_c_held_{i}",))  # raises nothing
            assert signal.getsignal(signal.SIGINT) is handler
        finally:
            signal.signal(signal.SIGINT, before)
            sys.modules.pop(f"ctrl_c_held_{i}", None)
    assert seen == [signal.SIGINT]


def _run_script(script: str, folder: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """`python -c script` in `folder` (importable there, beside the project): its result and
    how long it took."""
    import sys

    t0 = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=folder,
        env=cli_env(PYTHONPATH=os.pathsep.join([str(folder), *sys.path])),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out, time.monotonic() - t0


def test_a_second_ctrl_c_during_the_hold_exits_at_once(tmp_path) -> None:
    """Two Ctrl-C while a library loads (a slow disk): the second exits at once with 130 and
    the line it is given."""
    (tmp_path / "slow_import.py").write_text(
        "import os, signal, time\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "time.sleep(0.05)\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "time.sleep(30)\n"
    )
    script = (
        "from search.study.stop import import_holding_ctrl_c\n"
        "import_holding_ctrl_c(('slow_import',), exit_line='stopped')\n"
    )
    out, seconds = _run_script(script, tmp_path)
    assert out.returncode == 130, out.stderr
    assert out.stderr.strip() == "stopped"
    assert seconds < 20


def test_a_second_ctrl_c_exits_whatever_its_last_words_meet(tmp_path) -> None:
    """The second Ctrl-C's last line can meet a closed stderr (`| tee` ended by the same
    Ctrl-C): the process still exits with 130 at once, instead of the error surfacing in
    whatever the main thread was doing and the run going on."""
    script = (
        "import os, signal, time\n"
        "from search.study.stop import SignalStop, Stop\n"
        "def last_words():\n"
        "    raise BrokenPipeError(32, 'Broken pipe')\n"
        "with SignalStop(Stop(), at_exit=last_words):\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        time.sleep(30)\n"
        "    except BrokenPipeError:\n"
        "        pass\n"
        "print('went on')\n"
    )
    out, seconds = _run_script(script, tmp_path)
    assert out.returncode == 130, (out.returncode, out.stdout, out.stderr)
    assert "went on" not in out.stdout
    assert seconds < 20


def test_a_ctrl_c_in_the_summary_says_it_came_after_the_trials(
    tmp_path, monkeypatch, capsys
) -> None:
    """A Ctrl-C (or SIGTERM) during the summary reaches the command line: it says it came
    after the trials, which the study holds, not 'before any trial started'."""
    from search.study import luck
    from tests.search_tests.helpers import write_study

    def interrupted(study):
        raise KeyboardInterrupt

    monkeypatch.setattr(luck, "record_luck", interrupted)
    url = f"sqlite:///{tmp_path}/late.db"
    cfg = write_study(tmp_path, "late")
    capsys.readouterr()
    assert cli_main(["--config", str(cfg), "--storage", url, "--n-trials", "1", "-q"]) == 130
    last = capsys.readouterr().err.rstrip().splitlines()[-1]
    assert last == "optuna-run: interrupted after the trials, in the summary; the study holds them"
    assert len(optuna.load_study(study_name="late", storage=url).trials) == 1


def test_the_exit_line_names_the_grace_period_that_applies() -> None:
    """A trial the second Ctrl-C could not tell FAIL is failed after this storage's grace
    period; through the proxy, whose own grace period applies, none is quoted."""
    from search.study.runner import exited_line

    direct = exited_line(1, 90, "sqlite:///s.db")
    assert direct.endswith("1 running trial of this run told FAIL; one left RUNNING is "
                           "failed after 90s, as a killed worker's"), direct  # fmt: skip
    proxied = exited_line(2, 90, "grpc://host:13000")
    assert "2 running trials" in proxied and "after its heartbeat is stale" in proxied
    assert "90" not in proxied
