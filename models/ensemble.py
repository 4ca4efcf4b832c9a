"""Several members (seeds x folds) of one configuration trained together on X[T, M, B, F].

Two interchangeable implementations with one interface, forward(x (T, M, B, F)) -> (M, B)
or (M, B, C):

- `Members`: M independent networks run one after another (cuDNN / oneDNN kernels each).
- `GroupedRecurrent`: the M weight sets of an LSTM or GRU stacked, so each time step is one
  batched matmul for all members, and the input projection of every step is one einsum.
  torch.vmap has no batching rule for aten::lstm, hence the explicit cell.

Both are built from M ordinary networks (each initialised under its member's seed), so a
member's initial weights do not depend on the implementation, and both give back M
ordinary networks (`to_nets`) for checkpoints and prediction. Losses are summed over
members and gradient norms are clipped per member, so every member trains exactly as it
would alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.lstm import RecurrentNet


class Members(nn.Module):
    def __init__(self, nets: list[nn.Module]) -> None:
        super().__init__()
        self.nets = nn.ModuleList(nets)
        self.n_members = len(nets)
        self.n_outputs = int(getattr(nets[0], "n_outputs", 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([net(x[:, m]) for m, net in enumerate(self.nets)])  # (M, B[, C])

    def to_nets(self) -> list[nn.Module]:
        return list(self.nets)

    def clip_grad_norm_(self, max_norm: float) -> None:
        for net in self.nets:
            nn.utils.clip_grad_norm_(net.parameters(), max_norm)


def _stack(tensors: list[torch.Tensor]) -> nn.Parameter:
    return nn.Parameter(torch.stack([t.detach().clone() for t in tensors]))


class GroupedRecurrent(nn.Module):
    """M RecurrentNet members (same shape) as one module with stacked weights."""

    def __init__(self, nets: list[RecurrentNet]) -> None:
        super().__init__()
        ref = nets[0]
        rnn = ref.rnn
        self.cell = "lstm" if isinstance(rnn, nn.LSTM) else "gru"
        self.n_members = len(nets)
        self.n_outputs = ref.n_outputs
        self.num_layers = rnn.num_layers
        self.hidden_dim = rnn.hidden_size
        self.dropout = rnn.dropout
        self.n_features = rnn.input_size
        self.head_dropout = _head_dropout(ref)
        self.rnn_weights = nn.ParameterList()
        for layer in range(self.num_layers):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                self.rnn_weights.append(_stack([getattr(n.rnn, f"{name}_l{layer}") for n in nets]))
        linears = [_linears(n) for n in nets]
        self.head_weights = nn.ParameterList()
        for j in range(len(linears[0])):
            self.head_weights.append(_stack([lin[j].weight for lin in linears]))
            self.head_weights.append(_stack([lin[j].bias for lin in linears]))
        self._template = [_clone_empty(ref)]  # a list: not registered as a submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, M, B, _ = x.shape
        H = self.hidden_dim
        h = x
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = self.rnn_weights[4 * layer : 4 * layer + 4]
            xp = torch.einsum("tmbf,mgf->tmbg", h, w_ih) + b_ih[None, :, None]  # (T, M, B, G*H)
            w_hh_t = w_hh.transpose(1, 2)  # (M, H, G*H)
            bh = b_hh[:, None]  # (M, 1, G*H)
            hs = x.new_zeros(M, B, H)
            cs = x.new_zeros(M, B, H)
            last = layer == self.num_layers - 1
            outs = []
            for t in range(T):
                gh = torch.baddbmm(bh, hs, w_hh_t)  # (M, B, G*H)
                if self.cell == "lstm":
                    i, f, g, o = (xp[t] + gh).chunk(4, -1)
                    cs = torch.sigmoid(f) * cs + torch.sigmoid(i) * torch.tanh(g)
                    hs = torch.sigmoid(o) * torch.tanh(cs)
                else:
                    xr, xz, xn = xp[t].chunk(3, -1)
                    hr, hz, hn = gh.chunk(3, -1)
                    r = torch.sigmoid(xr + hr)
                    z = torch.sigmoid(xz + hz)
                    n = torch.tanh(xn + r * hn)
                    hs = (1 - z) * n + z * hs
                if not last:
                    outs.append(hs)
            if not last:
                h = torch.stack(outs)  # (T, M, B, H)
                if self.dropout > 0:
                    h = F.dropout(h, self.dropout, self.training)
        out = F.dropout(hs, self.head_dropout, self.training)  # (M, B, H), the last step
        n_lin = len(self.head_weights) // 2
        for j in range(n_lin):
            w, b = self.head_weights[2 * j], self.head_weights[2 * j + 1]
            out = torch.baddbmm(b[:, None], out, w.transpose(1, 2))  # (M, B, out)
            if j < n_lin - 1:
                out = torch.relu(out)
        return out.squeeze(-1) if self.n_outputs == 1 else out

    def to_nets(self) -> list[nn.Module]:
        nets: list[nn.Module] = []
        for m in range(self.n_members):
            net = _clone_empty(self._template[0])
            for layer in range(self.num_layers):
                for k, name in enumerate(("weight_ih", "weight_hh", "bias_ih", "bias_hh")):
                    p = getattr(net.rnn, f"{name}_l{layer}")
                    p.data.copy_(self.rnn_weights[4 * layer + k][m].detach())
            for j, lin in enumerate(_linears(net)):
                lin.weight.data.copy_(self.head_weights[2 * j][m].detach())
                lin.bias.data.copy_(self.head_weights[2 * j + 1][m].detach())
            nets.append(net.to(self.head_weights[0].device))
        return nets

    def clip_grad_norm_(self, max_norm: float) -> None:
        """torch's clip_grad_norm_ applied to each member's own gradients."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if not grads:
            return
        sq = torch.stack([g.pow(2).flatten(1).sum(1) for g in grads]).sum(0)  # (M,)
        coef = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))


