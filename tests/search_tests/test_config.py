"""Config resolution: defaults < TOML < flags, every key checked, problems reported together."""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError, fields, replace
from pathlib import Path
from typing import Any

import pytest

from data import ConfigError, DataConfig
from search.cli import main
from search.config import load_config
from search.config.load import (
    DEFAULT_CONFIG,
    DEFAULT_CPU_BUDGET,
    DEFAULT_CPU_SPACE,
    DEFAULT_SPACE,
    build_config,
    read_toml,
)
from search.config.schema import (
    BudgetConfig,
    RunConfig,
    SearchConfig,
    StorageConfig,
    StudyConfig,
)
from search.config.space import PARAMS, Param, SearchSpace
from tests.conftest import SAMPLE
from tests.search_tests.studyrun import study_toml, tiny_panel


def toml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.toml"
    p.write_text(f'[data]\npath = "{SAMPLE}"\n' + text)
    return p


def test_default_study_file_matches_built_in_defaults() -> None:
    raw = read_toml(DEFAULT_CONFIG)
    assert raw["space"] == DEFAULT_SPACE
    assert raw["cpu"]["space"] == DEFAULT_CPU_SPACE
    assert raw["cpu"]["budget"] == DEFAULT_CPU_BUDGET
    assert set(DEFAULT_SPACE) == set(PARAMS)
    assert Path(build_config(None, cpu=False).data.path) == SAMPLE


def test_the_default_studys_cpu_comment_names_every_table_the_limits_shrink(
    tmp_path: Path,
) -> None:
    """Without its [cpu.*] lines, the default study on a CPU searches the full space and
    budget, but its final fit is still the CPU one: the comment says which tables."""
    head, tail = DEFAULT_CONFIG.read_text().split("\n# On a CPU device")
    stripped = tmp_path / "default.toml"
    stripped.write_text(head.replace("../data/sample/sp500_sample.parquet", str(SAMPLE)) + "\n")
    assert "cpu" not in read_toml(stripped)
    cpu, gpu = build_config(stripped, cpu=True), build_config(stripped, cpu=False)
    assert cpu.space.as_dict() == gpu.space.as_dict() and cpu.budget == gpu.budget
    assert (cpu.final.epochs, gpu.final.epochs) == (8, 12)
    comment = " ".join(line.lstrip("# ") for line in tail.split("[cpu.space]")[0].splitlines())
    assert "[final]" in comment and "8 epochs in place of 12" in comment


def test_gpu_gets_the_full_space_and_cpu_the_limited_one() -> None:
    gpu = build_config(None, cpu=False)
    cpu = build_config(None, cpu=True)
    assert gpu.space.as_dict()["hidden_dim"] == {"low": 16, "high": 256, "log": True}
    assert cpu.space.as_dict()["hidden_dim"] == {"low": 8, "high": 48, "log": True}
    assert gpu.budget.max_windows_per_epoch == 0
    assert cpu.budget.max_windows_per_epoch == 65536 and cpu.budget.val_dates == 48
    assert cpu.budget.val_windows == 4096 and cpu.budget.report_every == 8192
    assert gpu.budget.val_windows == 8192 and gpu.budget.report_every == 65536


def test_left_out_params_keep_defaults_and_fixed_values_fix(tmp_path: Path) -> None:
    cfg = build_config(
        toml(tmp_path, "[space]\nepochs = 3\nlr = { low = 0.001, high = 0.1 }\n"), cpu=False
    )
    space = cfg.space.as_dict()
    assert space["epochs"] == 3
    assert space["lr"] == {"low": 0.001, "high": 0.1}
    assert space["hidden_dim"] == DEFAULT_SPACE["hidden_dim"]


def test_cpu_limits_never_override_what_the_toml_sets(tmp_path: Path) -> None:
    cfg = build_config(toml(tmp_path, "[space]\nhidden_dim = { low = 8, high = 512 }\n"), cpu=True)
    assert cfg.space.as_dict()["hidden_dim"] == {"low": 8, "high": 512}
    assert cfg.space.as_dict()["num_layers"] == DEFAULT_CPU_SPACE["num_layers"]
    off = build_config(toml(tmp_path, "[cpu]\nlimits = false\n"), cpu=True)
    assert off.space.as_dict() == build_config(toml(tmp_path, ""), cpu=False).space.as_dict()


