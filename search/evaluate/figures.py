"""The report's figures of what confirm and train stored: the verdict as charts (test rank IC
per predictor with two standard errors; cumulative daily rank IC over the test dates) and
the confirmed trials (the search's value beside the confirmed mean and seed spread).

Each figure is a plotly figure for the HTML page and a function that draws the same numbers
as a PNG with matplotlib (Agg).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

Save = Callable[[Path], None]

MODEL_COLOR = "#1f5fa8"
BASELINE_COLOR = "#7f7f7f"
BEST_COLOR = "#d9730d"
TREE_COLOR = "#2e8b57"
# the objectives' names on an axis
LABELS = {
    "rank_ic": "rank IC",
    "ic": "IC",
    "icir": "ICIR",
    "rank_icir": "rank ICIR",
    "sharpe": "long-short Sharpe",
    "spread": "long-short spread",
    "hit_rate": "hit rate",
    "val_loss": "loss",
    "mse": "MSE",
    "mse_skill": "MSE skill",
    "r2_weighted": "weighted R2",
    "utility": "utility",
    "accuracy": "accuracy",
    "log_loss": "log loss",
    "auc": "AUC",
}


def objective_label(objective: str | None) -> str:
    """The axis name of a study's objective: "validation rank IC"."""
    if not objective:
        return "objective value"
    return f"validation {LABELS.get(objective, objective)}"


def cumulative(values: list[float | None]) -> list[float]:
    """The running sum of daily values; a date without a value (too few securities) adds 0."""
    out, total = [], 0.0
    for v in values:
        if v is not None and math.isfinite(v):
            total += v
        out.append(total)
    return out


def _signed(v: float) -> str:
    return f"{v:+.4f}"


def _role(name: str, verdict: dict[str, Any]) -> tuple[str, str]:
    """A predictor's label and colour: the model, the best simple baseline, the tree."""
    if name == "model":
        return "model", MODEL_COLOR
    if name == verdict.get("best_baseline"):
        return f"{name} (best on validation)", BEST_COLOR
    if name == "lgbm":
        return "lgbm (tree, reference)", TREE_COLOR
    return name, BASELINE_COLOR


def rank_ic_rows(verdict: dict[str, Any]) -> list[tuple[str, str, float, float | None]]:
    """(label, colour, test rank IC, its standard error) per predictor with a test rank IC,
    the model first, in the verdict's order."""
    rows = []
    for name, m in (verdict.get("test") or {}).items():
        v = m.get("rank_ic")
        if v is None or not math.isfinite(v):
            continue
        label, color = _role(name, verdict)
        se = m.get("rank_ic_se")
        rows.append((label, color, float(v), None if se is None else float(se)))
    return rows


def _dates_note(verdict: dict[str, Any]) -> str:
    n = len((verdict.get("daily") or {}).get("dates") or [])
    return f", {n} test dates" if n else ""


def verdict_rank_ic(verdict: dict[str, Any]) -> tuple[Any, Save, str] | None:
    """Test rank IC per predictor ± 2 standard errors: plotly, PNG writer, title (None: no
    test rank IC in the verdict)."""
    import plotly.graph_objects as go

    rows = rank_ic_rows(verdict)
    if not rows:
        return None
    title = (
        f"Test rank IC per predictor, ± 2 standard errors of the daily mean{_dates_note(verdict)}"
    )
    fig = go.Figure()
    for label, color, v, se in rows:
        fig.add_trace(
            go.Scatter(
                x=[v],
                y=[label],
                mode="markers",
                marker={"color": color, "size": 11},
                error_x={"type": "data", "array": [2 * (se or 0.0)], "visible": se is not None},
                name=label,
                hovertemplate=f"{label}: {_signed(v)}"
                + (f" ± {2 * se:.4f}" if se is not None else "")
                + "<extra></extra>",
            )
        )
    fig.add_vline(x=0, line_color="black", line_width=1)
    fig.update_layout(
        title=title,
        xaxis_title="test rank IC (mean of the daily rank IC)",
        xaxis_tickformat="+.3f",
        yaxis={"autorange": "reversed"},
        showlegend=False,
        height=160 + 38 * len(rows),
        margin={"l": 230},
    )
    return fig, lambda path: _rank_ic_png(rows, title, path), title


