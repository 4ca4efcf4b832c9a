"""`optuna-run report`: one self-contained HTML file holding every figure, and real PNGs."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

from search.cli import main
from tests.search_tests.helpers import load, run_cli, write_study
from tests.search_tests.studyrun import cli_command, cli_env

FIGURES = (
    "optimization-history",
    "intermediate-values",
    "param-importances",
    "parallel-coordinate",
    "slice",
)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_MAGIC, f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def study_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("report")
    url = f"sqlite:///{folder}/s.db"
    cfg = write_study(folder, "rep")
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "10", "--seed", "5") == 0
    return url


def report_process(*args: str) -> tuple[int, str]:
    """`optuna-run report ARGS` as a process of its own: its exit status and stderr (Optuna's
    log lines go to the stderr of the process, not to a test's captured one)."""
    proc = subprocess.run(
        [*cli_command(), "report", *args], env=cli_env(), capture_output=True, text=True
    )
    return proc.returncode, proc.stderr


def report(url: str, out: Path) -> str:
    assert main(["report", "--study-name", "rep", "--storage", url, "--out", str(out)]) == 0
    return (out / "report.html").read_text()


def test_report_holds_every_figure_and_real_pngs(study_url: str, tmp_path: Path) -> None:
    study = load(study_url, "rep")
    states = {t.state.name for t in study.trials}
    assert {"COMPLETE", "PRUNED"} <= states  # pruned trials are part of what is drawn
    page = report(study_url, tmp_path / "r")
    for fid in FIGURES:
        assert f'id="{fid}"' in page, fid  # the plotly div
        w, h = png_size(tmp_path / "r" / f"{fid}.png")
        assert w >= 600 and h >= 300
        assert (tmp_path / "r" / f"{fid}.png").stat().st_size > 10_000
    # self-contained: plotly.js inline once, no script fetched from elsewhere
    assert page.count("plotly.js v") == 1  # the library once, inline
    assert "<script src=" not in page
    best = study.best_trial
    assert f"Best trial {best.number}" in page
    assert "val_mse" in page and "hidden_dim" in page
    assert png_size(tmp_path / "r" / "best-trial.png")[0] > 300
    # no verdict or confirmation in this study: those sections are left out
    assert 'id="section-verdict"' not in page and 'id="section-confirm-spread"' not in page


def test_report_shows_verdict_and_seed_spread_when_the_study_has_them(
    study_url: str, tmp_path: Path
) -> None:
    import optuna

    study = load(study_url, "rep")
    copy = f"sqlite:///{tmp_path}/c.db"
    optuna.copy_study(from_study_name="rep", from_storage=study_url, to_storage=copy)
    study = load(copy, "rep")
    study.set_user_attr(
        "verdict",
        {
            "val": {"lstm": {"ic": 0.031, "mse": 0.98}, "zero": {"ic": 0.0, "mse": 1.0}},
            "test": {
                "lstm": {"ic": 0.012, "mse": 0.99, "rank_ic": 0.0123456, "rank_ic_se": 0.004},
                "momentum": {"ic": -0.004, "rank_ic": -0.002, "rank_ic_se": 0.005, "mse": 3.1e-5},
            },
            "summary": "lstm beats every baseline on validation IC",
            "trials": [3],
            "source": "confirm",
        },
    )
    study.set_user_attr(
        "confirm",
        {
            "trials": {
                "3": {"search_value": 0.95, "mean": 0.97, "std": 0.01, "values": [0.96, 0.98]},
                "7": {"search_value": 0.9, "mean": 0.99, "std": 0.02, "values": [0.97, 1.01]},
            },
            "winner": 3,
            "flag": "winner is within one std of the runner-up",
            "objective": "val_loss",
        },
    )
    page = report(copy, tmp_path / "r")
    assert 'id="section-verdict"' in page
    assert "lstm beats every baseline on validation IC" in page
    # the trial the verdict judged is named: the report's best trial may be another
    assert "The model judged here: trial 3, confirm&#x27;s winner.<br>lstm beats" in page
    # the table's numbers at 4 decimals
    # an MSE column with a value under 0.01 (a raw return's) in significant digits, all of it
    for cell in ("<td>3.100e-05</td>", "<td>9.900e-01</td>", "<td>0.9800</td>"):
        assert cell in page, cell
    for cell in ("val ic", "test mse", "momentum", "<td>0.0310</td>", "<td>-0.0040</td>"):
        assert cell in page, cell
    assert "0.0123456" not in page.split('id="section-verdict"')[1].split("<table>")[1]
    # no daily values in this verdict: the cumulative rank IC says why it is not drawn
    assert 'id="section-verdict-cumulative"' in page and "holds no daily values" in page
    assert 'id="confirm-spread"' in page and "winner is within one std" in page
    assert (
        "<td>3</td><td>0.9500</td><td>0.9700</td><td>0.0100</td><td>2</td><td>winner</td>" in page
    )
    assert "validation loss" in page  # the confirm figure's axis: the study's objective
    for name in ("verdict.png", "confirm-spread.png"):
        assert png_size(tmp_path / "r" / name)[0] > 300
    assert not (tmp_path / "r" / "verdict-cumulative.png").exists()


def test_report_errors_name_the_flag(
    study_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--study-name", "nope", "--storage", study_url]) == 2
    assert "--study-name: no study 'nope'" in capsys.readouterr().err
    empty = f"sqlite:///{tmp_path}/e.db"
    import optuna

    optuna.create_study(study_name="e", storage=empty)
    assert main(["report", "--storage", empty, "--out", str(tmp_path / "o")]) == 2
    assert "has no trials yet" in capsys.readouterr().err


def test_report_of_a_multi_objective_study(tmp_path: Path) -> None:
    """Two objectives: each plot shows the first one (said in its title), the Pareto front
    is drawn and tabled, and the best trial shown is on the front."""
    url = f"sqlite:///{tmp_path}/mo.db"
    cfg = write_study(tmp_path, "mo")
    argv = ["--config", str(cfg), "--storage", url, "--n-trials", "6", "--seed", "2"]
    assert run_cli(*argv, "--objective", "rank_ic,val_loss") == 0
    study = load(url, "mo")
    assert len(study.directions) == 2
    out = tmp_path / "r"
    rc, err = report_process("--study-name", "mo", "--storage", url, "--out", str(out))
    assert rc == 0 and err.splitlines() == [f"wrote {out}/report.html and 6 PNG figures in {out}"]
    page = (out / "report.html").read_text()
    assert 'id="pareto-front"' in page and "rank_ic, the first objective" in page
    for fid in (*FIGURES, "pareto-front", "best-trial"):
        if fid != "intermediate-values":
            assert (out / f"{fid}.png").exists(), fid
    # not pruned, so no trial reports an intermediate value: said instead of an empty plot
    assert not (out / "intermediate-values.png").exists()
    assert "not drawn: no trial reported an intermediate value (a study of several" in page
    front = {t.number for t in study.best_trials}
    assert any(f"Best trial {n} on rank_ic" in page for n in front)


def test_report_of_a_study_without_a_complete_trial_says_so_plainly(tmp_path: Path) -> None:
    """A study whose only trial failed: one note on stderr and at the top of the page, each
    empty figure a line saying why, and none of Optuna's own log lines."""
    import optuna

    url = f"sqlite:///{tmp_path}/f.db"
    study = optuna.create_study(study_name="f", storage=url)
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-3, 1e-1, log=True)})
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    out = tmp_path / "r"
    rc, err = report_process("--storage", url, "--out", str(out))
    note = (
        "study 'f' has no complete trial yet (1 fail): the report holds no optimisation "
        "history, parameter importances or best trial"
    )
    assert rc == 0 and err.splitlines() == [
        f"note: {note}",
        f"wrote {out}/report.html and 0 PNG figures in {out}",
    ], err
    page = (out / "report.html").read_text()
    assert note.replace("'", "&#x27;") in page
    assert "not drawn: no complete trial yet" in page
    assert "needs 2 complete trials, the study has 0" in page