def test_precedence_flag_over_toml_over_default(tmp_path: Path) -> None:
    p = toml(tmp_path, '[study]\nname = "from-toml"\n[search]\nsampler = "random"\n')
    cfg = build_config(p, cpu=False, flags={"study": {"name": "from-flag"}})
    assert cfg.study.name == "from-flag"
    assert cfg.search.sampler == "random"
    assert cfg.search.pruner == "hyperband"


def test_data_path_resolves_against_the_toml_folder(tmp_path: Path) -> None:
    sub = tmp_path / "a"
    sub.mkdir()
    (sub / "s.toml").write_text('[data]\npath = "../d.parquet"\n')
    cfg = build_config(sub / "s.toml", cpu=False)
    assert cfg.data.path == str(tmp_path / "d.parquet")


def test_every_problem_is_reported_together_with_did_you_mean(tmp_path: Path) -> None:
    p = toml(
        tmp_path,
        "[budget]\nmax_window_per_epoch = 3\n"
        "[space]\nhiden_dim = 4\nlr = { low = 0.1, high = 0.01 }\n"
        "dropout = { low = 0.0, high = 1.5 }\nbatch_size = { choices = [] }\n"
        '[search]\nsampler = "tpee"\n[spaces]\nlr = 1\n',
    )
    with pytest.raises(ConfigError) as e:
        build_config(p, cpu=False)
    msg = str(e.value)
    assert f"{p.resolve()}: unknown key 'spaces' (did you mean 'space'?)" in msg  # the full path
    assert (
        "[budget]: unknown key 'max_window_per_epoch' (did you mean 'max_windows_per_epoch'?)"
        in msg
    )
    assert "unknown key 'hiden_dim' (did you mean 'hidden_dim'?)" in msg
    assert "[space].lr: `low <= high` must hold" in msg
    assert "[space].dropout: must be in [0, 1), got 1.5" in msg
    assert "[space].batch_size.choices: expected a non-empty list" in msg
    assert "unknown sampler 'tpee' (did you mean 'tpe'?)" in msg
    assert len(e.value.problems) == 7


@pytest.mark.parametrize("cpu", [True, False])
def test_a_cpu_tables_problem_is_named_by_that_table(tmp_path: Path, cpu: bool) -> None:
    """A key of [cpu.budget] or [cpu.final] is named by its own table, not by the [budget] or
    [final] it is laid over, on any device; a bad value it sets on a CPU, too."""
    p = toml(
        tmp_path,
        "[budget]\nval_dates = -1\n[final]\nepochz = 2\n"
        "[cpu.budget]\nval_datez = 3\nval_windows = -2\n"
        "[cpu.final]\nseedz = 1\n[cpu.space]\nhiden_dim = 4\n",
    )
    with pytest.raises(ConfigError) as e:
        build_config(p, cpu=cpu)
    got = [x.split(";")[0] for x in e.value.problems]
    where = f"{p.resolve()}: "
    expected = [
        f"{where}[cpu.budget]: unknown key 'val_datez' (did you mean 'val_dates'?)",
        f"{where}[cpu.final]: unknown key 'seedz' (did you mean 'seeds'?)",
        f"{where}[budget] val_dates: must be >= 0, got -1",
        f"{where}[final]: unknown key 'epochz' (did you mean 'epochs'?)",
        f"{where}[cpu.space]: unknown key 'hiden_dim' (did you mean 'hidden_dim'?)",
    ]
    if cpu:
        expected.append(f"{where}[cpu.budget] val_windows: must be >= 0, got -2")
    assert sorted(got) == sorted(expected)


def test_type_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[space\].epochs: expected int values, got 2.5"):
        build_config(toml(tmp_path, "[space]\nepochs = 2.5\n"), cpu=False)
    bad = tmp_path / "h.toml"
    bad.write_text(f'[data]\npath = "{SAMPLE}"\nhorizon = "one"\n')
    with pytest.raises(ConfigError, match=r"\[data\] horizon: expected int, got 'one'"):
        build_config(bad, cpu=False)
    # a step on a log range: the clash named, not the step called wrong
    clash = "[space]\nhidden_dim = { low = 16, high = 128, step = 16, log = true }\n"
    with pytest.raises(ConfigError) as err:
        build_config(toml(tmp_path, clash), cpu=False)
    assert err.value.problems[-1].endswith(
        "[space].hidden_dim: step = 16 and log = true cannot go together (a log range has "
        "no step); drop one"
    )
    with pytest.raises(
        ConfigError, match=r"\[space\].hidden_dim.step: expected a number > 0, got 0"
    ):
        build_config(
            toml(tmp_path, "[space]\nhidden_dim = { low = 16, high = 128, step = 0 }\n"), cpu=False
        )


