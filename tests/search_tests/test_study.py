"""End-to-end studies through the CLI, in process: pruning, resume, refusal, export, seeds."""

from __future__ import annotations

import json
import threading
import urllib.request
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

import optuna
import pytest

from search.cli import main
from tests.search_tests.helpers import load, run_cli, write_study

S = optuna.trial.TrialState


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/s.db"


def test_short_study_prunes_and_completes(tmp_path: Path, url: str) -> None:
    cfg = write_study(tmp_path, "prune")
    args = ("--n-trials", "16", "--seed", "3", "--device", "cpu")  # the CPU budget
    assert run_cli("--config", str(cfg), "--storage", url, *args) == 0
    trials = load(url, "prune").trials
    states = [t.state for t in trials]
    assert len(trials) == 16
    assert S.PRUNED in states and S.COMPLETE in states
    assert set(states) <= {S.PRUNED, S.COMPLETE}
    for t in trials:
        # one report per epoch run (the CPU's report_every, 8,192 windows, is over this
        # study's 256-window epoch), the step the windows trained: the rank IC on a fixed
        # subset of the validation dates; the value is the rank IC of the best of those
        # epochs on every validation date
        steps = sorted(t.intermediate_values)
        assert steps == [256 * e for e in range(1, t.user_attrs["epochs_run"] + 1)]
        if t.state == S.COMPLETE:
            best = t.user_attrs["best_epoch"]
            assert t.intermediate_values[256 * best] == max(t.intermediate_values.values())
            assert t.user_attrs["val_rank_ic"] == pytest.approx(t.value)
            assert {"train_seconds", "device", "val_ic", "seed", "seed_std"} <= set(t.user_attrs)
        if t.state == S.PRUNED:  # never after its last epoch
            assert t.user_attrs["epochs_run"] < t.params["epochs"]


def test_resume_adds_trials(tmp_path: Path, url: str) -> None:
    cfg = write_study(tmp_path, "resume")
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "3") == 0
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "2") == 0
    trials = load(url, "resume").trials
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]


def test_a_resume_says_which_dead_workers_trials_it_failed(
    tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A worker killed with -9 leaves its trial RUNNING; the next run fails it (its heartbeat
    stale past the grace period), queues its params again and says so at its start."""
    import time

    from search.storage.rdb import make_storage

    cfg = write_study(
        tmp_path, "stale", extra="[storage]\nheartbeat_interval = 1\ngrace_period = 2\n"
    )
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "1") == 0
    storage = make_storage(url, heartbeat_interval=1, grace_period=2)
    dead = storage.create_new_trial(storage.get_study_id_from_name("stale"))  # no beats after
    number = storage.get_trial_number_from_id(dead)
    storage.close()
    time.sleep(3)
    capsys.readouterr()
    assert main(["--config", str(cfg), "--storage", url, "--n-trials", "1"]) == 0
    err = capsys.readouterr().err
    assert f"stale: 1 trial {number} RUNNING with no heartbeat for over 2s" in err
    states = {t.number: t.state for t in load(url, "stale").trials}
    assert states[number] == optuna.trial.TrialState.FAIL


def test_a_study_read_otherwise_by_a_later_version_is_not_resumed(
    tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same file and settings resolving to other features than when the study was made
    (as an earlier version let a pattern take in a label): refused, not mixed."""
    cfg = write_study(tmp_path, "reread")
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "1") == 0
    study = load(url, "reread")
    data = dict(study.user_attrs["data"])
    data["features"] = [*data["features"], "fwd_ret_5"]  # what the study was made with
    study.set_user_attr("data", data)
    capsys.readouterr()
    assert main(["--config", str(cfg), "--storage", url, "--n-trials", "1"]) == 2
    err = capsys.readouterr().err
    assert "now resolve to other features (now without ['fwd_ret_5'], with [])" in err
    assert len(load(url, "reread").trials) == 1


def test_mismatched_resume_is_refused(
    tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_study(tmp_path, "mm")
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "2") == 0
    (tmp_path / "x").mkdir()
    other = write_study(
        tmp_path / "x",
        "mm",
        space="[space]\nhidden_dim = 5\nepochs = 2\ntime_steps = 3\nbatch_size = 256\n",
    )
    capsys.readouterr()
    assert run_cli("--config", str(other), "--storage", url, "--n-trials", "2") == 2
    err = capsys.readouterr().err
    assert "space.hidden_dim" in err and "another --study-name" in err
    # another target setting changes the data fingerprint
    other2 = write_study(tmp_path / "x", "mm", extra="[search]\nseed = 1")
    text = other2.read_text().replace('target_cs = "zscore"', 'target_cs = "demean"')
    other2.write_text(text)
    assert run_cli("--config", str(other2), "--storage", url, "--n-trials", "1") == 2
    assert "[data] target_cs: study has 'zscore', this run has 'demean'" in capsys.readouterr().err
    assert len(load(url, "mm").trials) == 2  # nothing added, nothing lost


