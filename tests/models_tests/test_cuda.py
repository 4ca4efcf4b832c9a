"""The CUDA path: grouped seeds against separate cuDNN networks, and a study end to end."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from models import GroupedRecurrent, Members
from models.lstm import RecurrentNet

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture
def no_tf32() -> Iterator[None]:
    """Exact float32 in cuDNN and matmul for the test, PyTorch's settings back after it."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_grouped_equals_cudnn_networks(cell: str, no_tf32: None) -> None:
    base = []
    for seed in range(4):
        torch.manual_seed(seed)
        base.append(RecurrentNet(7, 1, 32, 2, dropout=0.0, head_dim=16, cell=cell))
    sep = Members(copy.deepcopy(base)).cuda()
    grp = GroupedRecurrent(copy.deepcopy(base)).cuda()
    x = torch.randn(20, 4, 256, 7, device="cuda")
    y = torch.randn(4, 256, device="cuda")
    for model in (sep, grp):
        loss = ((model(x) - y) ** 2).mean(1).sum()
        loss.backward()
        model.clip_grad_norm_(0.5)
    torch.testing.assert_close(sep(x), grp(x), atol=1e-4, rtol=1e-4)
    gs = torch.cat([p.grad.flatten() for n in sep.to_nets() for p in n.parameters()])  # type: ignore[union-attr]
    gg = torch.cat(
        [g.grad[m].flatten() for m in range(4) for g in _ordered(grp)]  # type: ignore[index]
    )
    assert gs.shape == gg.shape


def _ordered(grp: GroupedRecurrent) -> list[torch.nn.Parameter]:
    return [*grp.rnn_weights, *grp.head_weights]


def test_a_study_trains_on_cuda(tmp_path: Path) -> None:
    from search.cli import main
    from tests.search_tests.helpers import load, write_study

    url = f"sqlite:///{tmp_path}/cuda.db"
    cfg = write_study(tmp_path, "cuda", extra='[search]\nseeds = 3\npruner = "none"')
    argv = ["--config", str(cfg), "--storage", url, "--n-trials", "2", "--device", "cuda", "-q"]
    assert main(argv) == 0
    trials = load(url, "cuda").trials
    assert all(t.user_attrs["device"] == "cuda:0" for t in trials)
    assert all(t.value is not None for t in trials)
    out = tmp_path / "m.pt"
    args = ["train", "--study-name", "cuda", "--storage", url, "--out", str(out), "--no-tree"]
    assert main([*args, "--device", "cuda", "--exact"]) == 0
    rep = torch.load(out, weights_only=True)["reproduced"]
    # cuDNN kernels are not bitwise deterministic: close, not equal
    assert rep["retrained_value"][0] == pytest.approx(rep["trial_value"][0], abs=0.02)


def test_autocast_runs_cudnn_lstm_in_float16() -> None:
    """What precision = "fp16" relies on: under autocast the cuDNN LSTM itself computes in
    float16 (not only the head), so the setting changes the recurrence's arithmetic."""
    torch.manual_seed(0)
    net = RecurrentNet(7, 1, 64, 2).cuda()
    x = torch.randn(20, 512, 7, device="cuda")
    seen: dict[str, torch.dtype] = {}
    hook = net.rnn.register_forward_hook(lambda m, i, o: seen.update(rnn=o[0].dtype))
    with torch.autocast("cuda", dtype=torch.float16):
        y = net(x)
    hook.remove()
    assert seen["rnn"] == torch.float16
    assert y.dtype == torch.float16
    ref = net(x)
    torch.testing.assert_close(y.float(), ref, atol=5e-3, rtol=5e-2)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_training_matches_fp32_training(precision: str) -> None:
    """The same trial trained in fp32 and in fp16 (autocast + gradient scaler) or bf16
    (autocast, no scaler) reaches the same validation loss within 2%; the mixed training
    passes ran cuDNN's LSTM in float16 / bfloat16, validation and weights in float32."""
    from data import Prepared, load_panel
    from models.train import TrainParams
    from search.config.schema import build_config
    from tests.models_tests.precision import check_mixed_against_fp32

    cfg = build_config(None, cpu=False)
    data = Prepared(load_panel(cfg.data), cfg.data, torch.device("cuda"), eval_time_steps=20)
    base = TrainParams(time_steps=20, epochs=3, batch_size=512, lr=3e-3, seed=0)
    check_mixed_against_fp32(data, base, precision, hidden=32)