@pytest.mark.parametrize(
    "flag,value,expected",
    [
        ("--sampler", "grid", "unknown sampler 'grid'"),
        ("--pruner", "hyper", "unknown pruner 'hyper' (did you mean 'hyperband'?)"),
    ],
)
def test_unknown_sampler_or_pruner_stops_before_any_trial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, expected: str
) -> None:
    db = tmp_path / "x.db"
    assert main([flag, value, "--storage", f"sqlite:///{db}", "--n-trials", "1"]) == 2
    err = capsys.readouterr().err
    assert expected in err and flag in err
    assert len(err.strip().splitlines()) == 1
    assert not db.exists()


SPACE_ONLY = "[space]\nepochs = 2\n"


def test_a_toml_without_data_uses_the_default_studys_data(tmp_path: Path) -> None:
    p = tmp_path / "s.toml"
    default = build_config(None, cpu=False).data
    for text in (SPACE_ONLY, "[data]\nhorizon = 2\n" + SPACE_ONLY):
        p.write_text(text)
        cfg = build_config(p, cpu=False)
        assert Path(cfg.data.path) == SAMPLE
        # every data setting the TOML leaves out is the default study's, not a bare default
        assert cfg.data.target_cs == default.target_cs == "rank"
        assert cfg.data.normalize == default.normalize == "cs_rank"
        assert any("names no data file" in n for n in cfg.notes)
        assert cfg.study.name == "sp500_sample"  # not the default study's name
    assert cfg.data.horizon == 2


def test_data_flag_overrides_the_inherited_file_and_names_the_study(tmp_path: Path) -> None:
    own = tmp_path / "factors.csv"
    for text in (SPACE_ONLY, '[data]\nid = "id"\n' + SPACE_ONLY):
        p = tmp_path / "s.toml"
        p.write_text(text)
        cfg = build_config(p, cpu=False, flags={"data": {"path": str(own)}})
        assert cfg.data.path == str(own)
        assert cfg.study.name == "factors"
        assert cfg.data.target_cs == "rank"
        assert not any("names no data file" in n for n in cfg.notes)
    named = build_config(
        toml(tmp_path, '[study]\nname = "mine"\n'), cpu=False, flags={"data": {"path": str(own)}}
    )
    assert named.study.name == "mine"
    # no --config: the default study's name belongs to the default data, not to this file
    assert build_config(None, cpu=False, flags={"data": {"path": str(own)}}).study.name == "factors"
    assert build_config(None, cpu=False).study.name == "sp500-lstm"


def test_a_bad_flag_value_is_blamed_on_the_flag_not_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        build_config(None, cpu=False, flags={"data": {"task": "regresion"}})
    assert str(e.value).startswith("--task: must be one of")
    assert "default.toml" not in str(e.value)
    bad = tmp_path / "bad.toml"
    bad.write_text('[data]\ntask = "regresion"\n')
    with pytest.raises(ConfigError) as e:
        build_config(bad, cpu=False)
    assert str(e.value).startswith(f"{bad}: [data] task: must be one of")


def test_the_scaling_and_close_flags_set_their_data_keys(tmp_path: Path) -> None:
    """--normalize, --target-cs and --close reach [data] as the TOML keys would, a bad value
    named by its flag."""
    from search.cli.run import flags, parser

    args = parser().parse_args(
        ["--normalize", "robust", "--target-cs", "none", "--close", "adj_close", "--id", ""]
    )
    cfg = build_config(None, cpu=True, flags=flags(args))
    assert (cfg.data.normalize, cfg.data.target_cs, cfg.data.close) == (
        "robust",
        "none",
        "adj_close",
    )
    with pytest.raises(ConfigError) as e:
        build_config(None, cpu=True, flags=flags(parser().parse_args(["--normalize", "rank"])))
    assert str(e.value).startswith("--normalize: must be one of ['robust', 'cs_zscore', 'cs_rank'")


