"""A short real study on each market file in ../shared/data, as it is (null prices, zero
volumes, suspensions, short histories, new listings), through the `optuna-run` CLI."""

from __future__ import annotations

import math

import optuna
import pytest

from search.cli import main
from tests.conftest import SHARED_DATA

FILES = ["sp500_5yr.parquet", "cn_sse_mainboard.parquet"]

STUDY = """
[study]
name = "shared"

[data]
path = "{path}"
target_cs = "zscore"
target_winsor = 0.01

[budget]
max_windows_per_epoch = 2048

[space]
time_steps = 5
num_layers = 1
hidden_dim = 8
head_dim = 0
dropout = 0.0
batch_size = 512
epochs = 1
optimizer = "adam"
"""


@pytest.mark.shared_data
@pytest.mark.parametrize("name", FILES)
def test_short_study_on_real_file(tmp_path, capsys, name):
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is not present")
    toml = tmp_path / "study.toml"
    toml.write_text(STUDY.format(path=path.as_posix()))
    url = f"sqlite:///{tmp_path / 'x.db'}"
    rc = main(
        [
            "--config",
            str(toml),
            "--storage",
            url,
            "--n-trials",
            "2",
            "--seed",
            "0",
            "--device",
            "cpu",
            "-q",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0, err
    assert f"data: {path}" in err
    study = optuna.load_study(study_name="shared", storage=url)
    trials = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    assert len(trials) == 2
    assert all(math.isfinite(t.value) and t.user_attrs["val_windows"] > 10_000 for t in trials)