def test_export_best(tmp_path: Path, url: str) -> None:
    cfg = write_study(tmp_path, "exp")
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "4", "--seed", "1") == 0
    out = tmp_path / "out" / "best.json"
    trials_csv = tmp_path / "out" / "trials.csv"
    assert (
        main(
            [
                "export",
                "--study-name",
                "exp",
                "--storage",
                url,
                "--out",
                str(out),
                "--trials",
                str(trials_csv),
            ]
        )
        == 0
    )
    rec = json.loads(out.read_text())
    study = load(url, "exp")
    best = study.best_trial
    assert rec["value"] == pytest.approx(best.value)
    assert rec["trial_number"] == best.number
    assert rec["best_epoch"] == best.user_attrs["best_epoch"]
    assert rec["study_name"] == "exp" and rec["direction"] == "maximize"
    # fixed params are part of the params: the JSON alone rebuilds the model
    assert rec["params"]["num_layers"] == 1 and rec["params"]["optimizer"] == "adam"
    assert rec["params"]["hidden_dim"] == best.params["hidden_dim"]
    assert len(rec["data_fingerprint"]) == 24
    assert rec["config"]["space"]["num_layers"] == 1
    assert rec["config"]["data"]["target_cs"] == "zscore"
    assert {"optuna", "torch", "python"} <= set(rec["versions"])
    # written atomically: no temporary file left beside the outputs
    assert sorted(p.name for p in out.parent.iterdir()) == ["best.json", "trials.csv"]
    assert len(trials_csv.read_text().strip().splitlines()) == 1 + 4


def test_export_unknown_study(tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_study(tmp_path, "e2")
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "1") == 0
    assert (
        main(
            ["export", "--study-name", "nope", "--storage", url, "--out", str(tmp_path / "b.json")]
        )
        == 2
    )
    assert "'nope'" in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()


def test_seed_makes_a_sequential_cpu_study_reproducible(tmp_path: Path) -> None:
    cfg = write_study(tmp_path, "seed")
    runs = []
    for i in range(2):
        url = f"sqlite:///{tmp_path}/seed{i}.db"
        assert (
            run_cli(
                "--config",
                str(cfg),
                "--storage",
                url,
                "--n-trials",
                "5",
                "--seed",
                "7",
                "--device",
                "cpu",
            )
            == 0
        )
        runs.append([(t.params, t.value, t.state) for t in load(url, "seed").trials])
    assert runs[0] == runs[1]


def test_a_resumed_seeded_study_draws_new_configurations(tmp_path: Path) -> None:
    """Rerunning a seeded command on its study (after Ctrl-C, or for more trials) goes on
    with configurations it has not drawn yet, and the same commands draw the same ones."""
    cfg = write_study(tmp_path, "again")
    runs = []
    for i in range(2):
        url = f"sqlite:///{tmp_path}/again{i}.db"
        for n in ("3", "2"):
            argv = ["--config", str(cfg), "--storage", url, "--n-trials", n, "--seed", "7"]
            assert run_cli(*argv, "--device", "cpu") == 0
        runs.append([t.params for t in load(url, "again").trials])
    first, resumed = runs[0][:3], runs[0][3:]
    assert len(resumed) == 2 and not any(p in first for p in resumed), runs[0]
    assert runs[0] == runs[1]