def _rank_ic_png(rows: list[tuple[str, str, float, float | None]], title: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 1.4 + 0.48 * max(len(rows), 1)))
    for i, (_, color, v, se) in enumerate(rows):
        err = None if se is None else [[2 * se], [2 * se]]
        ax.errorbar([v], [i], xerr=err, fmt="o", color=color, ms=8, capsize=5, lw=2)
        text = _signed(v) + ("" if se is None else f" ± {2 * se:.4f}")
        ax.text(1.02, i, text, transform=ax.get_yaxis_transform(), va="center", fontsize=10)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=10)
    ax.set_ylim(len(rows) - 0.5, -0.5)  # the model on top
    ax.xaxis.set_major_formatter(lambda x, _: f"{x:+.3f}")
    ax.set_xlabel("test rank IC (mean of the daily rank IC)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title, fontsize=11, loc="left")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def verdict_cumulative(verdict: dict[str, Any]) -> tuple[Any, Save, str] | None:
    """The cumulative daily rank IC over the test dates, per predictor (None: not stored)."""
    import plotly.graph_objects as go

    daily = verdict.get("daily")
    if not isinstance(daily, dict) or not daily.get("dates"):
        return None
    dates = list(daily["dates"])
    lines = [
        (*_role(name, verdict), cumulative(values)) for name, values in daily["rank_ic"].items()
    ]
    title = f"Cumulative daily rank IC over the {len(dates)} test dates"
    fig = go.Figure()
    for label, color, ys in lines:
        model = label == "model"
        fig.add_trace(
            go.Scatter(
                x=dates,
                y=ys,
                mode="lines",
                name=label,
                line={
                    "color": color,
                    "width": 3 if model else 1.5,
                    "dash": None if model or color != BASELINE_COLOR else "dot",
                },
            )
        )
    fig.add_hline(y=0, line_color="black", line_width=1)
    fig.update_layout(
        title=title, xaxis_title="test date", yaxis_title="sum of daily rank IC so far"
    )
    return fig, lambda path: _cumulative_png(dates, lines, title, path), title


def _as_dates(dates: list[str]) -> list[Any]:
    """The time axis for matplotlib: ISO dates as dates, an integer axis (an order column)
    as its integers, anything else as positions."""
    import pandas as pd

    if all(d.lstrip("-").isdigit() for d in dates):
        return [int(d) for d in dates]
    try:
        return list(pd.to_datetime(dates, format="ISO8601"))
    except (ValueError, TypeError):
        return list(range(len(dates)))


def _cumulative_png(
    dates: list[str], lines: list[tuple[str, str, list[float]]], title: str, path: Path
) -> None:
    import matplotlib.pyplot as plt

    x = _as_dates(dates)
    fig, ax = plt.subplots(figsize=(10, 5))
    styles = ["-", "--", ":", "-."]
    k = 0
    for label, color, ys in lines:
        if label == "model":
            ax.plot(x, ys, color=color, lw=2.6, label=label, zorder=3)
        elif color == BASELINE_COLOR:
            ax.plot(x, ys, color=color, lw=1.3, ls=styles[k % len(styles)], label=label)
            k += 1
        else:
            ax.plot(x, ys, color=color, lw=1.8, label=label)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel("sum of daily rank IC so far")
    ax.set_xlabel("test date")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    fig.autofmt_xdate()
    ax.set_title(title, fontsize=11, loc="left")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def confirm_points(
    confirm: dict[str, Any], search_values: dict[int, float]
) -> list[tuple[int, float | None, float, float, list[float]]]:
    """Per confirmed trial, the winner first (else by number): (trial, the search's value, confirmed mean, seed
    spread, each seed's value); the search's value from the record, else the study's."""
    out = []
    trials = confirm.get("trials", {})
    ranked = all("rank" in c for c in trials.values())
    for num, c in sorted(trials.items(), key=lambda kv: kv[1]["rank"] if ranked else int(kv[0])):
        search = c.get("search_value", search_values.get(int(num)))
        out.append(
            (int(num), search, float(c["mean"]), float(c.get("std") or 0.0), list(c["values"]))
        )
    return out


def confirm_figure(
    confirm: dict[str, Any], search_values: dict[int, float]
) -> tuple[Any, Save, str]:
    """The search's value beside the confirmed mean ± seed spread (and each fresh seed) per
    trial, on the objective's axis: plotly, PNG writer, title."""
    import plotly.graph_objects as go

    points = confirm_points(confirm, search_values)
    axis = objective_label(confirm.get("objective"))
    winner = confirm.get("winner")
    seeds = confirm.get("seeds") or max((len(p[4]) for p in points), default=0)
    title = (
        f"Confirmed trials: the search's value and the mean of {seeds} fresh seeds"
        + "\n(gap: the confirmed mean less the search's value)"
    )
    names = [
        f"trial {n}"
        + (" (winner)" if winner is not None and n == int(winner) else "")
        + ("" if search is None else f"\ngap {mean - search:+.3g}")
        for n, search, mean, *_ in points
    ]
    at = range(len(points))
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[i - 0.18 for i in at],
            y=[p[1] for p in points],
            mode="markers",
            marker={"symbol": "square", "size": 11, "color": BEST_COLOR},
            name="search value (the trial's own seed)",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[i + 0.18 for i in at],
            y=[p[2] for p in points],
            mode="markers",
            marker={"size": 11, "color": MODEL_COLOR},
            error_y={"type": "data", "array": [p[3] for p in points]},
            name="confirmed mean ± seed spread",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[i + 0.18 for i, p in enumerate(points) for _ in p[4]],
            y=[v for p in points for v in p[4]],
            mode="markers",
            marker={"size": 5, "color": MODEL_COLOR, "opacity": 0.4},
            name="each fresh seed",
        )
    )
    fig.update_layout(
        title=title.replace("\n", "<br>"),
        yaxis_title=axis,
        xaxis={
            "tickvals": list(at),
            "ticktext": [x.replace("\n", "<br>") for x in names],
            "range": [-0.6, len(points) - 0.4],
        },
    )
    return fig, lambda path: _confirm_png(points, names, axis, title, path), title


