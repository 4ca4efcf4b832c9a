"""The Python API as a notebook uses it: a tiny study run, confirmed, trained and predicted
without the CLI; bad input raised as exceptions; the storage opened once per run; the one
SIGINT/SIGTERM handler."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import optuna
import polars as pl
import pytest
import torch

import search
import search.storage.rdb as rdb
import search.study.runner as runner
from search.study.stop import SignalStop, Stop
from tests.search_tests.studyrun import study_toml, tiny_panel


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("OPTUNA_STORAGE", raising=False)


def test_a_notebook_runs_confirms_trains_and_predicts(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    toml = study_toml(tmp_path, "nb", data=tiny_panel(tmp_path), epochs=2)
    url = f"sqlite:///{tmp_path / 'nb.db'}"

    cfg = search.load_config(path=toml, device="cpu", overrides={"search": {"seed": 3}})
    capfd.readouterr()
    study = search.run_study(config=cfg, storage=url, n_trials=3, device="cpu")
    assert isinstance(study, optuna.Study) and study.study_name == "nb"
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    # quiet by default: nothing on the terminal, every line in the study's log
    said = capfd.readouterr()
    assert (said.out, said.err) == ("", "")
    log = (tmp_path / "nb.log").read_text()
    assert "trial    2 COMPLETE" in log and "in the study: 3 trials" in log

    # the same study resumed from its TOML path, with a cap on its finished trials
    again = search.run_study(config=toml, storage=url, n_trials=5, max_trials=4, device="cpu")
    assert len(again.trials) == 4

    rec = search.confirm(study_name="nb", storage=url, top=2, seeds=2, device="cpu", tree=False)
    assert len(rec["trials"]) == 2 and rec["winner"] in {t.number for t in again.trials}

    model = tmp_path / "nb.pt"
    ckpt = search.train(study_name="nb", storage=url, out=model, device="cpu", tree=False)
    assert model.is_file() and ckpt["trial_number"] == rec["winner"]

    df = search.predict(model=model, dates="test", device="cpu")
    assert isinstance(df, pl.DataFrame) and df.height > 0
    assert {"date", "id", "prediction", "target", "target_raw"} <= set(df.columns)
    assert df["prediction"].is_finite().all()

    assert search.verdict(model=model) == ckpt["verdict"]
    final = search.verdict(study_name="nb", storage=url)
    assert final["source"] == "train" and final["fit"] == "final" and final["model"] == str(model)
    # a reproduction of the trial (`train --exact`) is judged beside the final model, not
    # over it: the study's verdict stays the final model's
    # its default file is its own: the final model the verdict names is never replaced
    from search.api import model_path

    assert model_path("nb", exact=True) != model_path("nb")
    exact = tmp_path / "exact.pt"
    search.train(study_name="nb", storage=url, out=exact, exact=True, device="cpu", tree=False)
    assert search.verdict(study_name="nb", storage=url) == final
    study = search.load_study(study_name="nb", storage=url)
    assert study.user_attrs["verdict_exact"]["fit"] == "exact"
    assert study.user_attrs["verdict_exact"]["model"] == str(exact)
    # and a confirm at the search's budget after it leaves it too
    search.confirm(study_name="nb", storage=url, top=1, seeds=1, device="cpu", tree=False)
    assert search.verdict(study_name="nb", storage=url) == final

    out = tmp_path / "best.json"
    record = search.export(study_name="nb", storage=url, out=out, trials=tmp_path / "t.csv")
    assert json.loads(out.read_text())["trial_number"] == record["trial_number"] == rec["winner"]
    assert record["trials_written"] == 4
    assert record["verdict"] == final and record["verdict_exact"]["fit"] == "exact"
    assert search.load_study(storage=url).study_name == "nb"  # the storage's only study


def test_bad_input_raises_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = study_toml(tmp_path, "bad", data=tiny_panel(tmp_path))
    db = tmp_path / "bad.db"
    url = f"sqlite:///{db}"
    with pytest.raises(search.StorageError, match="in-memory SQLite"):
        search.run_study(config=toml, storage="sqlite://", device="cpu")
    with pytest.raises(search.ConfigError, match="n_trials: expected an integer >= 1, got 0"):
        search.run_study(config=toml, storage=url, n_trials=0, device="cpu")
    with pytest.raises(search.ConfigError, match="workers: expected an integer >= 1, got 'x'"):
        search.run_study(config=toml, storage=url, workers="x", device="cpu")
    with pytest.raises(search.ConfigError, match="--device: expected"):
        search.load_config(path=toml, device="tpu")
    with pytest.raises(search.ConfigError, match="no_such_key"):
        search.load_config(path=toml, device="cpu", overrides={"search": {"no_such_key": 1}})
    with pytest.raises(search.DataError, match="model file not found"):
        search.predict(model=tmp_path / "none.pt", device="cpu")
    with pytest.raises(search.ConfigError, match="no SQLite file"):
        search.train(study_name="bad", storage=url, device="cpu")
    cpu_sized = search.load_config(path=toml, device="cpu")
    assert cpu_sized.cpu_limits
    with monkeypatch.context() as m:  # a GPU machine: "auto" would run the CPU-sized config there
        m.setattr(torch.cuda, "is_available", lambda: True)
        with pytest.raises(search.ConfigError, match="loaded for a CPU device .* on cuda"):
            search.run_study(config=cpu_sized, storage=url, n_trials=1)
    assert not db.exists()
    search.run_study(config=toml, storage=url, n_trials=1, device="cpu")
    with pytest.raises(search.ConfigError, match=r"no study 'other' .* studies there: \['bad'\]"):
        search.confirm(study_name="other", storage=url, device="cpu")
    with pytest.raises(search.ConfigError, match=r"no study 'bda' .* \(did you mean 'bad'\?\)"):
        search.export(study_name="bda", storage=url, out=tmp_path / "x.json")
    with pytest.raises(search.ConfigError, match="out: a model is saved only by a confirm at"):
        search.confirm(study_name="bad", storage=url, device="cpu", out=tmp_path / "m.pt")
    with pytest.raises(search.ConfigError, match="is a folder; expected a file name"):
        search.confirm(study_name="bad", storage=url, device="cpu", final=True, out=tmp_path)
    with pytest.raises(search.ExportError, match="no verdict yet"):
        search.verdict(study_name="bad", storage=url)


def test_a_frame_or_a_checkpoint_given_for_a_file_is_named_on_one_line(tmp_path: Path) -> None:
    frame = pl.DataFrame({"date": ["2020-01-02"] * 3, "symbol": ["A", "B", "C"], "x": [1.0] * 3})
    url = f"sqlite:///{tmp_path / 'none.db'}"
    wrote = " (data are read from a file: write the frame to Parquet or CSV first)"
    for df, kind in ((frame, "polars"), (frame.to_pandas(), "pandas")):
        with pytest.raises(search.ConfigError) as e:
            search.predict(model=tmp_path / "m.pt", data=df, device="cpu")
        assert str(e.value) == f"data: expected a file path, got a {kind} DataFrame{wrote}"
        with pytest.raises(search.ConfigError, match=f"^data: expected a file path, got a {kind}"):
            search.train(study_name="s", storage=url, data=df, device="cpu")
    checkpoint = {"format": 1, "models": []}  # what torch.load of a model file returns
    with pytest.raises(search.ConfigError) as e:
        search.predict(model=checkpoint, device="cpu")
    assert str(e.value) == "model: expected a file path, got {'format': 1, 'models': []}"
    with pytest.raises(search.ConfigError) as e:
        search.run_study(config={"data": {"path": "x.csv"}}, storage=url, device="cpu")
    assert str(e.value) == (
        "config: expected a RunConfig (search.load_config) or a TOML path, "
        "got {'data': {'path': 'x.csv'}}"
    )
    with pytest.raises(search.ConfigError, match="^path: expected the path of a study TOML"):
        search.load_config(path={"data": {"path": "x.csv"}}, device="cpu")
    with pytest.raises(search.ConfigError, match="^out: expected a file path, got None$"):
        search.export(study_name="s", storage=url, out=None)
    assert not (tmp_path / "none.db").exists()


def test_a_run_opens_its_storage_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One worker: the study is created and its trials run on one storage of the URL."""
    from search.cli import main

    opened: list[str] = []
    real = rdb.make_storage

    def counted(url: str, **kw: Any) -> Any:
        opened.append(url)
        return real(url, **kw)

    monkeypatch.setattr(rdb, "make_storage", counted)
    monkeypatch.setattr(runner, "make_storage", counted)
    toml = study_toml(tmp_path, "once", data=tiny_panel(tmp_path))
    url = f"sqlite:///{tmp_path / 'once.db'}"
    assert main(["--config", str(toml), "--storage", url, "--n-trials", "2", "-q"]) == 0
    assert opened == [url]


