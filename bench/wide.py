"""A new user's wide factor panel against a narrow one: load, per-trial time, peak memory.

    python bench/wide.py                                  # 1,000 stocks x 1,000 dates, 150 vs 7
    python bench/wide.py --stocks 1000 --dates 2485 --trials 30     # the full-size case

Writes two synthetic long-format Parquet files of the same stocks and dates (the gaps of a
market: listings, suspensions, missing rows and values; see bench/memory.py), one with
--factors factor columns, one with --narrow, and a given target. Then runs the default study
on each as a user would, `optuna-run --data FILE --target target --features 'f*' --n-trials
N --seed 0` in a fresh process, and prints: the panel's load (the CLI's own step lines, with
their time), the median and total trial seconds, the wide/narrow ratio of the median beside
the feature ratio, and the run's peak RSS against the panel's float32 bytes.
"""

from __future__ import annotations

import argparse
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import write_panel  # noqa: E402

TRIAL = re.compile(r"^trial\s+\d+\s+(\w+)\s.*?\s([\d.]+)s\s", re.M)


def study(path: Path, trials: int, work: Path) -> dict[str, object]:
    """The default study on `path` in a fresh process: its output, times and peak RSS."""
    name = path.stem
    cmd = [sys.executable, "-m", "search.cli", "--data", str(path), "--target", "target"]
    cmd += ["--features", "f*", "--id", "symbol", "--n-trials", str(trials), "--seed", "0"]
    cmd += ["--study-name", name, "--storage", f"sqlite:///{work}/{name}.db"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if run.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{run.stderr[-3000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = run.stdout + run.stderr
    secs = [float(s) for _, s in TRIAL.findall(out)]
    loads = [ln for ln in out.splitlines() if ln.startswith("optuna-run: ") and "..." in ln]
    done = [ln for ln in out.splitlines() if "panel done in" in ln]
    return {
        "wall": wall,
        "trials": secs,
        "peak_mib": max(peak, before) / 1024,
        "load_lines": loads + done,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stocks", type=int, default=1000)
    ap.add_argument("--dates", type=int, default=1000)
    ap.add_argument("--factors", type=int, default=150)
    ap.add_argument("--narrow", type=int, default=7)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--dir", default="")
    a = ap.parse_args()
    work = Path(a.dir or tempfile.mkdtemp(prefix="wide-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = {}
    for f in (a.narrow, a.factors):
        path = work / f"panel_{f}.parquet"
        if not path.exists():
            t0 = time.perf_counter()
            write_panel(path, a.stocks, a.dates, f)
            print(
                f"wrote {path} ({path.stat().st_size / 2**20:.0f} MiB) in "
                f"{time.perf_counter() - t0:.0f} s",
                flush=True,
            )
        r = study(path, a.trials, work)
        panel_mib = a.stocks * a.dates * f * 4 / 2**20
        med = statistics.median(r["trials"]) if r["trials"] else float("nan")
        rows[f] = med
        print(f"\n{f} factors ({a.stocks} x {a.dates}; float32 panel {panel_mib:,.0f} MiB):")
        for line in r["load_lines"]:
            print(f"  {line}")
        print(
            f"  {len(r['trials'])} trials in {r['wall']:.0f} s; per trial median {med:.1f} s, "
            f"total {sum(r['trials']):.0f} s; peak RSS {r['peak_mib']:,.0f} MiB = "
            f"{r['peak_mib'] / panel_mib:.2f}x the panel",
            flush=True,
        )
    ratio = rows[a.factors] / rows[a.narrow]
    print(
        f"\nmedian trial: {a.factors} factors / {a.narrow} factors = {ratio:.2f}x "
        f"(feature ratio {a.factors / a.narrow:.1f}x)"
    )


if __name__ == "__main__":
    main()
