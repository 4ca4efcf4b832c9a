"""Training arithmetic on the CPU: "bf16" runs the LSTM's training passes in bfloat16
(oneDNN), keeps float32 weights and float32 validation, and learns what float32 learns."""

from __future__ import annotations

import pytest
import torch

from data import DataConfig, Prepared, load_panel
from models import TrainParams
from models.train import cpu_bf16_works, make_scaler
from tests.conftest import write_panel
from tests.models_tests.precision import check_mixed_against_fp32


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    path = write_panel(tmp_path_factory.mktemp("bf16") / "p.parquet", n_dates=120, n_ids=20)
    cfg = DataConfig(path=str(path), id="id", target="target", features=("f*",))
    return Prepared(load_panel(cfg), cfg, torch.device("cpu"))


needs_bf16 = pytest.mark.skipif(
    not cpu_bf16_works(), reason="this CPU's oneDNN has no bfloat16 RNN (AVX-512 or AMX)"
)


@needs_bf16
def test_bf16_trains_in_bfloat16_and_matches_fp32(data: Prepared) -> None:
    base = TrainParams(time_steps=8, epochs=4, batch_size=128, lr=3e-3, seed=0)
    check_mixed_against_fp32(data, base, "bf16", hidden=16)


def test_precisions_and_their_scalers() -> None:
    cpu = torch.device("cpu")
    assert make_scaler("fp32", cpu) is None and make_scaler("bf16", cpu) is None
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        make_scaler("fp16", cpu)
    with pytest.raises(ValueError, match=r"unknown precision 'fp8'"):
        make_scaler("fp8", cpu)


@needs_bf16
def test_a_study_trains_in_bf16_on_the_cpu(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """bf16 is accepted on a CPU that runs it (fp16 is refused there,
    tests/search_tests/test_bad_input) and its trials complete; the study's spec records
    the precision."""
    from search.cli import main
    from tests.search_tests.helpers import load, write_study

    url = f"sqlite:///{tmp_path}/bf16.db"
    cfg = write_study(tmp_path, "bf16", extra='precision = "bf16"')
    assert main(["--config", str(cfg), "--storage", url, "--n-trials", "2", "-q"]) == 0
    study = load(url, "bf16")
    assert study.user_attrs["spec"]["budget"]["precision"] == "bf16"
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)


def test_bf16_on_a_cpu_without_it_is_refused_before_any_trial(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """Where this CPU cannot run the RNNs in bfloat16, the study is refused with one line
    naming the key, and no study is created; where it can, the config is accepted."""
    from search.config import load_config
    from tests.search_tests.helpers import write_study

    cfg = write_study(tmp_path, "bf16", extra='precision = "bf16"')
    if cpu_bf16_works():
        assert load_config(path=cfg, cpu=True).budget.precision == "bf16"
        return
    from search.cli import main

    url = f"sqlite:///{tmp_path}/bf16.db"
    assert main(["--config", str(cfg), "--storage", url, "--n-trials", "2", "-q"]) != 0
    err = capsys.readouterr().err
    assert "[budget] precision: 'bf16' needs a CUDA device or a CPU with AVX-512" in err
    assert not (tmp_path / "bf16.db").exists() or "bf16" not in optuna_names(url)


def optuna_names(url: str) -> list[str]:
    import optuna

    return [s.study_name for s in optuna.get_all_study_summaries(url)]
