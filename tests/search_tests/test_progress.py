"""What the long verbs say while they run: a study writes no carriage-return frames where
stderr is a file or a pipe, but a line per trial and status lines (the bar stays on a
terminal); confirm and train say each epoch; a large data file says each step of its load."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from search.cli import main
from search.study.progress import Reporter, duration
from tests.conftest import SAMPLE
from tests.search_tests.helpers import TINY_SPACE, load, run_cli, write_study
from tests.search_tests.studyrun import cli_command, cli_env

STATUS = re.compile(
    r"^status: (\d+)/(\d+) trials \((\d+) complete, (\d+) pruned, (\d+) failed\)"
    r"(, best \S+ \(trial \d+\))?, \S+ elapsed, ETA \S+$"
)
STEPS = (
    "optuna-run: reading ",
    "optuna-run: building the dense panel: ",
    "optuna-run: features: ",
    "optuna-run: target and checks...",
    "optuna-run: panel done in ",
    "optuna-run: tensors on cpu, the windows and the file's fingerprint...",
)


def step_lines(err: str) -> list[str]:
    return [x for x in err.splitlines() if x.startswith(STEPS)]


def test_a_study_run_into_a_file_writes_lines_not_frames(tmp_path: Path) -> None:
    """As under nohup: stderr is a file. No carriage return at all; a line per finished
    trial; a status line every tenth of the trials (here every trial), counts adding up."""
    cfg = write_study(tmp_path, "nh")
    url = f"sqlite:///{tmp_path}/nh.db"
    out = tmp_path / "stderr.txt"
    with open(out, "w") as f:
        proc = subprocess.run(
            [*cli_command(), "--config", str(cfg), "--storage", url, "--n-trials", "10"],
            cwd=tmp_path,
            env=cli_env(),
            stdout=subprocess.DEVNULL,
            stderr=f,
            timeout=300,
        )
    err = out.read_text()
    assert proc.returncode == 0, err
    assert "\r" not in err
    lines = err.splitlines()
    assert len([x for x in lines if re.match(r"^trial +\d+ (COMPLETE|PRUNED|FAIL) ", x)]) == 10
    status = [m for x in lines if (m := STATUS.match(x))]
    assert [int(m[1]) for m in status] == list(range(1, 11))
    for m in status:
        assert int(m[2]) == 10 and int(m[3]) + int(m[4]) + int(m[5]) == int(m[1])
    # the study's log beside the database has them too, time-stamped: every line from the
    # start lines to the summary (only the loading steps before the study opens are not)
    study_log = (tmp_path / "nh.log").read_text()
    assert study_log.count(" status: ") == 10 and "\r" not in study_log
    # each line the time, the writing process's id, the line: one id for one run
    tags = {x.split(" ", 2)[1] for x in study_log.splitlines()}
    assert len(tags) == 1 and re.fullmatch(r"\[\d+\]", tags.pop())
    logged = [x.split(" ", 2)[2] for x in study_log.splitlines()]
    said = [x for x in lines if not x.startswith(STEPS)]
    assert logged == said
    assert any(x.startswith("data: ") for x in logged)
    assert any("this run finished 10 trials" in x for x in logged)


class Clock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def event(n: int, state: str = "COMPLETE", value: float | None = 0.5) -> dict[str, Any]:
    return {"number": n, "state": state, "value": value, "epochs": 3, "best_epoch": 2,
            "seconds": 1.0, "params": {"lr": 0.01}, "reason": None}  # fmt: skip


def test_status_by_the_clock_and_by_the_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = Clock()
    r = Reporter(600, "maximize", log=tmp_path / "s.log", tty=False, clock=clock)
    try:
        r.trial(event(0, value=0.1))
        clock.now += 30
        r.tick()  # 30 s: not yet
        assert "status:" not in capsys.readouterr().err
        r.trial(event(1, "PRUNED", None))
        r.trial(event(2, value=0.3))
        clock.now += 30
        r.tick()  # 60 s since the start: a status line
        err = capsys.readouterr().err
        assert err.splitlines()[-1] == (
            "status: 3/600 trials (2 complete, 1 pruned, 0 failed), best 0.3 (trial 2), "
            "1m00s elapsed, ETA 3h19m"  # 597 trials left at 20 s each
        )
        clock.now += 59
        r.tick()  # the clock counts from the last status line
        assert "status:" not in capsys.readouterr().err
        for n in range(3, 60):  # the 60th trial is a tenth of 600
            r.trial(event(n, "FAIL", None))
        err = capsys.readouterr().err
        assert err.count("status:") == 1 and "status: 60/600 trials" in err
        assert err.count("\n") == 58 and "\r" not in err  # 57 trial lines and the status
    finally:
        r.close()
    assert (tmp_path / "s.log").read_text().count(" status: ") == 2


def test_a_terminal_keeps_the_bar_and_quiet_says_no_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = Clock()
    tty = Reporter(10, log=tmp_path / "t.log", tty=True, clock=clock)
    quiet = Reporter(10, quiet=True, tty=False, clock=clock)
    try:
        assert tty.bar is not None and quiet.bar is None
        for r in (tty, quiet):
            r.trial(event(0))
            clock.now += 61
            r.tick()
    finally:
        tty.close()
        quiet.close()
    err = capsys.readouterr().err
    assert "status:" not in err and err.count("trial    0 COMPLETE") == 2
    assert (tmp_path / "t.log").read_text().count(" status: ") == 2  # the bar's terminal aside


def test_status_before_any_trial_and_without_a_count() -> None:
    clock = Clock()
    r = Reporter(None, tty=False, clock=clock, every_s=0)
    clock.now += 125
    want = "status: 0 trials (0 complete, 0 pruned, 0 failed), 2m05s elapsed, first trial running"
    assert r.status_line() == want
    r.close()
    assert [duration(s) for s in (0, 59.4, 60, 3599, 3600, 7384)] == [
        "0s", "59s", "1m00s", "59m59s", "1h00m", "2h03m",
    ]  # fmt: skip


def test_a_resumed_study_shows_its_best_from_the_first_status_line() -> None:
    import optuna

    study = optuna.create_study(direction="maximize")
    for v in (0.1, 0.3, float("nan"), 0.2):
        study.add_trial(
            optuna.trial.create_trial(value=v)
            if v == v
            else optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL)
        )
    r = Reporter(10, "maximize", tty=False, clock=Clock(), every_s=0)
    r.start_from(study)
    assert ", best 0.3 (trial 1)," in r.status_line()
    r.close()


def test_a_trial_of_several_objectives_says_each_value_and_no_single_best(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from search.study.progress import trial_line

    ev = event(3, value=0.1) | {"values": [0.1, 0.25]}
    assert trial_line(ev).startswith("trial    3 COMPLETE values=0.1,0.25 epochs=3 ")
    assert trial_line(event(3, value=0.1)).startswith("trial    3 COMPLETE value=0.1 epochs=3 ")
    # pruned at its first report, within the first epoch: no best epoch to name
    first = event(4, "PRUNED", 0.2) | {"epochs": 0.25, "best_epoch": None}
    assert trial_line(first).startswith("trial    4 PRUNED   value=0.2 epochs=0.25 1.0s  lr=0.01")
    assert "None" not in trial_line(first | {"epochs": None})
    r = Reporter(4, "maximize", tty=False, clock=Clock(), every_s=0)
    r.trial(ev)
    r.close()
    assert "best" not in r.status_line()
    capsys.readouterr()


EPOCHS_SPACE = TINY_SPACE.replace("epochs = {{ low = 2, high = 9 }}", "epochs = 2")
FINAL = """
[search]
pruner = "none"
[final]
max_windows_per_epoch = 256
epochs = 3
patience = 0
seeds = 2
"""
EPOCH_LINE = re.compile(
    r"^(confirm|train): trial (\d+) \((\d+)/(\d+), (\d+) networks?\) epoch (\d+)/(\d+): "
    r"[\d,]+ windows/s, validation rank_ic -?[\d.e+-]+, [\d.]+s an epoch, ETA \S+$"
)


def epoch_lines(err: str) -> list[tuple[str, ...]]:
    return [m.groups() for x in err.splitlines() if (m := EPOCH_LINE.match(x))]


def test_confirm_and_train_say_each_epoch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line per epoch of every configuration (k of N, its networks, epoch e of E), in the
    order they train; `-q` leaves them out and nothing else. A large file's load says its
    steps there too (the threshold at 0 bytes)."""
    url = f"sqlite:///{tmp_path}/e.db"
    cfg = write_study(tmp_path, "ep", extra=FINAL, space=EPOCHS_SPACE)
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "3", "--seed", "2") == 0
    top = sorted(load(url, "ep").trials, key=lambda t: t.value, reverse=True)[:2]
    capsys.readouterr()
    monkeypatch.setattr("search.study.progress.LOUD_BYTES", 0)
    confirm = ["confirm", "--study-name", "ep", "--storage", url, "--top", "2", "--seeds", "2"]
    assert main([*confirm, "--no-tree", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert epoch_lines(err) == [
        ("confirm", str(t.number), str(k), "2", "2", str(e), "2")
        for k, t in enumerate(top, 1)
        for e in (1, 2)
    ]
    assert err.index("confirm: scoring trial") > err.index("epoch 2/2")
    assert len(step_lines(err)) == 5 and err.index("panel done") < err.index("epoch 1/2")
    train = ["train", "--study-name", "ep", "--storage", url, "--no-tree", "--device", "cpu"]
    assert main([*train, "--out", str(tmp_path / "m.pt")]) == 0
    err = capsys.readouterr().err
    winner = str(load(url, "ep").user_attrs["confirm"]["winner"])
    assert epoch_lines(err) == [("train", winner, "1", "1", "2", str(e), "3") for e in (1, 2, 3)]
    assert "train: scoring the model and the baselines" in err
    assert len(step_lines(err)) == 5
    assert main([*train, "--out", str(tmp_path / "q.pt"), "-q"]) == 0
    quiet = capsys.readouterr().err
    assert not epoch_lines(quiet) and "train: scoring" in quiet and "final fit" in quiet


def test_a_large_file_says_each_step_of_its_load_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sample is small: its load says nothing. As a large file (the threshold at 0
    bytes) it says each step once, in order, before the run's start lines."""
    cfg = write_study(tmp_path, "ld")
    url = f"sqlite:///{tmp_path}/ld.db"
    argv = ["--config", str(cfg), "--storage", url, "--n-trials", "1", "--device", "cpu"]
    assert run_cli(*argv) == 0
    assert not step_lines(capsys.readouterr().err)
    monkeypatch.setattr("search.study.progress.LOUD_BYTES", 0)
    assert run_cli(*argv) == 0
    err = capsys.readouterr().err
    lines = step_lines(err)
    assert [next(s for s in STEPS if x.startswith(s)) for x in lines] == list(STEPS)
    raw = pl.read_parquet(SAMPLE)
    assert lines[0].startswith(
        f"optuna-run: reading {raw.height:,} rows x {raw.width} columns from {SAMPLE} ("
    )
    assert lines[2] == "optuna-run: features: 14 into a 1,259 x 40 x 14 float32 array (2.8 MB)..."
    assert err.index(lines[-1]) < err.index("optuna-run: study 'ld'")


def test_epoch_lines_time_each_configuration_from_the_epoch_before() -> None:
    """Epochs of 10 s, two configurations of 3 epochs planned: each line's seconds an epoch
    and ETA (the epochs left, this configuration's and the next's, at that pace)."""
    import optuna

    from models import EpochResult
    from search.evaluate.progress import FitProgress

    study = optuna.create_study()
    for v in (0.1, 0.2):
        study.add_trial(optuna.trial.create_trial(value=v))
    clock, lines = Clock(), []
    fits = FitProgress(lines.append, "confirm", "rank_ic", clock=clock)
    for _, on_epoch in fits.each(study.trials):
        assert on_epoch is not None
        for e in (1, 2, 3):
            clock.now += 10
            val = {"rank_ic": 0.0125, "loss": 1.0}
            on_epoch(EpochResult(e, 1.0, val, [val, val], 40_000, 8.0, 2.0, planned=3))
    assert lines[0] == (
        "confirm: trial 0 (1/2, 2 networks) epoch 1/3: 5,000 windows/s, validation rank_ic "
        "0.0125, 10.0s an epoch, ETA 50s"
    )
    heads = [x.split(") epoch")[0] for x in lines]
    assert (
        heads
        == ["confirm: trial 0 (1/2, 2 networks"] * 3 + ["confirm: trial 1 (2/2, 2 networks"] * 3
    )
    assert [x.split("0.0125, ")[1] for x in lines] == [
        f"10.0s an epoch, ETA {eta}" for eta in ("50s", "40s", "30s", "20s", "10s", "0s")
    ]
    assert FitProgress(None, "train", "rank_ic").each(study.trials)[0][1] is None  # quiet


def test_a_long_epoch_says_where_it_stands_every_minute() -> None:
    """Inside an epoch, a line once a minute at most (share of windows, rate, ETA), none
    sooner; the first epoch's ETA from its pace so far, later ones from the epochs done."""
    import optuna

    from models import EpochResult, Step
    from search.evaluate.progress import FitProgress

    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(value=0.1))
    clock, lines = Clock(), []
    fits = FitProgress(lines.append, "train", "rank_ic", clock=clock)
    [(_, on)] = fits.each(study.trials)
    assert on is not None
    # epoch 1 of 2, 3 networks, 1,000,000 windows each: 30 s in, a quarter trained: silent
    clock.now += 30
    on.step(Step(1, 2, 250_000, 1_000_000, 3))
    assert lines == []
    clock.now += 30  # 60 s in, half trained: 3 networks x 500,000 windows in 60 s
    on.step(Step(1, 2, 500_000, 1_000_000, 3))
    assert lines == [
        "train: trial 0 (1/1, 3 networks) epoch 1/2: 50% of 1,000,000 windows, "
        "25,000 windows/s, ETA 3m00s"
    ]
    clock.now += 10
    on.step(Step(1, 2, 600_000, 1_000_000, 3))  # 10 s after the last line: silent
    assert len(lines) == 1
    clock.now += 60  # the epoch ends at 130 s (its validation included)
    val = {"rank_ic": 0.02, "loss": 1.0}
    on(EpochResult(1, 1.0, val, [val] * 3, 3_000_000, 120.0, 10.0, planned=2))
    assert lines[-1].endswith("130.0s an epoch, ETA 2m10s")
    clock.now += 65  # epoch 2, half-way at 65 s: the rest of it, at the epochs' pace
    on.step(Step(2, 2, 500_000, 1_000_000, 3))
    assert lines[-1] == (
        "train: trial 0 (1/1, 3 networks) epoch 2/2: 50% of 1,000,000 windows, "
        "23,077 windows/s, ETA 1m05s"
    )


def test_the_summary_commands_reach_the_study_as_the_run_did(tmp_path, monkeypatch) -> None:
    """The printed next commands carry the run's --storage unless they would resolve it
    anyway; a URL with a password is never printed, the lines say to pass it again."""
    import optuna

    from search.study.progress import Reporter

    monkeypatch.delenv("OPTUNA_STORAGE", raising=False)
    study = optuna.create_study(study_name="s")
    study.add_trial(optuna.trial.create_trial(value=0.1))
    r = Reporter(1, quiet=True, tty=False)
    other = f"sqlite:///{tmp_path}/x.db"
    lines = r.summary(study, other).splitlines()
    for verb in ("next: optuna-run confirm", "view it: optuna-run dashboard", "report:", "export:"):
        assert any(x.startswith(verb) and f"--storage {other}" in x for x in lines), (verb, lines)
    secret = "postgresql+psycopg://u:Zq7pw@127.0.0.1:5432/test"
    text = r.summary(study, secret)
    commands = [x for x in text.splitlines() if "optuna-run " in x]
    assert "Zq7pw" not in text and len(commands) == 4
    assert not any("--storage" in x for x in commands), commands
    assert text.rstrip().endswith("(each with this run's --storage, or $OPTUNA_STORAGE set)")
    monkeypatch.chdir(tmp_path)
    default = f"sqlite:///{tmp_path}/studies/optuna.db"
    assert "--storage" not in r.summary(study, default)
    # $OPTUNA_STORAGE: the commands resolve it as the run did; a proxy's URL is printed
    monkeypatch.setenv("OPTUNA_STORAGE", "postgresql://postgres@127.0.0.1:5432/test")
    assert "--storage" not in r.summary(study, "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    grpc = r.summary(study, "grpc://127.0.0.1:13000")
    assert "report --study-name s --storage grpc://127.0.0.1:13000 " in grpc


def test_files_named_after_a_study_stay_in_their_folder(tmp_path: Path) -> None:
    """A study name holding a / (or .., a backslash, a newline) or longer than a file name
    names files in the study's folder, one per name: no subfolder made, no file
    written elsewhere, no OSError for a name too long."""
    from search.api import model_path
    from search.study.progress import append_log, log_path

    url = f"sqlite:///{tmp_path}/s.db"
    names = ["a/b", "a_b", "../up", "..", "a\\b", "nl\nx", "x" * 300, "x" * 299 + "y", "ü" * 200]
    logs = [log_path(url, name) for name in names]
    assert len(set(logs)) == len(names)
    for name, log in zip(names, logs, strict=True):
        assert log.parent == tmp_path and len(log.name.encode()) <= 255, log
        append_log(log, [f"study {name!r}"])
        assert log.is_file()
        assert model_path(name).parent == Path("studies")
        assert len(model_path(name).name.encode()) <= 255
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in logs)
    pg = log_path("postgresql+psycopg://u@h/db", "../up")
    assert pg.parent == Path("studies") and pg.name.startswith(".._up-")
    from search.config.paths import name_stem

    assert name_stem("sp500-lstm") == "sp500-lstm"  # a plain name as it is


def test_the_printed_commands_take_any_study_name_as_a_shell_would(tmp_path, monkeypatch) -> None:
    """A study name with a space or shell syntax is quoted in the summary's commands (and
    the note's), so a pasted command reaches the study and runs nothing else; one starting
    with `-` is joined to its flag by `=`. Each command is read by the verb's own parser."""
    import importlib
    import shlex

    import optuna

    from search.cli.app import VERBS
    from search.config.load import load_config
    from search.config.paths import name_stem
    from search.study.notes import note_markdown
    from search.study.progress import Reporter
    from tests.conftest import ROOT

    def check(command: str, name: str) -> None:
        words = shlex.split(command)
        assert words[0] == "optuna-run" and words[1] in VERBS, command
        args = importlib.import_module(VERBS[words[1]]).parser().parse_args(words[2:])
        assert getattr(args, "study_name", name) == name, command
        out = getattr(args, "out", None) or getattr(args, "model", None)
        assert out is None or out.startswith(f"studies/{name_stem(name)}-"), command

    monkeypatch.delenv("OPTUNA_STORAGE", raising=False)
    cfg = load_config(path=ROOT / "studies" / "quick.toml", cpu=True)
    summary = {"file": "f", "fingerprint": "x", "securities": 1, "dates": 1, "first_date": ""}
    summary |= {"last_date": "", "features": [], "split": {}, "target": "y", "task": "t"}
    for name in ("q4 $(touch pwned); x", "-x", "--y z"):
        study = optuna.create_study(study_name=name)
        study.add_trial(optuna.trial.create_trial(value=0.1))
        text = Reporter(1, quiet=True, tty=False).summary(study, f"sqlite:///{tmp_path}/x.db")
        commands = [x.split(": ", 1)[1].strip() for x in text.splitlines() if "optuna-run " in x]
        commands[0] = commands[0].split(" (")[0]  # next: ... (re-trains the best trials ...)
        assert len(commands) == 4
        for command in commands:
            check(command, name)
        commands = re.findall(r"`(optuna-run [^`]+)`", note_markdown(name, summary, cfg, "cpu"))
        assert len(commands) == 4
        for command in commands:
            check(command, name)


def test_the_summary_says_when_the_trial_cap_was_reached() -> None:
    """A run that started fewer trials than asked because the study holds --max-trials
    finished trials says so, instead of 'this run finished 0 trials' alone."""
    import optuna

    study = optuna.create_study(study_name="capped")
    for v in (0.1, 0.2, 0.3):
        study.add_trial(optuna.trial.create_trial(value=v))
    r = Reporter(5, quiet=True, tty=False)
    text = r.summary(study, "sqlite:///x.db", max_trials=2)
    assert (
        "--max-trials 2 reached: the study holds 3 complete or pruned trials, so no more start"
    ) in text.splitlines(), text
    assert "--max-trials" not in r.summary(study, "sqlite:///x.db", max_trials=4)
    assert "--max-trials" not in r.summary(study, "sqlite:///x.db")


def test_params_print_in_one_order_however_the_storage_returns_them() -> None:
    """A trial read back through the proxy holds its params in no set order: the trial line
    and the best line print them by name, so every worker's lines read alike."""
    import optuna

    from search.study.progress import best_lines, trial_event, trial_line

    dist = optuna.distributions.FloatDistribution(0.0, 1.0)
    lines = []
    for order in (("b", "a", "c"), ("c", "b", "a")):
        t = optuna.trial.create_trial(
            value=0.5, params={k: 0.5 for k in order}, distributions={k: dist for k in order}
        )
        lines.append(trial_line(trial_event(t)))
        assert lines[-1].endswith("a=0.5 b=0.5 c=0.5"), lines[-1]
        study = optuna.create_study(direction="maximize")
        study.add_trial(t)
        assert best_lines(study)[0].endswith("a=0.5, b=0.5, c=0.5"), best_lines(study)
        assert "None" not in best_lines(study)[0]  # a trial added with no best epoch
    assert lines[0] == lines[1]
    # several objectives: no single best to confirm; the next step names --trial
    multi = optuna.create_study(directions=["maximize", "minimize"], study_name="m")
    for a, b in ((0.1, 0.2), (0.3, 0.4)):
        multi.add_trial(
            optuna.trial.create_trial(values=[a, b], params={"a": a}, distributions={"a": dist})
        )
    lines = best_lines(multi, " --storage sqlite:///x.db")
    assert lines[0] == "Pareto front: 2 trials [0, 1]"
    assert lines[-1] == (
        "next: optuna-run train --study-name m --storage sqlite:///x.db --trial N "
        "(N a trial of the Pareto front)"
    )


def test_the_start_lines_of_one_series_say_how_its_metrics_are_taken(tmp_path: Path) -> None:
    # "4000 dates x 1 securities", and a per-date rank IC that one series does not have
    from search.config import load_config
    from search.study import session

    n = 120
    path = tmp_path / "series.csv"
    pl.DataFrame(
        {
            "day": list(range(n)),
            "x": [float((7 * d) % 11) for d in range(n)],
            "y": [float((5 * d) % 13) for d in range(n)],
        }
    ).write_csv(path)
    data = {"path": str(path), "date": "day", "id": "", "target": "y", "features": ["x"]}
    over = {"data": {**data, "target_cs": "none", "normalize": "robust"}}
    cfg = load_config(path=None, overrides=over, cpu=True)
    plan = session.prepare(cfg, device="cpu", workers=1, seed_where="seed")
    lines = session.start_lines(plan, f"sqlite:///{tmp_path / 's.db'}")
    data_line = next(x for x in lines if x.startswith("data: "))
    assert f"{path} -> 120 dates x 1 security x 1 feature (" in data_line
    objective = next(x for x in lines if x.startswith("objective: "))
    assert objective.startswith(
        "objective: rank_ic (maximize; one series: correlations over the validation dates, "
        "not per date); "
    )


def test_counts_read_as_a_user_writes_them() -> None:
    """'1 date', '1 prediction', not '1 dates'; '12,870 splits', not '12870 splits'."""
    from search.evaluate.predict import nothing_to_predict
    from search.study.luck import format_luck

    one = str(nothing_to_predict("one.parquet", "last", 20, 1))
    assert one.endswith("needs 20 dates of history per prediction and the file has 1 date")
    pbo = {
        "pbo": 0.25,
        "trials": 40,
        "dates": 1500,
        "blocks": 16,
        "combinations": 12870,
        "by": "mean",
    }
    text = format_luck({"pbo": pbo, "metric": "rank_ic"})
    assert "(40 trials, 1,500 dates in 16 blocks, 12,870 splits, by mean of" in text
    assert "rough" not in text
    # a handful of trials: both figures said rough (a deflated Sharpe's bar from the spread of
    # two Sharpes is a guess)
    few = format_luck({"pbo": {**pbo, "trials": 2}, "metric": "rank_ic"})
    assert few.splitlines()[-1] == (
        "(rough: the PBO ranks 2 trials with per-date values; below 10 it is not measured well)"
    )  # no deflated Sharpe here: the line speaks of the PBO alone
    dsr = {"dsr": 0.4, "sharpe": 1.5, "sharpe0": 1.6, "trials": 4}
    few = format_luck({"pbo": {**pbo, "trials": 2}, "metric": "rank_ic", "dsr": dsr, "winner": 0})
    assert few.splitlines()[-1].startswith("(rough: 2 trials with per-date values; the spread")


def test_two_runs_appending_to_one_log_are_told_apart(tmp_path: Path) -> None:
    """Two processes of one study (`optuna-run` in two terminals) append to one log: each
    line names its process, so the two runs' status lines do not read as one run's."""
    import sys

    log = tmp_path / "s.log"
    code = (
        "import sys; from pathlib import Path; from search.study.progress import append_log; "
        "append_log(Path(sys.argv[1]), ['status: 1/2 trials'])"
    )
    for _ in range(2):
        subprocess.run([sys.executable, "-c", code, str(log)], check=True, env=cli_env())
    tags = [line.split(" ", 2)[1] for line in log.read_text().splitlines()]
    assert len(tags) == 2 and len(set(tags)) == 2
    assert all(re.fullmatch(r"\[\d+\]", t) for t in tags)
