"""How often the verdict's noise rule calls a skill-less model a winner, with forward returns
of 1, 5 and 20 dates: the paired standard error of the daily rank IC difference as the plain
std / sqrt(n) and as the verdict computes it (models.metrics.mean_se, horizon - 1 lags).

    python bench/verdict_noise.py [--reps 300] [--dates 250] [--securities 100]

Two signals with no skill, each persistent over dates (an AR(1) per security, 0.95), scored
on the per-date rank IC against h-date forward returns of independent daily returns; the
verdict calls the first the winner when the mean daily difference exceeds 2 standard
errors (one-sided: about 2.3% by chance if the error is right). Prints, per horizon: the
true spread of the mean difference over the repetitions, the average of each estimate, and
each rule's share of false winners.
"""

from __future__ import annotations

import argparse
import time

import torch

from models.metrics import daily_rank_ic, mean_se


def signal(g: torch.Generator, dates: int, securities: int, rho: float) -> torch.Tensor:
    x = torch.empty(dates, securities, dtype=torch.float64)
    x[0] = torch.randn(securities, generator=g, dtype=torch.float64)
    for d in range(1, dates):
        e = torch.randn(securities, generator=g, dtype=torch.float64)
        x[d] = rho * x[d - 1] + (1 - rho**2) ** 0.5 * e
    return x


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=300)
    ap.add_argument("--dates", type=int, default=250)
    ap.add_argument("--securities", type=int, default=100)
    ap.add_argument("--horizons", default="1,5,20")
    a = ap.parse_args()
    t0 = time.perf_counter()
    D, S = a.dates, a.securities
    date = torch.arange(D).repeat_interleave(S)
    print(f"{a.reps} repetitions, {D} dates x {S} securities, signals AR(1) 0.95, no skill")
    print("| horizon | true sd of the mean difference | plain se | verdict's se | "
          "false winners, plain | false winners, verdict |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|")
    for h in (int(x) for x in a.horizons.split(",")):
        g = torch.Generator().manual_seed(h)
        means, plain, lagged = [], [], []
        for _ in range(a.reps):
            r = torch.randn(D + h, S, generator=g, dtype=torch.float64)
            y = r.cumsum(0)
            fwd = (y[h:] - y[:-h])[:D]  # the h-date forward return of each date
            sa, sb = signal(g, D, S, 0.95), signal(g, D, S, 0.95)
            yy = fwd.reshape(-1)
            diff = daily_rank_ic(sa.reshape(-1), yy, date) - daily_rank_ic(sb.reshape(-1), yy, date)
            means.append(float(diff.mean()))
            plain.append(float(mean_se(diff, 0)))
            lagged.append(float(mean_se(diff, h - 1)))
        m, p, q = (torch.tensor(v) for v in (means, plain, lagged))
        print(
            f"| {h} | {float(m.std()):.4f} | {float(p.mean()):.4f} | {float(q.mean()):.4f} | "
            f"{float((m > 2 * p).double().mean()):.1%} | {float((m > 2 * q).double().mean()):.1%} |"
        )
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
