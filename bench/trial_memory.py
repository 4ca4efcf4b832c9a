"""Memory across trials: run short trials in one process and print its resident memory
after trial 10, 50 and 100 (and the CUDA memory held, on a GPU). Flat figures mean each
trial's model, optimizer and batches are released before the next one.

    python bench/trial_memory.py                  # 100 trials, bundled sample, CPU
    python bench/trial_memory.py --space varied   # model shapes change from trial to trial
    python bench/trial_memory.py --device cuda --trials 200

With `--space fixed` (default) every trial has the same tensor shapes and differs in lr,
dropout, weight decay, optimizer and clipping, so any growth would be a leak. With
`--space varied`, nearly every trial brings new shapes, and on a CPU oneDNN keeps a
primitive per shape in a bounded cache (ONEDNN_PRIMITIVE_CACHE_CAPACITY, 1024 by default):
that shows as slow growth up to the cap, and as flat figures when the variable is 0. RSS is
read after gc and malloc_trim, so memory the C allocator holds free does not count.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import torch

from data import Prepared, fingerprint, load_panel
from search.config.schema import build_config
from search.storage.rdb import make_storage
from search.study.create import open_study
from search.study.pruners import make_sampler, study_pruner
from search.study.runner import Stop, run_trials

ROOT = Path(__file__).resolve().parent.parent

STUDY = """
[study]
name = "trial-memory"

[data]
path = "{data}"
target_cs = "zscore"

[budget]
max_windows_per_epoch = 1024

[search]
sampler = "random"
pruner = "none"

[space]
epochs = 2
{shapes}
"""
SHAPES = {
    "fixed": "time_steps = 5\nnum_layers = 1\nhidden_dim = 16\nhead_dim = 8\nbatch_size = 256",
    "varied": (
        "time_steps = { low = 3, high = 10 }\nnum_layers = { low = 1, high = 2 }\n"
        "hidden_dim = { low = 4, high = 32, log = true }\nhead_dim = { choices = [0, 8] }\n"
        "batch_size = { choices = [256, 512] }"
    ),
}


def trim() -> None:
    """Give the C allocator's free memory back to the system (glibc)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def rss_mib() -> float:
    """Resident memory of this process now (not the peak)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--device", default="cpu")
    p.add_argument("--space", choices=sorted(SHAPES), default="fixed")
    p.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    p.add_argument("--data", default=str(ROOT / "data" / "sample" / "sp500_sample.parquet"))
    args = p.parse_args()
    marks = sorted({10, 50, 100, args.trials} & set(range(1, args.trials + 1)))
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "study.toml"
        config.write_text(STUDY.format(data=args.data, shapes=SHAPES[args.space]))
        cfg = build_config(config, cpu=device.type == "cpu")
        data = Prepared(load_panel(cfg.data), cfg.data, device)
        url = f"sqlite:///{tmp}/memory.db"
        storage = make_storage(url, heartbeat_interval=None)
        open_study(
            storage,
            cfg,
            fingerprint(cfg.data),
            make_sampler(cfg),
            study_pruner(cfg, data),
        )
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore")
        done = {"n": 0}
        start = time.perf_counter()
        print(
            f"{args.trials} trials ({args.space} shapes) on {device}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads; RSS before the first: {rss_mib():.1f} MiB",
            flush=True,
        )

        def on_trial(ev: dict[str, Any]) -> None:
            done["n"] += 1
            if done["n"] in marks:
                gc.collect()
                trim()
                line = (
                    f"after trial {done['n']:>4}: RSS {rss_mib():8.1f} MiB, "
                    f"{len(gc.get_objects()):>7} tracked objects, "
                    f"{time.perf_counter() - start:6.1f}s"
                )
                if device.type == "cuda":
                    line += (
                        f", CUDA allocated {torch.cuda.memory_allocated(device) / 2**20:.1f} MiB"
                        f" reserved {torch.cuda.memory_reserved(device) / 2**20:.1f} MiB"
                    )
                print(line, flush=True)

        run_trials(
            cfg,
            url,
            data,
            n_trials=args.trials,
            timeout=None,
            max_trials=None,
            on_trial=on_trial,
            stop=Stop(),
        )
        states = [
            t.state.name for t in optuna.load_study(study_name="trial-memory", storage=url).trials
        ]
        print({s: states.count(s) for s in sorted(set(states))})


if __name__ == "__main__":
    main()