def test_cli_on_a_toml_without_data_runs_on_the_sample_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "s.toml"
    p.write_text(
        "[budget]\nmax_windows_per_epoch = 256\n[space]\ntime_steps = 3\nnum_layers = 1\n"
        "hidden_dim = 4\nhead_dim = 0\nbatch_size = 256\nepochs = 1\n"
    )
    url = f"sqlite:///{tmp_path}/s.db"
    assert main(["--config", str(p), "--storage", url, "--n-trials", "1", "-q"]) == 0
    err = capsys.readouterr().err
    assert "names no data file" in err and str(SAMPLE) in err
    assert "features (14): ret_1, ret_5" in err
    assert "target: forward return of 'close' over 1 date(s)" in err
    assert "study 'sp500_sample': this run finished 1 trial (" in err


def _stored(cfg: RunConfig) -> dict[str, Any]:
    """The config as a study stores it: its to_dict through JSON."""
    return json.loads(json.dumps(cfg.to_dict()))


@pytest.mark.parametrize("cpu", [False, True])
def test_from_dict_inverts_to_dict_for_the_default_study(cpu: bool) -> None:
    cfg = build_config(None, cpu=cpu)
    assert RunConfig.from_dict(_stored(cfg)) == cfg
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_from_dict_inverts_to_dict_for_a_custom_study(tmp_path: Path) -> None:
    p = toml(
        tmp_path,
        'features = ["ret_*", "vol_20"]\nval_start = 20170103\nclip = 3\nhorizon = 5\n'
        "[budget]\npatience = 2\nval_dates = 7\n"
        '[search]\nsampler = "random"\nseed = 7\nseeds = 2\n'
        '[study]\nobjective = "rank_ic,val_loss"\n'
        "[space]\nepochs = 2\nlr = { low = 0.001, high = 0.1, log = true }\n"
        "dropout = { low = 0, high = 0.4, step = 0.1 }\nhidden_dim = { choices = [4, 8] }\n"
        "time_steps = { low = 3, high = 9, step = 3 }\n",
    )
    cfg = load_config(path=p, cpu=True, flags={"data": {"id": "", "folds": 2}})
    assert cfg.data.clip == 3.0 and isinstance(cfg.data.clip, float)
    assert cfg.data.features == ("ret_*", "vol_20") and cfg.data.id is None
    again = RunConfig.from_dict(_stored(cfg))
    assert again == cfg
    assert again.space.as_dict() == cfg.space.as_dict() and again.to_dict() == cfg.to_dict()


def test_from_dict_names_every_bad_stored_key_at_once() -> None:
    d = _stored(build_config(None, cpu=False))
    d["budget"]["patience"] = "x"
    d["data"]["horizn"] = 2
    d["search"]["sampler"] = "tpee"
    d["space"]["epochs"] = 0
    del d["storage"]  # a table left out takes its defaults
    with pytest.raises(ConfigError) as e:
        RunConfig.from_dict(d)
    assert e.value.problems == [
        "config: [data]: unknown key 'horizn' (did you mean 'horizon'?); known keys are "
        f"{[f.name for f in fields(DataConfig)]}",
        "config: [budget] patience: expected int, got 'x'",
        "config: --sampler / [search] sampler: unknown sampler 'tpee' (did you mean 'tpe'?); "
        "valid names are ['tpe', 'random']",
        "config: [space].epochs: must be >= 1, got 0",
    ]


def test_a_dataclass_built_directly_reports_every_problem_at_once() -> None:
    with pytest.raises(ConfigError) as e:
        BudgetConfig(eval_batch_size=0, patience=-1, precision="fp8", val_dates="4")  # type: ignore[arg-type]
    assert e.value.problems == [
        "[budget] val_dates: expected int, got '4'",
        "[budget] patience: must be >= 0, got -1",
        "[budget] eval_batch_size: must be >= 1, got 0",
        "[budget] precision: expected one of fp32, fp16, bf16, got 'fp8'",
    ]
    with pytest.raises(ConfigError) as e:
        SearchConfig(seed=True, seeds=0, pruner="hyper")  # type: ignore[arg-type]
    assert len(e.value.problems) == 3
    assert e.value.problems[0] == "[search] seed: expected int or None, got True"
    with pytest.raises(ConfigError) as e:
        DataConfig(path="x.csv", horizon="one", val_start=1.5, clip=-1)  # type: ignore[arg-type]
    assert e.value.problems == [
        "[data] horizon: expected int, got 'one'",
        "[data] val_start: expected str or int or None, got 1.5",
        "[data] clip: must be > 0, got -1.0",
    ]
    with pytest.raises(ConfigError, match=r"\[storage\] grace_period: must be longer"):
        StorageConfig(heartbeat_interval=30, grace_period=30)
    with pytest.raises(ConfigError, match=r"\[space\].epochs: must be >= 1, got 0"):
        SearchSpace({**build_config(None, cpu=False).space.params, "epochs": Param("epochs", 0)})
    good = build_config(None, cpu=False)
    with pytest.raises(ConfigError) as e:
        RunConfig(
            study=StudyConfig(objective="accuracy"),
            data=replace(good.data, task="regression"),
            budget=good.budget,
            search=good.search,
            storage=good.storage,
            space=good.space,
            cpu_limits="no",  # type: ignore[arg-type]
        )
    assert e.value.problems == [
        "cpu_limits: expected bool, got 'no'",
        "--objective / [study] objective: 'accuracy' does not apply to [data] task = 'regression'",
    ]
    with pytest.raises(FrozenInstanceError):
        good.budget.patience = 3  # type: ignore[misc]


