"""Peak memory of loading a factor panel and training one epoch, per time_steps.

    python bench/memory.py                      # 3000 stocks x 250 dates x 300 factors
    python bench/memory.py --stocks 300 --factors 30 --time-steps 5 20   # a quick look

Writes a synthetic long-format Parquet file (date, symbol, f000.., target) to a temporary
folder. Then, for each time_steps, in a fresh subprocess (so peaks are independent): load it
with `data.load_panel`, build `data.Prepared` on the CPU and train one epoch of a fixed LSTM
(hidden 64, 1 layer, batch 1024; the epoch's validation pass included, also in batches of
1024). It prints the growth of peak RSS over the RSS right after the imports, and that
growth divided by the panel's float32 bytes (D x S x F x 4). Target: <= 1.5 at every
time_steps; a pipeline that materialises windows needs about time_steps x that.

To show which part is the data pipeline's, another fresh subprocess per time_steps runs the
same model on random batches of the same shape without any panel ("model only": torch's
lazily allocated runtime plus one batch's forward/backward), and the table subtracts it.

It also prints the load + pivot time of ../shared/data/cn_sse_mainboard.parquet (median of
3), when the file is there.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CN_SSE = ROOT.parent / "shared" / "data" / "cn_sse_mainboard.parquet"
HIDDEN, BATCH = 64, 1024


def rss_mib(field: str) -> float:
    """VmRSS (current) or VmHWM (peak) of this process in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def write_panel(path: Path, stocks: int, dates: int, factors: int, seed: int = 0) -> None:
    """Long-format factor panel, written ten dates per row group (never held whole).

    Absent rows come as a market has them: 10% of stocks list during the first half, 5% are
    suspended once for 5-20 dates, and 0.2% of rows are missing at random; 1% of factor
    values are empty.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    listed = np.where(rng.random(stocks) < 0.10, rng.integers(0, dates // 2, stocks), 0)
    susp0 = np.where(rng.random(stocks) < 0.05, rng.integers(0, dates, stocks), dates)
    susp1 = susp0 + rng.integers(5, 21, stocks)
    day0 = np.datetime64("2020-01-01")
    symbols = np.array([f"S{s:05d}" for s in range(stocks)])
    names = [f"f{k:03d}" for k in range(factors)]
    writer = None
    for d0 in range(0, dates, 10):
        n_d = min(10, dates - d0)
        d = np.repeat(np.arange(d0, d0 + n_d), stocks)
        s = np.tile(np.arange(stocks), n_d)
        absent = (d < listed[s]) | ((d >= susp0[s]) & (d < susp1[s]))
        keep = ~absent & (rng.random(len(d)) > 0.002)
        d, s = d[keep], s[keep]
        x = rng.standard_normal((len(d), factors), dtype=np.float32)  # (N, F)
        x[rng.random(x.shape) < 0.01] = np.nan
        y = (0.1 * np.nan_to_num(x[:, 0]) + rng.standard_normal(len(d))).astype(np.float32)
        cols = {
            "date": pa.array(day0 + d.astype("timedelta64[D]")),
            "symbol": pa.array(symbols[s]),
            **{n: pa.array(x[:, k], from_pandas=True) for k, n in enumerate(names)},
            "target": pa.array(y),
        }
        table = pa.table(cols)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema, compression="snappy")
        writer.write_table(table)
    assert writer is not None
    writer.close()


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One measurement in this (fresh) process."""
    import numpy as np  # noqa: F401
    import polars  # noqa: F401
    import torch

    from data import DataConfig, Prepared, load_panel
    from models import TrainParams, build_model, fit

    torch.set_num_threads(args.threads)
    torch.backends.mkldnn.enabled = args.onednn == "on"
    T = args.time_steps[0]
    base = rss_mib("VmRSS")
    out: dict[str, Any] = {"time_steps": T, "baseline_mib": base}

    def lstm(n_features: int) -> torch.nn.Module:
        return build_model(
            "lstm",
            n_features=n_features,
            n_outputs=1,
            hidden_dim=HIDDEN,
            num_layers=1,
            dropout=0.0,
            head_dim=0,
            time_steps=T,
        )

    if args.child == "model":  # the same model on random batches, no panel
        model = lstm(args.factors)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x = torch.randn(T, BATCH, args.factors)  # (T, B, F)
        for _ in range(3):
            loss = model(x).square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.inference_mode():
            model.eval()
            for _ in range(3):
                model(x)
        out["growth_mib"] = rss_mib("VmHWM") - base
        return out

    t0 = time.perf_counter()
    if args.ohlcv:  # a daily-bar file: features and target derived from OHLCV
        cfg = DataConfig(path=args.path, target_cs="zscore", target_winsor=0.01)
    else:
        cfg = DataConfig(path=args.path, id="symbol", target="target", features=("f*",))
    panel = load_panel(cfg)
    out.update(
        load_s=time.perf_counter() - t0,
        load_growth_mib=rss_mib("VmHWM") - base,
        panel_mib=panel.values.nbytes / 2**20,
        shape=list(panel.values.shape),
    )
    if args.child == "train":
        data = Prepared(panel, cfg, torch.device("cpu"))
        model = lstm(data.n_features)
        p = TrainParams(
            time_steps=T,
            epochs=1,
            batch_size=BATCH,
            lr=1e-3,
            max_windows_per_epoch=args.max_windows,
            eval_batch_size=BATCH,
            seed=0,
        )
        t1 = time.perf_counter()
        fit(model, data, p)
        n_train = data.count("train", T)
        out.update(
            epoch_s=time.perf_counter() - t1,
            trained_windows=min(n_train, args.max_windows) if args.max_windows else n_train,
            val_windows=data.count("val", T),
        )
    out["growth_mib"] = rss_mib("VmHWM") - base
    return out


