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
    if name == "non-numeric feature":
        frame(sector=pl.lit("tech")).write_csv(data)
        toml = study_toml(folder, "panel.csv", extra='features = ["f0", "sector"]')
        return toml, ["panel.csv", "'sector'", "[data] features", "numeric"]
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
    "non-numeric feature",
    "duplicate rows",
    "unparseable dates",
    "inf in a column",
    "target all NaN",
    "too few dates",
    "validation empty",
    "unknown key",
    "value out of range",
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
