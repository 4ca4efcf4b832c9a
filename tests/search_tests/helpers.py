"""Small study TOMLs and in-process CLI runs for the search tests."""

from __future__ import annotations

from pathlib import Path

import optuna

from search.cli import main
from tests.conftest import SAMPLE

TINY_SPACE = """
[space]
time_steps = {{ low = 3, high = 6 }}
num_layers = 1
hidden_dim = {{ low = 4, high = 8 }}
head_dim = 0
dropout = 0.0
batch_size = 256
epochs = {{ low = 2, high = 9 }}
optimizer = "adam"
lr = {{ low = 1e-3, high = 3e-2, log = true }}
"""


def write_study(
    folder: Path, name: str = "t", data: Path = SAMPLE, extra: str = "", space: str = TINY_SPACE
) -> Path:
    """A study TOML with a tiny space and budget: a trial takes a fraction of a second."""
    path = folder / f"{name}.toml"
    path.write_text(
        f"""
[study]
name = "{name}"
[data]
path = "{data}"
target_cs = "zscore"
[budget]
max_windows_per_epoch = 256
{extra}
{space.format()}
"""
    )
    return path


def run_cli(*args: str) -> int:
    return main([*args, "-q"])


def load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)
