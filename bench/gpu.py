"""GPU figures in one prepared run: the CUDA tests, the training step in each precision, and
the default study's trials per hour by data, trials per GPU, precision and report cadence,
with the GPU's utilisation and memory, in one table.

On a GPU host without network access whose Python has PyTorch but not the study's other
packages: first, where pip reaches PyPI, `bash bench/gpu_prepare.sh` (the wheels into
.whl/, sp500_5yr into .gpudata/, cn_sse_mainboard into .gpudata-cn/); then, in the
repository on the GPU host, with .whl and .gpudata beside it (about 8 minutes; .whl, .gpudata
and the repository come to about 51 MiB):

    set -o pipefail; python3 -m pip install -q --no-index --no-deps --no-compile --target .site \
      .whl/*.whl && export PYTHONPATH=$PWD/.site:$PWD PYTHONUNBUFFERED=1 \
      && python3 bench/gpu.py --quick --data-dir .gpudata --json gpu.json 2>&1 | tee gpu.log

and at once after it, on the same host (.site still there), with .gpudata-cn alone beside it
(.whl and .gpudata-cn together are over 64 MiB; about 1.5 minutes):

    set -o pipefail; test -d .site/optuna || { echo ".site is gone: a fresh host"; exit 3; }
    export PYTHONPATH=$PWD/.site:$PWD PYTHONUNBUFFERED=1 && python3 bench/gpu.py --quick \
      --no-tests --no-steps --data-dir .gpudata-cn --json gpu-cn.json 2>&1 | tee gpu-cn.log

The JSON is written after every stage, and a study that would end past --deadline (540 s
from the start) is skipped, so a run cut short still leaves its figures; each study's
processes are killed with this script.

--quick: `pytest -m gpu`, the step rates (fp32 / fp16 / bf16, and the LSTM's dtype under
each), then the default study (studies/default.toml, its GPU space and budget, the whole
panel) timed for --seconds of trials each: sp500_5yr with 1, 2, 4 and 8 trials at once on
the GPU (worker processes) in fp32, 4 in bf16 and in fp16, 4 with one report per epoch
(report_every = 0, the resource the epoch); cn_sse_mainboard with 4 in fp32. Without
--quick, --data FILE with --workers, --precisions and --report-every lists (every
combination), and --seeds for the grouped-seeds step rates.

Each study: a fresh SQLite file; the clock starts when every worker process has started a
trial and runs --seconds, then SIGINT (the running trials end as
FAIL); trials/hour = the COMPLETE and PRUNED trials finished inside that window / the window
(with --quick's 25 s, a figure of the study's first trials, where the sampler is still
random); training windows/s and the training share count each trial's record times the
share of its run inside the window, the interrupted ones' up to their last report (so with
report_every = 0 they undercount the epoch the stop cut short). GPU utilisation (median) and
memory in use (max) are sampled by nvidia-smi every half second inside the window.
On a machine without CUDA it says so and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from models import GroupedRecurrent, Members
from models.lstm import RecurrentNet
from models.train import PRECISIONS, make_optimizer, make_scaler, train_step

ROOT = Path(__file__).resolve().parent.parent
T0 = time.monotonic()
QUICK = [  # (file, trials per GPU, precision, report_every: None = the study's own)
    ("sp500_5yr.parquet", 1, "fp32", None),
    ("sp500_5yr.parquet", 2, "fp32", None),
    ("sp500_5yr.parquet", 4, "fp32", None),
    ("sp500_5yr.parquet", 8, "fp32", None),
    ("sp500_5yr.parquet", 4, "bf16", None),
    ("sp500_5yr.parquet", 4, "fp16", None),
    ("sp500_5yr.parquet", 4, "fp32", 0),
    ("cn_sse_mainboard.parquet", 4, "fp32", None),
]


def step_rate(model: torch.nn.Module, T: int, M: int, B: int, F: int, steps: int = 30) -> float:
    """Training steps per second (forward, backward, per-member clip, Adam)."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(T, M, B, F, device="cuda")
    y = torch.randn(M, B, device="cuda")
    for i in range(steps + 5):
        if i == 5:
            torch.cuda.synchronize()
            t = time.perf_counter()
        loss = ((model(x) - y) ** 2).mean(1).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        model.clip_grad_norm_(1.0)  # type: ignore[operator]
        opt.step()
    torch.cuda.synchronize()
    return steps / (time.perf_counter() - t)


