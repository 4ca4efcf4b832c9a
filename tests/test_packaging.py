"""The top-level packages `search`, `models` and `data` belong to this distribution alone."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

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