def test_values_are_checked_by_their_real_types(tmp_path: Path) -> None:
    assert DataConfig(path="x", features="f*").features == ("f*",)  # type: ignore[arg-type]
    assert DataConfig(path="x", val_start=20170103).val_start == 20170103
    # TOML's own dates (val_start = 2017-01-03, unquoted) are their ISO strings
    dated = toml(tmp_path, "val_start = 2017-01-03\ntest_start = 2018-01-02T09:30:00+08:00\n")
    cfg = load_config(path=dated).data  # the time as written: an offset does not move it
    assert (cfg.val_start, cfg.test_start) == ("2017-01-03", "2018-01-02T09:30:00")
    for value, shown in (("true", "True"), ("1.0", "1.0"), ('"1"', "'1'")):
        p = toml(tmp_path, f"[search]\nseed = {value}\n")
        with pytest.raises(ConfigError) as e:
            build_config(p, cpu=False)
        assert e.value.problems == [f"{p}: [search] seed: expected int or None, got {shown}"]
    with pytest.raises(ConfigError, match=r"\[data\] features: expected list of str, got \(1,"):
        build_config(toml(tmp_path, "features = [1, 2]\n"), cpu=False)


def test_an_empty_id_flag_means_no_id_column(tmp_path: Path) -> None:
    p = toml(tmp_path, 'id = "ticker"\n')
    assert build_config(p, cpu=False).data.id == "ticker"
    assert build_config(p, cpu=False, flags={"data": {"id": ""}}).data.id is None
    assert build_config(None, cpu=False, flags={"data": {"id": ""}}).data.id is None
    assert build_config(None, cpu=False, flags={"data": {"id": None}}).data.id == "symbol"


def test_load_config_overrides_lie_between_the_toml_and_the_flags(tmp_path: Path) -> None:
    p = toml(tmp_path, "horizon = 2\n[space]\nepochs = 3\n")
    over = {"data": {"horizon": 4}, "space": {"epochs": 2}, "search": {"sampler": "random"}}
    cfg = load_config(path=p, overrides=over, flags={"data": {"horizon": 5}})
    assert (cfg.data.horizon, cfg.space.max("epochs"), cfg.search.sampler) == (5, 2, "random")
    assert load_config(path=p, overrides=over).data.horizon == 4
    with pytest.raises(ConfigError) as e:
        load_config(
            path=p,
            overrides={"data": {"horizon": "x"}, "space": {"epochs": 0}, "spce": {}},
            flags={"search": {"seeds": 0}},
        )
    assert e.value.problems == [
        "overrides: unknown key 'spce' (did you mean 'space'?); known keys are "
        "['study', 'data', 'budget', 'search', 'storage', 'final', 'space', 'cpu']",
        "overrides: [data] horizon: expected int, got 'x'",
        "--seeds / [search] seeds: must be >= 1, got 0",
        "overrides: [space].epochs: must be >= 1, got 0",
    ]


