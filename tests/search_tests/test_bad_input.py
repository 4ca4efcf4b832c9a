"""Bad input stops `optuna-run` before any trial: one line naming the file and the column or
key, exit status 2, no traceback, and the existing study in the same storage untouched."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
from pathlib import Path

import optuna
import polars as pl
import pytest

from search.cli import main
from tests.conftest import write_panel

SPACE = """
[space]
model = "lstm"
time_steps = {time_steps}
num_layers = 1
hidden_dim = 4
head_dim = 0
dropout = 0.0
lr = 0.01
weight_decay = 0.0
batch_size = 64
epochs = 1
optimizer = "adam"
grad_clip = 1.0
"""


def study_toml(folder: Path, data: str, extra: str = "", time_steps: int = 3) -> Path:
    """A study TOML in `folder`; `data` is the [data] path (relative to the TOML's folder)."""
    toml = folder / "study.toml"
    features = "" if "features" in extra else 'features = ["f*"]\n'
    toml.write_text(
        f'[study]\nname = "s"\nobjective = "val_loss"\n\n[data]\npath = "{data}"\nid = "id"\ntarget = "target"\n'
        f"{features}"
        f"{extra}\n\n[budget]\nmax_windows_per_epoch = 256\n" + SPACE.format(time_steps=time_steps)
    )
    return toml


@pytest.fixture(scope="module")
def existing(tmp_path_factory):
    """A storage holding study "s" with one finished trial, made by a real run."""
    folder = tmp_path_factory.mktemp("study")
    write_panel(folder / "good.parquet", n_dates=40, n_ids=4)
    db = folder / "x.db"
    url = f"sqlite:///{db}"
    rc = main(
        [
            "--config",
            str(study_toml(folder, "good.parquet")),
            "--storage",
            url,
            "--n-trials",
            "1",
            "--device",
            "cpu",
            "--seed",
            "0",
            "-q",
        ]
    )
    assert rc == 0
    return db, url


def fingerprint(db: Path, url: str) -> tuple[str, int]:
    trials = optuna.load_study(study_name="s", storage=url).trials
    return hashlib.sha256(db.read_bytes()).hexdigest(), len(trials)


def frame(n_dates: int = 30, **cols) -> pl.DataFrame:
    """A long frame over 30 dates x 3 ids with f0 = d * 100 + s, f1 and target."""
    rows = [(d, s) for d in range(n_dates) for s in range(3)]
    df = pl.DataFrame(
        {
            "date": [f"2020-{1 + d // 28:02d}-{1 + d % 28:02d}" for d, _ in rows],
            "id": [f"S{s}" for _, s in rows],
            "f0": [float(d * 100 + s) for d, s in rows],
            "f1": [math.sin(d + s) for d, s in rows],
            "target": [math.cos(d * s) for d, s in rows],
        }
    )
    return df.with_columns(**cols) if cols else df


def case(name: str, folder: Path) -> tuple[Path, list[str]]:
    """Write the bad input `name` into `folder`: (study TOML, strings the error must name)."""
    data = folder / "panel.csv"
    frame().write_csv(data)
    if name == "missing file":
        return study_toml(folder, "nope.parquet"), ["nope.parquet", "not found", "[data] path"]
    if name == "unknown file type":
        (folder / "panel.xlsx").write_bytes(b"PK\x03\x04")
        return study_toml(folder, "panel.xlsx"), ["panel.xlsx", "'.xlsx'", "[data] path"]
    if name == "empty file":
        (folder / "empty.csv").write_bytes(b"")
        return study_toml(folder, "empty.csv"), ["empty.csv", "empty", "[data] path"]
    if name == "header only":
        (folder / "header.csv").write_text("date,id,f0,target\n")
        return study_toml(folder, "header.csv"), ["header.csv", "no rows"]
    if name == "mapped column missing":
        toml = study_toml(folder, "panel.csv", extra='weight = "w"')
        return toml, ["panel.csv", "'w'", "[data] weight", "not found"]
    if name == "mapped OHLCV column missing":
        frame(high=pl.col("f0") + 1, low=pl.col("f0"), close=pl.col("f0") + 0.5).write_csv(data)
        toml = study_toml(folder, "panel.csv", extra='high = "hi"')
        return toml, ["panel.csv", "'hi'", "[data] high", "not found", "did you mean 'high'"]
    if name == "non-numeric feature":
        frame(sector=pl.lit("tech")).write_csv(data)
        toml = study_toml(folder, "panel.csv", extra='features = ["f0", "sector"]')
        return toml, ["panel.csv", "'sector'", "[data] features", "numeric"]
    if name == "duplicate column":
        text = data.read_text().splitlines()
        data.write_text("\n".join([text[0] + ",f1"] + [r + ",0.5" for r in text[1:]]) + "\n")
        return study_toml(folder, "panel.csv"), ["panel.csv", "duplicate column 'f1'", "(columns"]
    if name == "duplicate rows":
        pl.concat([frame(), frame().slice(40, 1)]).write_csv(data)
        return study_toml(folder, "panel.csv"), ["panel.csv", "duplicate (date, id)", "S1"]
    if name == "unparseable dates":
        frame().with_columns(
            date=pl.when(pl.col("f0") == 1201).then(pl.lit("2020-02-30")).otherwise("date")
        ).write_csv(data)
        return study_toml(folder, "panel.csv"), ["panel.csv", "'date'", "[data] date", "2020-02-30"]
    if name == "inf in a column":
        df = frame().with_columns(
            f1=pl.when(pl.col("f0") == 502).then(float("inf")).otherwise("f1")
        )
        df.write_parquet(folder / "panel.parquet")
        return study_toml(folder, "panel.parquet"), ["panel.parquet", "'f1'", "infinite"]
    if name == "target all NaN":
        frame(target=pl.lit(float("nan"))).write_parquet(folder / "nan.parquet")
        return study_toml(folder, "nan.parquet"), ["nan.parquet", "'target'", "[data] target"]
    if name in ("horizon beyond the dates", "close not positive"):
        # no target column given: the forward return over `horizon` derived from close
        close = pl.lit(0.0) if name == "close not positive" else pl.col("f0") + 1.0
        frame(close=close).drop("target").write_csv(data)
        extra = "horizon = 1000" if name == "horizon beyond the dates" else ""
        toml = study_toml(folder, "panel.csv", extra=extra)
        toml.write_text(toml.read_text().replace('target = "target"\n', ""))
        if name == "close not positive":
            return toml, ["panel.csv", "'close'", "[data] close", "expected positive prices"]
        return toml, ["panel.csv", "[data] horizon (--horizon) = 1000", "the file's 30 dates"]
    if name == "too few dates":
        frame(n_dates=12).write_csv(data)
        toml = study_toml(folder, "panel.csv", time_steps=8)
        return toml, ["panel.csv", "time_steps=8", "[space] time_steps"]
    if name == "validation empty":
        toml = study_toml(
            folder, "panel.csv", extra='val_start = "2020-01-20"\ntest_start = "2020-01-21"'
        )
        return toml, ["panel.csv", "[data] val_frac / val_start", "validation segment"]
    if name == "unknown key":
        toml = study_toml(folder, "panel.csv", extra="horizn = 2")
        return toml, ["study.toml", "[data]", "'horizn'", "did you mean 'horizon'"]
    if name in ("unknown precision", "fp16 on a CPU"):
        toml = study_toml(folder, "panel.csv")
        value = "fp8" if name == "unknown precision" else "fp16"
        text = toml.read_text().replace(
            "max_windows_per_epoch = 256\n", f'max_windows_per_epoch = 256\nprecision = "{value}"\n'
        )
        toml.write_text(text)
        if name == "unknown precision":
            return toml, ["[budget] precision", "'fp8'", "fp32, fp16, bf16"]
        return toml, ["[budget] precision", "'fp16' needs a CUDA device", "[cpu.budget]"]
    if name == "value out of range":
        toml = study_toml(folder, "panel.csv", extra="max_missing = 1.5")
        return toml, ["study.toml", "[data] max_missing", "1.5"]
    raise AssertionError(name)


CASES = [
    "missing file",
    "unknown file type",
    "empty file",
    "header only",
    "mapped column missing",
    "mapped OHLCV column missing",
    "non-numeric feature",
    "duplicate column",
    "duplicate rows",
    "unparseable dates",
    "inf in a column",
    "target all NaN",
    "horizon beyond the dates",
    "close not positive",
    "too few dates",
    "validation empty",
    "unknown key",
    "value out of range",
    "unknown precision",
    "fp16 on a CPU",
]


@pytest.mark.parametrize("name", CASES)
def test_bad_input_stops_with_one_line_and_leaves_the_study(tmp_path, capsys, existing, name):
    db, url = existing
    before = fingerprint(db, url)
    toml, expected = case(name, tmp_path)
    capsys.readouterr()
    rc = main(["--config", str(toml), "--storage", url, "--n-trials", "1", "--device", "cpu", "-q"])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("optuna-run: error: "), err
    for word in expected:
        assert word in lines[0], (word, lines[0])
    assert "Traceback" not in out + err
    assert fingerprint(db, url) == before


def test_bad_input_through_the_installed_command(tmp_path, existing):
    db, url = existing
    before = fingerprint(db, url)
    toml, expected = case("inf in a column", tmp_path)
    exe = Path(sys.executable).with_name("optuna-run")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "search.cli"]
    res = subprocess.run(
        [*cmd, "--config", str(toml), "--storage", url, "--n-trials", "1", "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("optuna-run: error: ")
    assert all(word in res.stderr for word in expected) and "Traceback" not in res.stderr
    assert res.stdout == ""
    assert fingerprint(db, url) == before


# Bad flags: refused while the arguments are parsed (or before the storage is opened), with
# one line that names the flag and what was expected; nothing is written anywhere.

SECRET = "S3cretPW"
BAD_PORT_PG = f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:abc/test"


def one_line_error(capsys, argv: list[str]) -> str:
    """Run `optuna-run ARGV` in-process; its stderr must be one error line, status 2."""
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's errors end the process, as from the shell
        rc = e.code
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("optuna-run: error: "), err
    assert "Traceback" not in out + err
    return lines[0]


def run_argv(folder: Path, url: str, *extra: str) -> list[str]:
    write_panel(folder / "good.parquet", n_dates=40, n_ids=4)
    toml = study_toml(folder, "good.parquet")
    return ["--config", str(toml), "--storage", url, "--n-trials", "1", "--device", "cpu", "-q"]


@pytest.mark.parametrize(
    ("verb", "value"),
    [
        ("run", "-1"),
        ("run", "99999999999"),
        ("run", "4294967296"),
        ("confirm", "-1"),
        ("train", "-5"),
    ],
)
def test_a_seed_out_of_range_is_refused_by_every_verb(tmp_path, capsys, existing, verb, value):
    db, url = existing
    before = fingerprint(db, url)
    if verb == "run":
        argv = [*run_argv(tmp_path, url), "--seed", value]
    else:
        argv = [verb, "--study-name", "s", "--storage", url, "--device", "cpu", "--seed", value]
    line = one_line_error(capsys, argv)
    assert f"argument --seed: expected a seed from 0 to {2**32 - 1}, got {value}" in line, line
    assert fingerprint(db, url) == before


def test_the_largest_seed_leaves_room_for_every_worker(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/new.db"
    argv = [*run_argv(tmp_path, url), "--seed", str(2**32 - 1), "--workers", "2"]
    line = one_line_error(capsys, argv)
    assert "--seed 4294967295 with --workers 2" in line and "4294967294" in line, line
    assert not (tmp_path / "new.db").exists()


def test_a_config_seed_out_of_range_is_refused(tmp_path, capsys, existing):
    db, url = existing
    before = fingerprint(db, url)
    write_panel(tmp_path / "good.parquet", n_dates=40, n_ids=4)
    toml = study_toml(tmp_path, "good.parquet", extra="\n[search]\nseed = -1")
    argv = ["--config", str(toml), "--storage", url, "--n-trials", "1", "--device", "cpu", "-q"]
    line = one_line_error(capsys, argv)
    assert f"{toml}: [search] seed: expected a seed from 0 to 4294967295, got -1" in line, line
    assert fingerprint(db, url) == before


@pytest.mark.parametrize(
    ("verb", "url", "expected"),
    [
        ("run", BAD_PORT_PG, ["postgres:***@127.0.0.1:abc", "not valid", "PORT a number"]),
        ("export", BAD_PORT_PG, ["postgres:***@127.0.0.1:abc", "not valid", "PORT a number"]),
        ("run", "postgresql://u:pw@127.0.0.1:99999/t", ["PORT from 1 to 65535, got 99999"]),
        ("run", "sqlite://", ["'sqlite://'", "in-memory SQLite", "sqlite:///FILE"]),
        ("run", "sqlite:///:memory:", ["'sqlite:///:memory:'", "in-memory SQLite"]),
        ("export", "sqlite:///:memory:", ["'sqlite:///:memory:'", "in-memory SQLite"]),
        ("dashboard", "sqlite://", ["'sqlite://'", "in-memory SQLite"]),
        ("run", "mysql://u:pw@127.0.0.1/t", ["u:***@", "driver that is not installed: MySQLdb"]),
        ("export", "postgresql+psycopg2://u:pw@h/t", ["not installed: psycopg2", "psycopg://"]),
        ("run", "postgresql+pyscopg://u:pw@h/t", ["unknown database driver", "+pyscopg'"]),
        ("export", "postgresql+pyscopg://u:pw@h/t", ["unknown database driver"]),
    ],
)
def test_an_unusable_storage_url_is_one_line_with_the_password_masked(
    tmp_path, capsys, verb, url, expected
):
    import importlib.util

    for driver in ("MySQLdb", "psycopg2"):
        if driver in " ".join(expected) and importlib.util.find_spec(driver):
            pytest.skip(f"{driver} is installed here")
    if verb == "run":
        argv = run_argv(tmp_path, url)
    elif verb == "export":
        argv = ["export", "--study-name", "s", "--out", str(tmp_path / "b.json"), "--storage", url]
    else:
        argv = [verb, "--storage", url, "--port", "0"]
    line = one_line_error(capsys, argv)
    assert "storage URL" in line and SECRET not in line and ":pw@" not in line, line
    for word in expected:
        assert word in line, (word, line)
    assert not (tmp_path / "b.json").exists()


@pytest.mark.parametrize("verb", ["run", "export"])
@pytest.mark.parametrize("kind", ["folder", "csv"])
def test_a_sqlite_path_that_is_no_database_is_one_line_and_creates_nothing(
    tmp_path, capsys, verb, kind
):
    target = tmp_path / "target"
    if kind == "folder":
        target.mkdir()
        expected = "is a folder; expected a SQLite file in it"
    else:
        target.write_text("date,symbol,close\n2020-01-02,A,1.0\n")
        expected = "is not a SQLite database"
    url = f"sqlite:///{target}"
    argv = (
        run_argv(tmp_path, url)
        if verb == "run"
        else ["export", "--study-name", "s", "--out", str(tmp_path / "b.json"), "--storage", url]
    )
    before = sorted(p.name for p in tmp_path.iterdir())
    line = one_line_error(capsys, argv)
    assert "storage URL" in line and expected in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no -lock file beside it


def test_a_password_with_an_unencoded_at_is_refused_without_showing_it(tmp_path, capsys):
    url = "postgresql+psycopg://quant:Sec@retXyz@127.0.0.1:5999/optuna"
    line = one_line_error(capsys, run_argv(tmp_path, url))
    assert "percent-encode them (@ as %40" in line, line
    assert "Sec" not in line and "retXyz" not in line, line


def test_reading_a_missing_sqlite_file_creates_none(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/nope.db"
    line = one_line_error(
        capsys, ["export", "--study-name", "s", "--out", str(tmp_path / "b.json"), "--storage", url]
    )
    assert f"--storage: no SQLite file {tmp_path}/nope.db" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_output_paths_are_checked_before_anything_is_written(tmp_path, capsys, existing):
    db, url = existing
    before = fingerprint(db, url)
    folder = tmp_path / "studies"
    folder.mkdir()
    line = one_line_error(
        capsys, ["export", "--study-name", "s", "--out", str(folder), "--storage", url]
    )
    assert f"argument --out: {folder} is a folder; expected a file name" in line, line
    line = one_line_error(
        capsys, ["report", "--study-name", "s", "--out", "/dev/null/x", "--storage", url]
    )
    assert "argument --out: cannot write /dev/null/x: /dev/null is not a folder" in line, line
    (tmp_path / "f").write_text("")
    line = one_line_error(capsys, ["report", "--out", str(tmp_path / "f"), "--storage", url])
    assert f"argument --out: {tmp_path / 'f'} is a file; expected a folder" in line, line
    line = one_line_error(
        capsys, ["export", "--study-name", "s", "--out", "/dev/null/x.json", "--storage", url]
    )
    assert "argument --out: cannot write /dev/null/x.json" in line, line
    line = one_line_error(
        capsys, ["train", "--study-name", "s", "--out", str(folder), "--storage", url]
    )
    assert f"argument --out: {folder} is a folder" in line, line
    # a checkpoint named as predictions or an export: predict's --out mistyped for train's
    for verb in (["train"], ["confirm", "--final"]):
        argv = [*verb, "--study-name", "s", "--out", str(tmp_path / "preds.csv")]
        line = one_line_error(capsys, [*argv, "--storage", url])
        assert "argument --out: expected a model checkpoint file name (e.g. model.pt)" in line
    assert not (tmp_path / "preds.csv").exists()
    assert fingerprint(db, url) == before


def test_export_checks_every_flag_before_writing(tmp_path, capsys, existing):
    db, url = existing
    out, trials = tmp_path / "x.json", tmp_path / "x.xlsx"
    argv = ["export", "--study-name", "s", "--out", str(out), "--storage", url]
    line = one_line_error(capsys, [*argv, "--trials", str(trials)])
    assert "argument --trials: expected a .csv or .parquet file name" in line, line
    line = one_line_error(
        capsys, [*argv, "--trials", str(tmp_path / "x.csv"), "--out", str(tmp_path / "x.csv")]
    )
    assert "the same file as --out" in line, line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.timeout(60)  # a proxy that took the port would serve until stopped
@pytest.mark.parametrize("port", ["99999", "-5", "65536", "http"])
@pytest.mark.parametrize("verb", ["dashboard", "proxy", "run"])
def test_a_port_out_of_range_is_refused_before_the_storage_is_touched(
    tmp_path, capsys, existing, verb, port
):
    db, url = existing
    before = fingerprint(db, url)
    fresh = tmp_path / "fresh.db"
    for storage in (url, f"sqlite:///{fresh}"):
        if verb == "run":
            argv = [*run_argv(tmp_path, storage), f"--dashboard={port}"]
            flag = "--dashboard"
        else:
            argv = [verb, "--storage", storage, f"--port={port}"]
            flag = "--port"
        line = one_line_error(capsys, argv)
        if port == "http":
            assert f"argument {flag}: expected an integer, got 'http'" in line, line
        else:
            assert f"argument {flag}: expected a port from 0 to 65535" in line, line
            assert f"got {port}" in line, line
    assert fingerprint(db, url) == before
    assert not fresh.exists()
    studies = optuna.get_all_study_names(storage=url)
    assert studies == ["s"]


def test_argparse_errors_are_one_line_naming_the_flag_once(tmp_path, capsys):
    line = one_line_error(capsys, ["--n-trials", "0"])
    assert line == (
        "optuna-run: error: argument --n-trials: expected an integer >= 1, got 0 "
        "(see optuna-run --help)"
    )
    for verb in ("export", "train", "predict", "confirm", "dashboard", "report", "proxy"):
        line = one_line_error(capsys, [verb, "--no-such-flag"])
        assert "--no-such-flag" in line or "arguments are required" in line, line
        assert line.endswith(f"(see optuna-run {verb} --help)"), line
    line = one_line_error(capsys, ["export"])
    assert "the following arguments are required: --study-name, --out" in line, line
    line = one_line_error(capsys, ["confirm", "--study-name", "s", "--top", "x"])
    assert line.count("--top") == 1 and "expected an integer, got 'x'" in line, line


def test_a_misspelt_verb_or_flag_gets_a_did_you_mean(capsys):
    """A first word that is no verb stops before anything loads, naming the verbs; a flag
    one slip from a real one is named beside it; nothing close, no guess."""
    line = one_line_error(capsys, ["trian", "--study-name", "s"])
    assert line.startswith("optuna-run: error: unknown sub-command 'trian'; did you mean 'train'?")
    assert "expected one of run, confirm, export, train, predict" in line, line
    line = one_line_error(capsys, ["frobnicate"])
    assert "did you mean" not in line and "unknown sub-command 'frobnicate'" in line, line
    line = one_line_error(capsys, ["--n-trails", "3"])
    assert "--n-trails: did you mean --n-trials?" in line, line
    line = one_line_error(capsys, ["predict", "--model", "m.pt", "--dates=test", "--outt", "x"])
    assert "--outt: did you mean --out?" in line, line
    line = one_line_error(capsys, ["--zzzzzz", "1"])
    assert "did you mean" not in line, line


def test_the_top_level_help_lists_every_verb_the_dispatcher_accepts(capsys):
    """`optuna-run --help` names each verb `optuna-run VERB` once, the same set as the
    dispatcher runs, and each of them answers its own --help."""
    import re

    from search.cli.app import VERBS

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the lines
    listed = re.findall(r"`optuna-run (\w+)`", text)
    assert sorted(listed) == sorted(VERBS), text
    for verb in listed:
        with pytest.raises(SystemExit) as e:
            main([verb, "--help"])
        assert e.value.code == 0, verb
        assert f"usage: optuna-run{'' if verb == 'run' else ' ' + verb}" in capsys.readouterr().out


def test_argparse_errors_through_the_installed_command():
    exe = Path(sys.executable).with_name("optuna-run")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "search.cli"]
    res = subprocess.run([*cmd, "--n-trials", "0"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr == (
        "optuna-run: error: argument --n-trials: expected an integer >= 1, got 0 "
        "(see optuna-run --help)\n"
    )


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN", "1e999", "0", "-3", "soon"])
def test_timeout_must_be_a_finite_number_of_seconds(tmp_path, capsys, value):
    url = f"sqlite:///{tmp_path}/new.db"
    line = one_line_error(capsys, [*run_argv(tmp_path, url), f"--timeout={value}"])
    assert line.startswith("optuna-run: error: argument --timeout: expected "), line
    assert f"got {value!r}" in line, line
    assert not (tmp_path / "new.db").exists()


@pytest.mark.parametrize("value", ["", " , "])
def test_empty_features_are_refused_not_read_as_left_out(tmp_path, capsys, value):
    url = f"sqlite:///{tmp_path}/new.db"
    line = one_line_error(capsys, [*run_argv(tmp_path, url), f"--features={value}"])
    assert line.startswith("optuna-run: error: argument --features: expected comma-"), line
    assert not (tmp_path / "new.db").exists()


def test_a_study_file_in_a_folder_that_does_not_exist_is_refused(tmp_path, capsys):
    """A mistyped SQLite path stops before the data load, creating no folder and no study."""
    url = f"sqlite:///{tmp_path}/typo/x.db"
    line = one_line_error(capsys, run_argv(tmp_path, url))
    assert f"the folder {tmp_path}/typo does not exist" in line, line
    assert not (tmp_path / "typo").exists()


def test_checking_a_sqlite_path_keeps_this_process_locks_on_it(tmp_path):
    """The check must not open the database file itself: closing any descriptor of it drops
    the POSIX locks this process's open connections hold (and other processes then write
    over their transactions: a malformed database)."""
    import sqlite3
    import subprocess
    import sys

    from search.storage.urls import check_url

    db = tmp_path / "held.db"
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("CREATE TABLE t (x)")
    con.execute("BEGIN IMMEDIATE")  # this process holds the write lock
    con.execute("INSERT INTO t VALUES (1)")
    check_url(f"sqlite:///{db}")
    probe = (
        "import sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)\n"
        "try:\n    c.execute('BEGIN IMMEDIATE')\nexcept sqlite3.OperationalError as e:\n"
        "    print(e)\nelse:\n    print('got the lock')\n"
    )
    out = subprocess.run([sys.executable, "-c", probe, str(db)], capture_output=True, text=True)
    con.execute("ROLLBACK")
    con.close()
    assert out.stdout.strip() == "database is locked", out
