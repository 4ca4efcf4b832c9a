"""CPU: does anything beat plain nn.LSTM at the default study's shapes?

    python bench/cpu_lstm.py
    python bench/cpu_lstm.py --seconds 3 --shapes 10x16,20x32,20x48

Training steps per second (forward, backward, clipping, Adam on one batch of windows
X[T, B, F]) of three implementations of the same network (LSTM -> linear head on the last
step), measured one after another in this process, each for `--seconds` after a warm-up:

- nn.LSTM: what the product uses (oneDNN / ATen's fused CPU kernel);
- projected: the input projection of every step computed at once (one (T*B, F) x (F, 4H)
  matmul), then a Python loop over steps for the recurrence (one (B, H) x (H, 4H) matmul and
  the gates per step), as hand-written LSTMs do;
- compiled: nn.LSTM's model under torch.compile (inductor), compile time excluded and printed.

The ratio to nn.LSTM is per shape, in one run (the medians of `--repeat` runs).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from models.lstm import RecurrentNet


class Projected(nn.Module):
    """One-layer LSTM with the input projection of all steps done in one matmul."""

    def __init__(self, n_features: int, hidden: int) -> None:
        super().__init__()
        self.w_ih = nn.Linear(n_features, 4 * hidden)
        self.w_hh = nn.Linear(hidden, 4 * hidden, bias=False)
        self.head = nn.Linear(hidden, 1)
        self.hidden = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, _ = x.shape
        gx = self.w_ih(x)  # (T, B, 4H) for every step at once
        h = x.new_zeros(B, self.hidden)
        c = x.new_zeros(B, self.hidden)
        for t in range(T):
            i, f, g, o = (gx[t] + self.w_hh(h)).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
        return self.head(h).squeeze(-1)


def Plain(n_features: int, hidden: int) -> nn.Module:
    """The product's network: nn.LSTM, a linear head on the last step."""
    return RecurrentNet(n_features, 1, hidden)


def steps_per_s(
    model: nn.Module,
    fwd: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    seconds: float,
) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        loss = nn.functional.mse_loss(fwd(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(3):
        step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--shapes", default="10x16,20x32,20x48", help="TxH list")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--features", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
        f"{args.features} features; training steps/s (median of {args.repeat})"
    )
    print(
        f"{'T':>3} {'H':>4} {'nn.LSTM':>9} {'projected':>10} {'ratio':>6} {'compiled':>9} {'ratio':>6}"
    )
    for shape in args.shapes.split(","):
        T, H = (int(v) for v in shape.split("x"))
        x = torch.randn(T, args.batch, args.features)
        y = torch.randn(args.batch)
        rows: list[tuple[float, float, float]] = []
        compile_s = 0.0
        for r in range(args.repeat):
            torch.manual_seed(r)
            plain = Plain(args.features, H)
            proj = Projected(args.features, H)
            a = steps_per_s(plain, plain, x, y, args.seconds)
            b = steps_per_s(proj, proj, x, y, args.seconds)
            c = float("nan")
            if not args.no_compile:
                comp = Plain(args.features, H)
                t0 = time.perf_counter()
                fn = torch.compile(comp)
                fn(x).sum().backward()  # compile outside the timing
                compile_s = time.perf_counter() - t0
                c = steps_per_s(comp, fn, x, y, args.seconds)
            rows.append((a, b, c))
        a = statistics.median(r[0] for r in rows)
        b = statistics.median(r[1] for r in rows)
        c = statistics.median(r[2] for r in rows)
        rb = statistics.median(r[1] / r[0] for r in rows)
        rc = statistics.median(r[2] / r[0] for r in rows)
        print(
            f"{T:>3} {H:>4} {a:>9.1f} {b:>10.1f} {rb:>5.2f}x {c:>9.1f} {rc:>5.2f}x"
            + (f"  (compile {compile_s:.0f}s)" if not args.no_compile else ""),
            flush=True,
        )


if __name__ == "__main__":
    main()