def test_overrides_beat_the_tomls_cpu_tables_and_a_shadowed_key_is_noted(tmp_path: Path) -> None:
    """On a CPU a key an override sets wins over the file's [cpu.*] value for it (and is
    checked); a key the file sets both in [space] and [cpu.space] is named in a note."""
    p = toml(
        tmp_path,
        "[space]\nepochs = 9\nhidden_dim = 64\n[cpu.space]\nepochs = 3\nhidden_dim = 16\n"
        "[cpu.budget]\nval_dates = 20\n",
    )
    cfg = load_config(path=p, cpu=True)
    assert (cfg.space.max("epochs"), cfg.space.max("hidden_dim")) == (3, 16)
    assert cfg.notes[-1].startswith("on a CPU device [cpu.space] sets epochs, hidden_dim over")
    over = {"space": {"epochs": 2}, "budget": {"val_dates": 30}}
    cfg = load_config(path=p, cpu=True, overrides=over)
    assert (cfg.space.max("epochs"), cfg.space.max("hidden_dim")) == (2, 16)
    assert cfg.budget.val_dates == 30
    assert not any("epochs" in n for n in cfg.notes), cfg.notes
    assert load_config(path=p, overrides=over).space.max("hidden_dim") == 64  # not a CPU
    with pytest.raises(ConfigError, match=r"\[space\]\.epochs: must be >= 1, got 0"):
        load_config(path=p, cpu=True, overrides={"space": {"epochs": 0}})
    assert not load_config(cpu=True).notes  # the default study's [cpu] tables are by design


def test_a_data_frame_given_as_a_path_is_named_by_its_type_on_one_line(tmp_path: Path) -> None:
    import polars as pl

    p = toml(tmp_path, "")
    frame = pl.DataFrame({"date": ["2020-01-02"] * 3, "x": [1.0, 2.0, 3.0]})
    for df, kind in ((frame, "polars"), (frame.to_pandas(), "pandas")):
        with pytest.raises(ConfigError) as e:
            load_config(path=p, overrides={"data": {"path": df}})
        problem = e.value.problems[0]
        assert problem == f"overrides: [data] path: expected str, got a {kind} DataFrame"
        assert not any("\n" in line for line in e.value.problems)


def test_a_long_value_given_as_a_setting_is_shown_cut_not_as_a_builtins_type(
    tmp_path: Path,
) -> None:
    # "got a builtins list" named Python's module, not the value
    p = toml(tmp_path, "")
    names = [f"f{i:03d}" for i in range(60)]
    with pytest.raises(ConfigError) as e:
        load_config(path=p, overrides={"data": {"target": names}})
    problem = e.value.problems[0]
    assert problem.startswith("overrides: [data] target: expected str or None, got ['f000', ")
    assert problem.endswith("... (a list)") and "builtins" not in problem
    frames = {"a": pl_frame()}
    with pytest.raises(ConfigError) as e:
        load_config(path=p, overrides={"data": {"target": frames}})
    assert e.value.problems[0] == "overrides: [data] target: expected str or None, got a dict"


def pl_frame():  # a value whose repr spans lines
    import polars as pl

    return pl.DataFrame({"x": [1.0, 2.0, 3.0]})