def test_dashboard_serves_the_study(tmp_path: Path, url: str) -> None:
    from optuna_dashboard import wsgi

    cfg = write_study(tmp_path, "dash")
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "2") == 0

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = make_server("127.0.0.1", 0, wsgi(url), handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=10) as r:
            studies = json.loads(r.read())["study_summaries"]
        assert [s["study_name"] for s in studies] == ["dash"]
        sid = studies[0]["study_id"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{sid}", timeout=10) as r:
            detail = json.loads(r.read())
        assert len(detail["trials"]) == 2
        assert all(t["intermediate_values"] for t in detail["trials"])
    finally:
        server.shutdown()


def test_a_data_mismatch_says_what_differs(tmp_path):
    """Resuming a study with other data names the [data] setting that changed, or says the
    file's content changed: not two hashes."""
    import optuna

    from search.config.schema import build_config
    from search.study.create import IncompatibleStudy, open_study

    url = f"sqlite:///{tmp_path / 'd.db'}"
    cfg = build_config(None, cpu=True)
    sampler, pruner = optuna.samplers.RandomSampler(), optuna.pruners.NopPruner()
    open_study(optuna.storages.RDBStorage(url), cfg, "aaa", sampler, pruner)
    other = build_config(None, cpu=True, flags={"data": {"horizon": 2}})
    with pytest.raises(IncompatibleStudy) as e:
        open_study(optuna.storages.RDBStorage(url), other, "bbb", sampler, pruner)
    assert "[data] horizon: study has 1, this run has 2" in str(e.value)
    assert "aaa" not in str(e.value)
    with pytest.raises(IncompatibleStudy) as e:
        open_study(optuna.storages.RDBStorage(url), cfg, "ccc", sampler, pruner)
    assert "the file's content differs" in str(e.value)


def test_a_queued_configuration_cut_by_ctrl_c_is_queued_again_on_resume(tmp_path):
    """The first configuration's trial ended by a Ctrl-C (FAIL, "interrupted ...") is queued
    again when the study resumes, once however many processes resume it; one that failed
    for another reason is not retried."""
    from search.config.schema import build_config
    from search.study.create import REQUEUED, open_study

    url = f"sqlite:///{tmp_path / 'q.db'}"
    cfg = build_config(None, cpu=True)
    sampler, pruner = optuna.samplers.RandomSampler(), optuna.pruners.NopPruner()

    def resume() -> optuna.Study:
        return open_study(optuna.storages.RDBStorage(url), cfg, "aaa", sampler, pruner)

    def cut(study: optuna.Study, reason: str) -> dict:
        trial = study.ask()
        fixed = study._storage.get_trial(trial._trial_id).system_attrs["fixed_params"]
        trial.set_user_attr("fail_reason", reason)
        study.tell(trial, state=S.FAIL)
        return fixed

    study = resume()
    first = cut(study, "interrupted (SIGINT/SIGTERM)")
    assert not study.get_trials(states=(S.WAITING,))
    study = resume()
    resume()  # a second process resuming at the same time queues nothing more
    waiting = study.get_trials(states=(S.WAITING,))
    assert [t.system_attrs["fixed_params"] for t in waiting] == [first]
    assert study.user_attrs[REQUEUED] == [0]
    assert cut(study, "RuntimeError: boom") == first
    assert not resume().get_trials(states=(S.WAITING,))  # a real failure is not retried


def test_an_enqueued_configuration_is_the_first_trial_once(tmp_path: Path, url: str) -> None:
    cfg = write_study(
        tmp_path,
        "queued",
        extra='[search]\nsampler = "random"\n[[search.enqueue]]\ntime_steps = 5\n'
        "hidden_dim = 7\nlr = 0.0123\nepochs = 3\n"
        # an entry of params this space fixes: nothing to queue
        "[[search.enqueue]]\nnum_layers = 1\nbatch_size = 256\n",
    )
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "3", "--seed", "1") == 0
    assert len(load(url, "queued").get_trials(states=(S.WAITING,))) == 0
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", "2") == 0  # resumed
    trials = load(url, "queued").trials
    assert len(trials) == 5 and {t.state for t in trials} <= {S.COMPLETE, S.PRUNED}
    queued = {"time_steps": 5, "hidden_dim": 7, "epochs": 3, "lr": 0.0123}
    assert {k: trials[0].params[k] for k in queued} == queued  # the params it leaves out
    assert {"grad_clip", "weight_decay"} <= set(trials[0].params)  # are sampled
    # queued when the study was made, not again when it is resumed; the rest are sampled
    assert [t.params["lr"] for t in trials].count(0.0123) == 1
    assert sum("fixed_params" in t.system_attrs for t in trials) == 1  # one trial was queued


def test_a_queued_configuration_is_never_pruned(tmp_path: Path) -> None:
    """The search holds a [[search.enqueue]] configuration at its whole budget: a pruner
    that would stop every trial at its first report (here: any value below 1, on a rank IC)
    stops the sampled ones, never it, whatever ran before it (a resumed or parallel run)."""
    import torch

    from data import Prepared, load_panel
    from search.config.load import build_config
    from search.study.create import queued_params
    from search.study.objective import Objective

    queue = (
        '[search]\nsampler = "random"\n'
        "[[search.enqueue]]\ntime_steps = 4\nhidden_dim = 5\nepochs = 2\nlr = 0.01\n"
    )
    cfg = build_config(write_study(tmp_path, "held", extra=queue), cpu=True)
    (queued,) = queued_params(cfg)
    data = Prepared(load_panel(cfg.data), cfg.data, torch.device("cpu"), eval_time_steps=6)
    pruner = optuna.pruners.ThresholdPruner(lower=1.0)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    objective = Objective(cfg, data)
    study.optimize(objective, n_trials=1)  # a sampled trial first: pruned at its first report
    study.enqueue_trial(queued)
    study.optimize(objective, n_trials=2)  # the queued one, then a sampled one
    S = optuna.trial.TrialState
    assert [t.state for t in study.trials] == [S.PRUNED, S.COMPLETE, S.PRUNED]
    held = study.trials[1]
    assert {k: held.params[k] for k in queued} == queued
    assert len(held.intermediate_values) == 2  # every epoch reported, none cut
    # an entry of a few params: a sampled trial that shares them is not the queued one
    few = '[search]\nsampler = "random"\n[[search.enqueue]]\ntime_steps = 4\n'
    cfg = build_config(write_study(tmp_path, "few", extra=few), cpu=True)
    sampler = optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(direction="maximize", pruner=pruner, sampler=sampler)
    study.optimize(Objective(cfg, data), n_trials=8)
    assert any(t.params["time_steps"] == 4 for t in study.trials)
    assert all(t.state == S.PRUNED for t in study.trials)
