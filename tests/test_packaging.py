"""The top-level packages `search`, `models` and `data` belong to this distribution alone."""

from __future__ import annotations

import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

import data
import models
import search

ROOT = Path(__file__).resolve().parent.parent


def test_no_other_distribution_provides_our_packages() -> None:
    owners = metadata.packages_distributions()
    for name in ("search", "models", "data"):
        assert set(owners.get(name, [])) == {"lstm-panel-search"}, (name, owners.get(name))


def test_packages_import_from_this_project() -> None:
    for mod in (data, models, search):
        assert Path(mod.__file__ or "").resolve().parent.parent == ROOT


def test_console_script() -> None:
    eps = metadata.entry_points(group="console_scripts")
    assert [e.value for e in eps if e.name == "optuna-run"] == ["search.cli:main"]


def test_run_outputs_in_studies_are_git_ignored() -> None:
    """What the verbs write into studies/ by default (the database, the log, exports, the
    model, the report) stays out of git; the study TOMLs do not."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    outputs = [
        "studies/optuna.db",
        "studies/optuna.db-lock",
        "studies/s.log",
        "studies/s-best.json",
        "studies/s-trials.csv",
        "studies/s-model.pt",
        "studies/s-report/report.html",
    ]
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *outputs, "studies/default.toml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert ignored == outputs