def seeds_bench() -> None:
    print("seeds trained together: grouped LSTM vs one cuDNN LSTM after another")
    print(
        f"{'M':>3} {'H':>4} {'L':>2} {'T':>3} {'B':>5} {'seq steps/s':>12} {'grouped':>9} {'ratio':>6}"
    )
    for M, H, L, T, B in [
        (1, 32, 1, 20, 1024),
        (3, 32, 1, 20, 1024),
        (5, 32, 1, 20, 1024),
        (5, 64, 2, 20, 1024),
        (5, 128, 2, 40, 2048),
        (5, 256, 3, 60, 2048),
    ]:
        nets = []
        for s in range(M):
            torch.manual_seed(s)
            nets.append(RecurrentNet(7, 1, H, L))
        seq = step_rate(Members(copy.deepcopy(nets)).cuda(), T, M, B, 7)
        grp = step_rate(GroupedRecurrent(copy.deepcopy(nets)).cuda(), T, M, B, 7)
        print(f"{M:>3} {H:>4} {L:>2} {T:>3} {B:>5} {seq:>12.1f} {grp:>9.1f} {grp / seq:>6.2f}")


def precision_bench() -> list[dict[str, Any]]:
    """Training steps/s of one network per precision, as models.train.fit steps (fused
    Adam, autocast, the fp16 scaler), and the dtype the cuDNN LSTM computed in."""
    print("one network, training steps/s by precision (the LSTM's dtype under each)")
    print(f"{'H':>4} {'L':>2} {'T':>3} {'B':>5} " + " ".join(f"{p:>16}" for p in PRECISIONS))
    rows = []
    for H, L, T, B in [
        (32, 1, 20, 1024),
        (64, 2, 20, 1024),
        (128, 2, 40, 2048),
        (256, 3, 60, 2048),
    ]:
        row: dict[str, Any] = {"H": H, "L": L, "T": T, "B": B}
        cells = []
        for precision, amp in PRECISIONS.items():
            torch.manual_seed(0)
            one = RecurrentNet(14, 1, H, L)
            net = Members([one]).cuda()
            dev = torch.device("cuda")
            opt = make_optimizer("adam", net.parameters(), 1e-3, 0.0, dev)
            scaler = make_scaler(precision, dev)
            x = torch.randn(T, 1, B, 14, device="cuda")
            y = torch.randn(1, B, device="cuda")
            seen: list[torch.dtype] = []
            h = one.rnn.register_forward_hook(lambda m, i, o, s=seen: s.append(o[0].dtype))
            for i in range(35):
                if i == 5:
                    torch.cuda.synchronize()
                    t = time.perf_counter()
                train_step(net, opt, scaler, x, lambda out, y=y: ((out - y) ** 2).mean(), 1.0, amp)
            torch.cuda.synchronize()
            rate = 30 / (time.perf_counter() - t)
            h.remove()
            row[precision] = {"steps_per_s": rate, "dtype": str(seen[-1])}
            cells.append(f"{rate:>7.0f} {str(seen[-1]).replace('torch.', ''):>8}")
        rows.append(row)
        print(f"{H:>4} {L:>2} {T:>3} {B:>5} " + " ".join(cells), flush=True)
    return rows


class Sampler:
    """nvidia-smi's utilisation and memory in use, every half second, while started."""

    def __init__(self) -> None:
        self.util: list[float] = []
        self.memory: list[float] = []
        self.on = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        query = "--query-gpu=utilization.gpu,memory.used"
        while not self.done.is_set():
            if self.on.is_set():
                try:
                    out = subprocess.run(
                        ["nvidia-smi", query, "--format=csv,noheader,nounits"],
                        capture_output=True,
                        text=True,
                        timeout=5,
                    ).stdout
                    u, m = out.splitlines()[0].split(",")
                    self.util.append(float(u))
                    self.memory.append(float(m))
                except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                    pass
            self.done.wait(0.5)

    def stop(self) -> None:
        self.done.set()
        self.thread.join(timeout=10)