def test_a_stored_study_config_reads_back_in_train(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import optuna

    from search.evaluate.retrain import StudyContext

    toml_path = study_toml(tmp_path, "stored", data=tiny_panel(tmp_path))
    url = f"sqlite:///{tmp_path}/s.db"
    assert main(["--config", str(toml_path), "--storage", url, "--n-trials", "2", "-q",
                 "--device", "cpu", "--seed", "3"]) == 0  # fmt: skip
    study = optuna.load_study(study_name="stored", storage=url)
    cfg = build_config(toml_path, cpu=True, flags={"search": {"seed": 3}})
    assert RunConfig.from_dict(study.user_attrs["config"]) == cfg
    ctx = StudyContext.of(study)
    assert ctx.run == cfg and ctx.data_config() == cfg.data
    model = tmp_path / "m.pt"
    train = ["train", "--study-name", "stored", "--storage", url, "--device", "cpu"]
    assert main([*train, "--out", str(model), "--no-tree"]) == 0
    assert model.exists()
    bad = study.user_attrs["config"]
    bad["budget"]["patience"] = -1
    study.set_user_attr("config", bad)
    capsys.readouterr()
    assert main([*train, "--out", str(tmp_path / "n.pt"), "--no-tree"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "optuna-run: error: study 'stored': its stored config does not read back: "
        "config: [budget] patience: must be >= 0, got -1"
    ]


def test_input_bins_are_searched_for_ranked_features_only(tmp_path: Path) -> None:
    default = build_config(None, cpu=False)
    assert default.data.normalize == "cs_rank"
    assert default.space.as_dict()["input_bins"] == {"choices": [0, 8, 16]}
    assert build_config(None, cpu=True).space.as_dict()["input_bins"] == 0  # [cpu.space]
    # features not ranked per date: the pieces are off unless the TOML asks for them
    robust = build_config(toml(tmp_path, 'normalize = "robust"\n'), cpu=False)
    assert robust.space.as_dict()["input_bins"] == 0
    ranked = build_config(toml(tmp_path, 'normalize = "cs_rank"\n'), cpu=False)
    assert ranked.space.as_dict()["input_bins"] == {"choices": [0, 8, 16]}
    levels = build_config(toml(tmp_path, 'normalize = "cs_rank+level"\n'), cpu=False)
    assert levels.space.as_dict()["input_bins"] == {"choices": [0, 8, 16]}
    assert (
        build_config(toml(tmp_path, 'normalize = "cs_rank"\n'), cpu=True).space.as_dict()[
            "input_bins"
        ]
        == 0
    )  # the built-in CPU limits
    # asked for on robust-scaled features: one line naming the key and what it needs
    bad = toml(tmp_path, 'normalize = "robust"\n[space]\ninput_bins = { choices = [0, 4] }\n')
    with pytest.raises(ConfigError) as e:
        build_config(bad, cpu=True)
    assert e.value.problems == [
        f"{bad}: [space] input_bins: pieces of a feature need its per-date rank in "
        '[-0.5, 0.5] ([data] normalize = "cs_rank" or "cs_rank+level"), got normalize = '
        "'robust'; set input_bins = 0 or normalize = \"cs_rank\""
    ]
    neg = toml(tmp_path, 'normalize = "cs_rank"\n[space]\ninput_bins = -1\n')
    with pytest.raises(ConfigError, match=r"\[space\].input_bins: must be >= 0"):
        build_config(neg, cpu=True)


def test_a_space_stored_before_input_bins_reads_as_it_ran() -> None:
    stored = build_config(None, cpu=True).space.as_dict()
    del stored["input_bins"]
    space = SearchSpace.from_dict(stored)
    assert space.params["input_bins"].fixed and space.params["input_bins"].value == 0


def test_enqueued_configurations_are_checked_against_the_space(tmp_path: Path) -> None:
    # the default study's first trial lies in its space on either device; where the space
    # fixes a param (input_bins on a CPU) the fixed value holds
    for cpu in (False, True):
        cfg = build_config(None, cpu=cpu)
        (entry,) = cfg.search.enqueue
        queued = cfg.space.searched(entry)
        assert queued["hidden_dim"] == 32 and queued["lr"] == 3e-3
        assert ("input_bins" in queued) is not cpu
        assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    bad = toml(
        tmp_path,
        '[[search.enqueue]]\nhidden_dim = 64\nlr = "fast"\nbatch_size = 300\nhiden_dim = 8\n'
        "[[search.enqueue]]\ntime_steps = 4.5\nepochs = 99\n",
    )
    with pytest.raises(ConfigError) as e:
        build_config(bad, cpu=True)
    assert e.value.problems == [
        f"{bad}: [search] enqueue[0]: unknown key 'hiden_dim' (did you mean 'hidden_dim'?); "
        f"known keys are {list(PARAMS)}",
        f"{bad}: [search] enqueue[0].hidden_dim: must lie in the range [8, 48], got 64",
        f"{bad}: [search] enqueue[0].lr: expected float, got 'fast'",
        f"{bad}: [search] enqueue[0].batch_size: must be one of [256, 512, 1024], got 300",
        f"{bad}: [search] enqueue[1].time_steps: expected int, got 4.5",
    ]  # epochs is fixed (6 on a CPU): the entry's 99 is not used, so not an error
    step = toml(
        tmp_path,
        "[space]\nhidden_dim = { low = 8, high = 64, step = 8 }\n"
        "[[search.enqueue]]\nhidden_dim = 20\n",
    )
    with pytest.raises(ConfigError, match=r"hidden_dim: must be 8 plus a multiple of the step 8"):
        build_config(step, cpu=False)
    with pytest.raises(ConfigError, match=r"\[search\] enqueue: expected list of dict, got \(3,\)"):
        build_config(toml(tmp_path, "[search]\nenqueue = [3]\n"), cpu=False)