def _confirm_png(
    points: list[tuple[int, float | None, float, float, list[float]]],
    names: list[str],
    axis: str,
    title: str,
    path: Path,
) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(7.0, 1.2 * len(points) + 3), 5))
    for i, (_, search, mean, std, values) in enumerate(points):
        if search is not None:  # the gap between the search's value and the confirmed mean
            ax.plot([i - 0.18, i + 0.18], [search, mean], color="black", lw=0.8, ls="--")
            ax.plot(
                [i - 0.18],
                [search],
                "s",
                color=BEST_COLOR,
                ms=9,
                label="search value (the trial's own seed)" if i == 0 else None,
            )
        ax.errorbar(
            [i + 0.18],
            [mean],
            yerr=[std],
            fmt="o",
            color=MODEL_COLOR,
            ms=9,
            capsize=6,
            lw=2,
            label="confirmed mean ± seed spread" if i == 0 else None,
        )
        ax.scatter(
            [i + 0.18] * len(values),
            values,
            s=14,
            color=MODEL_COLOR,
            alpha=0.35,
            label="each fresh seed" if i == 0 else None,
            zorder=1,
        )
    ax.set_xticks(range(len(points)), names)
    ax.set_xlim(-0.6, len(points) - 0.4)
    ax.set_ylabel(axis)
    ax.yaxis.set_major_formatter(lambda y, _: f"{y:.3g}")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    ax.set_title(title, fontsize=11, loc="left")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def confirm_rows(confirm: dict[str, Any], search_values: dict[int, float]) -> list[list[Any]]:
    """The confirm table: trial, the search's value, confirmed mean, spread, seeds, winner."""
    winner = confirm.get("winner")
    return [
        [
            n,
            search,
            mean,
            std,
            len(values),
            "winner" if winner is not None and n == int(winner) else "",
        ]
        for n, search, mean, std, values in confirm_points(confirm, search_values)
    ]


def note(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"