def test_a_study_trains_in_fp16_on_cuda(tmp_path: Path) -> None:
    from search.cli import main
    from tests.search_tests.helpers import load, write_study

    url = f"sqlite:///{tmp_path}/amp.db"
    cfg = write_study(tmp_path, "amp", extra='precision = "fp16"')
    assert main(["--config", str(cfg), "--storage", url, "--n-trials", "2", "-q"]) == 0
    study = load(url, "amp")
    assert study.user_attrs["spec"]["budget"]["precision"] == "fp16"
    assert all(t.value is not None for t in study.trials)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_steps_never_wait_for_the_gpu(precision: str) -> None:
    """A training step (gather the batch, forward, loss, backward, clipping, optimizer,
    schedule) makes no host-device synchronisation: CUDA's sync debug mode turns one into
    an error. (fp16's gradient scaler reads its overflow flag each step: not asserted.)"""
    from data import Prepared, load_panel
    from models import Members
    from models.train import PRECISIONS, make_optimizer, train_step
    from search.config.schema import build_config

    cfg = build_config(None, cpu=False)
    data = Prepared(load_panel(cfg.data), cfg.data, torch.device("cuda"), eval_time_steps=20)
    ends = data.ends("train", 20)
    folds = torch.tensor([-1, -1], device="cuda")
    torch.manual_seed(0)
    net = Members([RecurrentNet(data.n_features, 1, 32, 2) for _ in range(2)]).cuda()
    opt = make_optimizer("adam", net.parameters(), 1e-3, 0.0, torch.device("cuda"))
    order = torch.stack([ends[torch.randperm(len(ends), device="cuda")] for _ in range(2)])

    def step(i: int) -> torch.Tensor:
        b = data.batch(order[:, i * 256 : (i + 1) * 256], 20, folds)
        return train_step(
            net,
            opt,
            None,
            b.x,
            lambda out: ((out - b.y) ** 2).mean(1).sum(),
            1.0,
            PRECISIONS[precision],
        )

    total = step(0).detach()  # warm-up: cuDNN plans, the optimizer's state
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for i in range(1, 6):
            total += step(i).detach()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(total).item()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_pieces_feed_the_cudnn_lstm_under_autocast(dtype: torch.dtype) -> None:
    """input_bins on a GPU: the pieces are cut in float32 from the ranks, the cuDNN LSTM then
    runs in the autocast dtype, and the output stays close to float32's."""
    torch.manual_seed(0)
    net = RecurrentNet(7, 1, 32, 1, input_bins=16).cuda()
    x = torch.rand(20, 512, 7, device="cuda") - 0.5
    seen: dict[str, torch.dtype] = {}
    hooks = [
        net.encode.register_forward_hook(lambda m, i, o: seen.update(pieces=o.dtype)),
        net.rnn.register_forward_hook(lambda m, i, o: seen.update(rnn=o[0].dtype)),
    ]
    with torch.autocast("cuda", dtype=dtype):
        y = net(x)
    for h in hooks:
        h.remove()
    assert seen == {"pieces": torch.float32, "rnn": dtype}
    torch.testing.assert_close(y.float(), net(x), atol=2e-2, rtol=5e-2)


def test_a_study_with_pieces_trains_on_cuda(tmp_path: Path) -> None:
    from search.cli import main
    from tests.search_tests.helpers import TINY_SPACE, load, write_study

    url = f"sqlite:///{tmp_path}/bins.db"
    space = TINY_SPACE + "input_bins = {{ choices = [8, 16] }}\n"
    extra = 'precision = "bf16"\n[search]\npruner = "none"'
    cfg = write_study(tmp_path, "bins", extra=extra, space=space)
    cfg.write_text(cfg.read_text().replace("[data]", '[data]\nnormalize = "cs_rank"', 1))
    argv = ["--config", str(cfg), "--storage", url, "--n-trials", "3", "--device", "cuda", "-q"]
    assert main(argv) == 0
    trials = load(url, "bins").trials
    assert all(t.value is not None and t.params["input_bins"] in (8, 16) for t in trials)