def _linears(net: RecurrentNet) -> list[nn.Linear]:
    return [m for m in net.head.modules() if isinstance(m, nn.Linear)]


def _head_dropout(net: RecurrentNet) -> float:
    return next(float(m.p) for m in net.head.modules() if isinstance(m, nn.Dropout))


def _clone_empty(net: RecurrentNet) -> RecurrentNet:
    rnn = net.rnn
    head_lins = _linears(net)
    head_dim = head_lins[0].out_features if len(head_lins) == 2 else 0
    return RecurrentNet(
        rnn.input_size,
        net.n_outputs,
        rnn.hidden_size,
        rnn.num_layers,
        dropout=_head_dropout(net),
        head_dim=head_dim,
        cell="lstm" if isinstance(rnn, nn.LSTM) else "gru",
    )


def can_group(nets: list[nn.Module]) -> bool:
    return len(nets) > 1 and all(isinstance(n, RecurrentNet) and n.input_bins == 0 for n in nets)


def group(nets: list[nn.Module], grouped: bool) -> nn.Module:
    """The members as one module: stacked weights when `grouped` (and possible)."""
    if grouped and can_group(nets):
        return GroupedRecurrent(nets)  # type: ignore[arg-type]
    return Members(nets)


def average_prediction(out: torch.Tensor, n_outputs: int) -> torch.Tensor:
    """Members' (M, B[, C]) outputs -> the ensemble's: mean value, or mean class logits'
    probabilities returned as log-probabilities (so argmax / softmax still apply)."""
    if n_outputs == 1:
        return out.mean(0)
    return torch.log(out.softmax(-1).mean(0).clamp_min(1e-12))


def _per_date_moments(out: torch.Tensor, date: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each member's per-date mean and standard deviation of its (M, B) outputs, in float64,
    gathered back to (M, B)."""
    _, inverse = torch.unique(date, return_inverse=True)
    n_dates = int(inverse.max()) + 1 if inverse.numel() else 0
    idx = inverse[None].expand_as(out)
    x = out.double()
    count = torch.zeros(out.shape[0], n_dates, dtype=x.dtype, device=out.device)
    count.scatter_add_(1, idx, torch.ones_like(x))
    mean = (torch.zeros_like(count).scatter_add_(1, idx, x) / count).gather(1, idx)
    dev = x - mean
    var = torch.zeros_like(count).scatter_add_(1, idx, dev * dev) / count
    return x, mean, var.sqrt().gather(1, idx)


def per_date_zscore(out: torch.Tensor, date: torch.Tensor) -> torch.Tensor:
    """Members' (M, B) outputs standardised within each date of `date` (B,): every member's
    cross-section to mean 0 and standard deviation 1, so networks of different output scales
    weigh alike when averaged. A date with one row, or a constant member, gives 0."""
    x, mean, std = _per_date_moments(out, date)
    z = torch.where(std > 1e-12, (x - mean) / std.clamp_min(1e-12), torch.zeros_like(x))
    return z.to(out.dtype)


def per_date_average(out: torch.Tensor, date: torch.Tensor) -> torch.Tensor:
    """Members' (M, B) outputs averaged on a common scale: their per-date z-scores averaged,
    then put back on the members' mean per-date location and spread, so the average stays on
    the scale of the target the members learnt (its MSE means what a member's means)."""
    _, mean, std = _per_date_moments(out, date)
    z = per_date_zscore(out, date).double()
    return (z.mean(0) * std.mean(0) + mean.mean(0)).to(out.dtype)


__all__ = [
    "GroupedRecurrent",
    "Members",
    "average_prediction",
    "can_group",
    "group",
    "per_date_average",
    "per_date_zscore",
]