def study_toml(folder: Path, precision: str, report_every: int | None) -> Path:
    """studies/default.toml with the precision (and report_every, unless None) set in its
    [budget] and, where it has one, its [cpu.budget] table."""
    text = (ROOT / "studies" / "default.toml").read_text()
    text = text.replace('path = "../data/', f'path = "{ROOT}/data/')
    keys = ["precision"] + ([] if report_every is None else ["report_every"])
    lines = [ln for ln in text.splitlines() if ln.split("=")[0].strip() not in keys]
    extra = [f'precision = "{precision}"'] + (
        [] if report_every is None else [f"report_every = {report_every}"]
    )
    out = []
    for ln in lines:
        out.append(ln)
        if ln.strip() in ("[budget]", "[cpu.budget]"):
            out += extra
    path = folder / "study.toml"
    path.write_text("\n".join(out) + "\n")
    return path


def all_workers_started(db: Path, k: int) -> datetime | None:
    """When the k-th of the study's worker processes started its first trial (each trial
    records its worker, host:pid, as it starts), None before k have; from the study's
    SQLite file."""
    import sqlite3

    if not db.exists():
        return None
    try:
        with sqlite3.connect(db, timeout=5) as c:
            firsts = c.execute(
                "SELECT MIN(t.datetime_start) FROM trials t JOIN trial_user_attributes a "
                "ON a.trial_id = t.trial_id WHERE a.key = 'worker' "
                "AND t.datetime_start IS NOT NULL GROUP BY a.value_json"
            ).fetchall()
    except sqlite3.Error:
        return None
    if len(firsts) < max(k, 1):
        return None
    # stored as naive UTC; Optuna's FrozenTrial gives naive local time: compare in local
    utc = datetime.fromisoformat(max(f[0] for f in firsts)).replace(tzinfo=timezone.utc)
    return utc.astimezone().replace(tzinfo=None)


def inside(t: Any, start: datetime, stop: datetime) -> float:
    """The share of trial `t`'s run (start to end, or to `stop`) inside [start, stop]."""
    begin, end = t.datetime_start, t.datetime_complete or stop
    if begin is None or end <= begin:
        return 0.0
    overlap = (min(end, stop) - max(begin, start)).total_seconds()
    return max(0.0, overlap) / (end - begin).total_seconds()