def test_the_first_signal_asks_a_stop_and_the_second_exits_130(tmp_path: Path) -> None:
    seen: list[str] = []
    stop = Stop()
    before = signal.getsignal(signal.SIGTERM)
    with SignalStop(stop, on_first=seen.append):
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop() and stop.signal_name == "SIGTERM" and seen == ["SIGTERM"]
    assert signal.getsignal(signal.SIGTERM) is before

    script = textwrap.dedent(
        """
        import os, signal, sys
        from search.study.stop import SignalStop, Stop
        SignalStop(Stop(), at_exit=lambda: print("at exit", flush=True)).install()
        os.kill(os.getpid(), signal.SIGINT)
        print("first", flush=True)
        os.kill(os.getpid(), signal.SIGINT)
        print("not reached", flush=True)
        """
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    res = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert res.returncode == 130, res.stderr
    assert res.stdout.split() == ["first", "at", "exit"]


def test_the_api_is_listed_before_it_is_loaded() -> None:
    """`dir(search)` (a notebook's completion) lists the whole API, loaded on first use:
    listing it imports no torch."""
    code = (
        "import sys, search, data, search.config as c; "
        "missing = [n for n in search.__all__ if n not in dir(search)]; "
        "assert not missing, missing; "
        "assert 'load_panel' in dir(data) and 'load_config' in dir(c); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", code], check=True)