def test_report_on_a_missing_sqlite_file_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "typo.db"
    assert main(["report", "--storage", f"sqlite:///{db}", "--out", str(tmp_path / "r")]) == 2
    assert f"no SQLite file {db}" in capsys.readouterr().err
    assert not db.exists() and not (tmp_path / "r").exists()


def test_report_of_a_confirmed_study_draws_the_verdict_and_the_confirmation(
    study_url: str, tmp_path: Path
) -> None:
    """A real confirm (its verdict, its daily values): the rank IC chart, the cumulative
    rank IC over the test dates and the confirmed trials beside their search values."""
    import optuna

    from search.evaluate.figures import verdict_cumulative

    copy = f"sqlite:///{tmp_path}/c.db"
    optuna.copy_study(from_study_name="rep", from_storage=study_url, to_storage=copy)
    argv = ["confirm", "--study-name", "rep", "--storage", copy, "--top", "2", "--seeds", "2"]
    assert main([*argv, "--no-tree", "--device", "cpu", "-q"]) == 0
    study = load(copy, "rep")
    verdict, confirm = study.user_attrs["verdict"], study.user_attrs["confirm"]
    page = report(copy, tmp_path / "r")
    for fid in ("verdict", "verdict-cumulative", "confirm-spread"):
        assert f'id="{fid}"' in page, fid
        w, h = png_size(tmp_path / "r" / f"{fid}.png")
        assert w >= 600 and h >= 250, fid
    dates = verdict["daily"]["dates"]
    assert f"Cumulative daily rank IC over the {len(dates)} test dates" in page
    assert "validation rank IC" in page
    # the cumulative rank IC's figure: a line per predictor but zero; the model ends at its sum
    drawn = verdict_cumulative(verdict)
    assert drawn is not None
    lines = {t.name: t for t in drawn[0].data}
    assert len(lines) == len(verdict["test"]) - 1 and "zero" not in lines
    daily = [x for x in verdict["daily"]["rank_ic"]["model"] if x is not None]
    assert lines["model"].y[-1] == pytest.approx(sum(daily)) and len(lines["model"].y) == len(dates)
    for n, row in confirm["trials"].items():
        assert row["search_value"] == study.trials[int(n)].value
        assert f"<td>{n}</td><td>{row['search_value']:.4f}</td><td>{row['mean']:.4f}</td>" in page