def die_with_parent() -> None:
    """In the child, before exec: SIGKILL when this script dies (Linux prctl)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def study(
    data: Path,
    seconds: float,
    out: Path,
    workers: int,
    precision: str,
    report_every: int | None,
    device: str = "cuda",
    startup_limit: float = 180.0,
) -> dict[str, Any]:
    """The default study on `data`, `workers` trials at once on the GPU, timed."""
    import optuna

    folder = Path(tempfile.mkdtemp(prefix="gpu-study-", dir=out))
    db = folder / "gpu.db"
    cmd = [
        sys.executable,
        "-m",
        "search.cli",
        "--config",
        str(study_toml(folder, precision, report_every)),
        "--data",
        str(data),
        "--study-name",
        "gpu",
        "--storage",
        f"sqlite:///{db}",
        "--n-trials",
        "100000",
        "--seed",
        "0",
        "--workers",
        str(workers),
        "--device",
        device,
        "-q",
    ]
    sampler = Sampler()
    # its own process group (to signal it and its workers together) in this session: the
    # device host ends a command's leftover processes unless they started a session of
    # their own; the run also dies with this script (PR_SET_PDEATHSIG), and its workers
    # with the run
    with open(folder / "run.log", "w") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0,
            preexec_fn=die_with_parent,
        )
        try:
            t_launch = time.monotonic()
            start = None
            while proc.poll() is None and time.monotonic() - t_launch < startup_limit:
                # the window opens once every worker has started a trial
                start = all_workers_started(db, workers)
                if start is not None:
                    break
                time.sleep(0.5)
            startup = time.monotonic() - t_launch
            sampler.on.set()
            time.sleep(seconds if start is not None else 0)
            sampler.on.clear()
            stop = datetime.now()  # naive local, as the trials' datetimes
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # the run and its worker processes
                proc.wait()
            sampler.stop()
    row: dict[str, Any] = {
        "data": data.name,
        "workers": workers,
        "precision": precision,
        "report_every": "study's" if report_every is None else report_every,
        "startup_s": round(startup, 1),
    }
    if start is None:
        row["error"] = (folder / "run.log").read_text()[-2000:]
        print(f"  no trial started: {row['error']}", flush=True)
        return row
    st = optuna.load_study(study_name="gpu", storage=f"sqlite:///{db}")
    row["report_every"] = st.user_attrs["spec"]["budget"].get("report_every", 0)
    window = (stop - start).total_seconds()
    done = [
        t
        for t in st.trials
        if t.state.name in ("COMPLETE", "PRUNED")
        and t.datetime_complete
        and start <= t.datetime_complete <= stop
    ]
    complete = [t for t in done if t.state.name == "COMPLETE"]
    # training done in the window: each trial's record (the interrupted ones' too) times
    # the share of its run inside the window
    share = {t.number: inside(t, start, stop) for t in st.trials}
    windows = sum(share[t.number] * int(t.user_attrs.get("windows_trained", 0)) for t in st.trials)
    fit_train = sum(
        share[t.number] * float(t.user_attrs.get("fit_train_seconds", 0.0)) for t in st.trials
    )
    fit_val = sum(
        share[t.number] * float(t.user_attrs.get("fit_val_seconds", 0.0)) for t in st.trials
    )
    row.update(
        window_s=round(window, 1),
        finished=len(done),
        complete=len(complete),
        trials_per_hour=round(len(done) / window * 3600),
        windows_per_s=round(windows / window),
        train_share=round(fit_train / max(window * workers, 1e-9), 3),
        val_share=round(fit_val / max(window * workers, 1e-9), 3),
        gpu_util_median=statistics.median(sampler.util) if sampler.util else None,
        gpu_memory_max_mib=max(sampler.memory) if sampler.memory else None,
        best_value=max((t.value for t in complete if t.value is not None), default=None),
    )
    print(
        f"  {data.name} x{workers} {precision} report_every {row['report_every']}: "
        f"{len(done)} finished ({len(complete)} complete) in {window:.0f} s = "
        f"{row['trials_per_hour']:,} trials/hour; {row['windows_per_s']:,} windows/s; GPU "
        f"{row['gpu_util_median']}% busy, {row['gpu_memory_max_mib']} MiB; startup {startup:.0f} s",
        flush=True,
    )
    return row


def cuda_tests(limit: float = 150.0) -> dict[str, Any]:
    """`pytest -m gpu` (tests/models_tests/test_cuda.py), at most 90 s a test and `limit` in
    all; its summary line."""
    t0 = time.perf_counter()
    try:
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-m",
                "gpu",
                "-q",
                "-p",
                "no:cacheprovider",
                "-o",
                "timeout=90",  # one hung test must not take the budget (pytest-timeout)
                "tests/models_tests/test_cuda.py",  # every gpu-marked test lives there
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=limit,
        )
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        print(
            f"pytest -m gpu: still running after {limit:.0f} s, stopped\n{out[-3000:]}", flush=True
        )
        return {"returncode": None, "summary": f"timed out after {limit:.0f} s"}
    lines = (r.stdout + r.stderr).strip().splitlines()
    summary = lines[-1] if lines else "(no output)"
    print(f"pytest -m gpu: {summary} ({time.perf_counter() - t0:.0f} s)", flush=True)
    if r.returncode != 0:
        print("\n".join(lines[-60:]), flush=True)
    return {"returncode": r.returncode, "summary": summary}


def table(rows: list[dict[str, Any]]) -> None:
    print(
        "\n| data | trials at once | precision | report_every | finished (complete) | window | "
        "trials/hour | training windows/s | training share | GPU busy (median) | "
        "GPU memory (max) | best value |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if "skipped" in r or "error" in r:
            why = "skipped (deadline)" if "skipped" in r else "failed"
            print(f"| {r['data']} | {r['workers']} | {r['precision']} | | {why} | | | | | | | |")
            continue
        best = "n/a" if r["best_value"] is None else f"{r['best_value']:+.4f}"
        util = "n/a" if r["gpu_util_median"] is None else f"{r['gpu_util_median']:.0f}%"
        mem = "n/a" if r["gpu_memory_max_mib"] is None else f"{r['gpu_memory_max_mib']:,.0f} MiB"
        print(
            f"| {r['data']} | {r['workers']} | {r['precision']} | {r['report_every']:,} | "
            f"{r['finished']} ({r['complete']}) | {r['window_s']:.0f} s | "
            f"{r['trials_per_hour']:,} | {r['windows_per_s']:,} | {r['train_share']:.0%} | "
            f"{util} | {mem} | {best} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the prepared check (~8 minutes)")
    ap.add_argument("--data-dir", default=None, help="folder of sp500_5yr / cn_sse_mainboard")
    ap.add_argument("--data", default=None, help="one panel file (without --quick)")
    ap.add_argument("--seconds", type=float, default=None, help="per study (quick: 25)")
    ap.add_argument("--out", default=tempfile.gettempdir(), help="folder for the studies")
    ap.add_argument("--workers", default="1,2,4,8", help="trials at once per GPU, a list")
    ap.add_argument("--precisions", default="fp32", help="a list of fp32, fp16, bf16")
    ap.add_argument("--report-every", default="study", help="a list; 'study' = the TOML's")
    ap.add_argument("--seeds", action="store_true", help="also the grouped-seeds step rates")
    ap.add_argument("--no-tests", action="store_true", help="skip pytest -m gpu")
    ap.add_argument("--no-steps", action="store_true", help="skip the step rates")
    ap.add_argument("--json", default=None, help="write every figure here")
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of the study timing")
    ap.add_argument(
        "--deadline",
        type=float,
        default=540.0,
        help="seconds from the start: studies that would end after it are skipped, and the "
        "table still printed (default 540, inside a 600 s limit)",
    )
    a = ap.parse_args()
    # a time limit's SIGTERM unwinds through each study's `finally` (its processes killed)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if a.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to measure")
        return
    cuda = a.device == "cuda"
    print(
        torch.__version__,
        torch.cuda.get_device_name() if cuda else a.device,
        "cuDNN",
        torch.backends.cudnn.version(),
        f"{os.cpu_count()} CPUs",
        flush=True,
    )
    if a.quick:
        if not a.data_dir:
            ap.error("--quick needs --data-dir (the folder holding the panels)")
        folder = Path(a.data_dir)
        plan = [(folder / f, k, p, r) for f, k, p, r in QUICK if (folder / f).exists()]
        if not plan:
            ap.error(f"--data-dir {folder}: neither sp500_5yr.parquet nor cn_sse_mainboard.parquet")
        seconds = a.seconds or 25.0
    else:
        if not a.data:
            ap.error("--data FILE (or --quick --data-dir DIR)")
        every = [None if e == "study" else int(e) for e in a.report_every.split(",")]
        plan = [
            (Path(a.data), int(k), p.strip(), r)
            for p in a.precisions.split(",")
            for r in every
            for k in a.workers.split(",")
        ]
        seconds = a.seconds or 90.0
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if cuda else a.device,
        "torch": torch.__version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        # "fp32" is TF32 inside cuDNN's LSTM where these say so (PyTorch's defaults: cuDNN
        # True, matmul False)
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
    }
    print(
        f"TF32: cuDNN {result['cudnn_allow_tf32']}, matmul {result['matmul_allow_tf32']}; "
        f"deadline {a.deadline:.0f} s",
        flush=True,
    )
    rows: list[dict[str, Any]] = []

    def save() -> None:  # after every stage: a run cut short still leaves its figures
        if a.json:
            Path(a.json).write_text(json.dumps({**result, "studies": rows}, indent=1))

    def stage(name: str, fn: Any) -> Any:
        try:
            return fn()
        except Exception as e:  # one stage's failure must not cost the others' figures
            print(f"{name}: failed: {type(e).__name__}: {e}", flush=True)
            return {"error": f"{type(e).__name__}: {e}"}
        finally:
            save()

    if cuda and not a.no_tests:
        result["tests"] = stage("pytest -m gpu", cuda_tests)
    if cuda and a.seeds:
        stage("seeds", seeds_bench)
    if cuda and not a.no_steps:
        result["precision"] = stage("step rates", precision_bench)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"the default study, {seconds:.0f} s of trials each:", flush=True)
    for path, k, precision, report_every in plan:
        left = a.deadline - (time.monotonic() - T0)
        # a study needs its startup (~20 s), the window and up to 30 s to stop
        if left < seconds + 60:
            print(f"  {path.name} x{k} {precision}: skipped, {left:.0f} s left", flush=True)
            rows.append(
                {"data": path.name, "workers": k, "precision": precision, "skipped": "deadline"}
            )
            continue
        row = stage(
            f"{path.name} x{k} {precision}",
            functools.partial(
                study,
                path,
                seconds,
                out,
                k,
                precision,
                report_every,
                a.device,
                startup_limit=min(180.0, left - seconds - 40),
            ),
        )
        if "error" in row and "data" not in row:
            row.update(data=path.name, workers=k, precision=precision)
        rows.append(row)
        save()
    result["studies"] = rows
    table(rows)
    save()


if __name__ == "__main__":
    main()