def run_child(kind: str, args: argparse.Namespace, T: int = 0, **extra: Any) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", kind, "--time-steps", str(T)]
    cmd += ["--threads", str(args.threads), "--onednn", args.onednn]
    cmd += ["--max-windows", str(args.max_windows), "--factors", str(args.factors)]
    for k, v in extra.items():
        cmd += [f"--{k}"] if v is True else [f"--{k}", str(v)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if res.returncode != 0:
        sys.exit(f"bench/memory.py: {' '.join(cmd[1:])} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stocks", type=int, default=3000)
    ap.add_argument("--dates", type=int, default=250)
    ap.add_argument("--factors", type=int, default=300)
    ap.add_argument("--time-steps", type=int, nargs="+", default=[5, 20, 60])
    ap.add_argument(
        "--max-windows",
        type=int,
        default=16384,
        help="training windows per epoch (0 = all); validation always uses all",
    )
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    ap.add_argument(
        "--onednn",
        choices=["on", "off"],
        default="on",
        help="torch's oneDNN (mkldnn) kernels, which nn.LSTM uses on the CPU when "
        "on (torch's default); off runs torch's native LSTM kernels",
    )
    ap.add_argument("--child", choices=["train", "model", "load"], help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--ohlcv", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.threads = args.threads or os.cpu_count() or 1
    if args.child:
        print(json.dumps(child(args)), flush=True)
        return

    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        path = Path(tmp) / "panel.parquet"
        t0 = time.perf_counter()
        write_panel(path, args.stocks, args.dates, args.factors)
        print(
            f"synthetic panel: {args.stocks} stocks x {args.dates} dates x {args.factors} "
            f"factors (late listings, suspensions, 1% values empty) -> "
            f"{path.stat().st_size / 2**20:.0f} MiB Parquet, written in "
            f"{time.perf_counter() - t0:.0f}s"
        )
        cap = (
            f"training capped at {args.max_windows} windows per epoch"
            if args.max_windows
            else "every training window"
        )
        print(
            f"model: LSTM hidden {HIDDEN}, 1 layer, batch {BATCH}, one epoch ({cap}; the "
            f"validation pass uses every window, in batches of {BATCH}); torch oneDNN "
            f"{args.onednn}, {args.threads} threads"
        )
        print(
            "growth: peak RSS - RSS after imports (MiB); ratio: growth / panel float32 bytes;\n"
            "model only: the same model on random batches, no panel; data = growth - model only"
        )
        print(
            f"{'time_steps':>10} {'panel':>6} {'load':>6} {'growth':>7} {'ratio':>6} "
            f"{'model only':>10} {'data':>6} {'data ratio':>10} {'load s':>7} {'epoch s':>8} "
            f"{'trained':>8} {'val win':>8}"
        )
        worst = 0.0
        for T in args.time_steps:
            r = run_child("train", args, T, path=path)
            m = run_child("model", args, T)
            panel = r["panel_mib"]
            ratio = r["growth_mib"] / panel
            data = r["growth_mib"] - m["growth_mib"]
            worst = max(worst, ratio)
            print(
                f"{T:>10} {panel:>6.0f} {r['load_growth_mib']:>6.0f} {r['growth_mib']:>7.0f} "
                f"{ratio:>6.2f} {m['growth_mib']:>10.0f} {data:>6.0f} {data / panel:>10.2f} "
                f"{r['load_s']:>7.1f} {r['epoch_s']:>8.1f} {r['trained_windows']:>8} "
                f"{r['val_windows']:>8}"
            )
        verdict = "ok" if worst <= 1.5 else "OVER"
        print(f"worst ratio {worst:.2f} (target <= 1.5): {verdict}")

    if CN_SSE.exists():
        runs = [run_child("load", args, path=CN_SSE, ohlcv=True) for _ in range(3)]
        times = [r["load_s"] for r in runs]
        D, S, F = runs[-1]["shape"]
        print(
            f"{CN_SSE.name}: {D} dates x {S} securities x {F} features; load + pivot "
            f"{statistics.median(times):.2f}s (median of 3: "
            f"{', '.join(f'{t:.2f}' for t in times)}), peak RSS growth "
            f"{runs[-1]['load_growth_mib']:.0f} MiB"
        )
    else:
        print(f"{CN_SSE}: not present, load time not measured")


if __name__ == "__main__":
    main()
