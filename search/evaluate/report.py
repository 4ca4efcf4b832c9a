"""`optuna-run report`: one self-contained HTML file (plotly inline, opens offline) and PNG
figures of a study.

Figures: optimisation history, intermediate values (pruned trials included), parameter
importances, parallel coordinates, slices of the top parameters, the best trial's metrics
and params; when the study holds them, the verdict against the baselines (`verdict` study
attr: test rank IC per predictor with two standard errors, the cumulative daily rank IC over
the test dates, and the table of every metric) and the confirmed trials (`confirm` study
attr: the search's value beside the confirmed mean and seed spread), drawn by
search.evaluate.figures. The HTML figures are plotly's; the PNGs are drawn with matplotlib
(optuna.visualization.matplotlib for the study's plots; plotly's own PNG export, kaleido,
downloads a browser) with the Agg backend.
"""

from __future__ import annotations

import html
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from data.errors import plural

TOP_PARAMS = 4  # slices are drawn for this many of the most important params


class ReportError(ValueError):
    """The study cannot be reported (no trials): the message says why."""


@dataclass
class Figure:
    id: str
    """The plotly div id in the HTML and the PNG file's stem."""
    title: str
    plotly: Any = None
    """A plotly figure, or None when only a table is shown."""
    png: Callable[[Path], None] | None = None
    table: str = ""
    """HTML shown under the title (a table, or why the figure is missing)."""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "-" if not math.isfinite(v) else f"{v:.6g}"
    return html.escape(str(v))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _save_axes(draw: Callable[[], Any]) -> Callable[[Path], None]:
    """A PNG writer around an optuna.visualization.matplotlib call (returns Axes or array)."""

    def save(path: Path) -> None:
        import matplotlib.pyplot as plt
        import numpy as np

        ax = draw()
        first = np.asarray(ax).ravel()[0] if not hasattr(ax, "figure") else ax
        fig = first.figure
        w, h = fig.get_size_inches()
        if w < 9 or h < 5:
            fig.set_size_inches(max(w, 9), max(h, 5))
        for a in fig.axes:  # a legend of dozens of trials hides the plot; colours remain
            legend = a.get_legend()
            if legend is not None and len(legend.texts) > 12:
                legend.remove()
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)

    return save


def _table_png(title: str, header: list[str], rows: list[list[Any]]) -> Callable[[Path], None]:
    def save(path: Path) -> None:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(min(2 + 1.6 * len(header), 16), 0.6 + 0.25 * len(rows)))
        ax.axis("off")
        cells = [[_fmt(v) for v in r] for r in rows] or [["-"] * len(header)]
        t = ax.table(cellText=cells, colLabels=header, loc="center", cellLoc="left")
        t.auto_set_font_size(False)
        t.set_fontsize(9)
        ax.set_title(title)
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)

    return save


def _objective_names(study: optuna.Study) -> list[str]:
    names = study.metric_names
    return list(names) if names else [f"objective {i}" for i in range(len(study.directions))]


def _best(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The best trial; in a multi-objective study, the Pareto-optimal trial best on the
    first objective (the table of the whole front is its own figure)."""
    if len(study.directions) == 1:
        return study.best_trial
    sign = 1 if study.directions[0] == optuna.study.StudyDirection.MINIMIZE else -1
    return min(study.best_trials, key=lambda t: (sign * t.values[0], t.number))


def best_trial_rows(study: optuna.Study) -> tuple[list[list[Any]], list[list[Any]]]:
    from search.evaluate.export import left_out_metrics

    best = _best(study)
    skip = {"fail_reason", "prune_reason", "daily_values"}
    skip |= left_out_metrics(study.user_attrs.get("config", {}))
    values = [[name, v] for name, v in zip(_objective_names(study), best.values, strict=True)]
    metrics: list[list[Any]] = values if len(values) > 1 else [["value", best.value]]
    metrics += [["trial", best.number]]
    metrics += [[k, v] for k, v in sorted(best.user_attrs.items()) if k not in skip]
    fixed = {
        k: v
        for k, v in study.user_attrs.get("spec", {}).get("space", {}).items()
        if not isinstance(v, dict)
    }
    params = [[k, v, "searched"] for k, v in best.params.items()]
    params += [[k, v, "fixed"] for k, v in fixed.items() if k not in best.params]
    return metrics, params


def verdict_table(verdict: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Rows: predictors (the model and the baselines); columns: segment / metric."""
    segments = [s for s in ("val", "test") if isinstance(verdict.get(s), dict)]
    cols: list[tuple[str, str]] = []
    predictors: list[str] = []
    for seg in segments:
        for pred, metrics in verdict[seg].items():
            if pred not in predictors:
                predictors.append(pred)
            for m in metrics:
                if (seg, m) not in cols:
                    cols.append((seg, m))
    from search.evaluate.verdict import small_mse

    sci = {
        (seg, m): small_mse(m, [verdict[seg].get(p, {}).get(m) for p in predictors])
        for seg, m in cols
    }
    rows = [
        [pred] + [_rounded(verdict[seg].get(pred, {}).get(m), sci[seg, m]) for seg, m in cols]
        for pred in predictors
    ]
    return ["predictor"] + [f"{seg} {m}" for seg, m in cols], rows


def _rounded(v: Any, sci: bool = False) -> Any:
    """A verdict's or confirm's number as a quant reads it: 4 decimals (`sci`: 4 significant
    digits); "-" where there is none."""
    if isinstance(v, float) and math.isfinite(v):
        return f"{v:.3e}" if sci else f"{v:.4f}"
    return "-" if v is None else v


def _note(text: str) -> str:
    return f"<p>not drawn: {html.escape(text)}</p>"


def state_counts(study: optuna.Study) -> str:
    """`3 complete, 1 fail, 2 pruned`: the study's trials by state."""
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    return ", ".join(f"{states.count(s)} {s.lower()}" for s in sorted(set(states)))


def no_complete_trial(study: optuna.Study) -> str | None:
    """What a report of a study without a complete trial lacks, said plainly (None: it has
    one)."""
    if study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        return None
    return (
        f"study {study.study_name!r} has no complete trial yet ({state_counts(study)}): the "
        "report holds no optimisation history, parameter importances or best trial"
    )


def _history(study: optuna.Study, complete: list[Any], kw: dict[str, Any], first: str) -> Figure:
    import optuna.visualization as pv
    import optuna.visualization.matplotlib as pm

    title = "Optimisation history" + first
    if not complete:
        return Figure("optimization-history", title, table=_note("no complete trial yet"))
    return Figure(
        "optimization-history",
        title,
        pv.plot_optimization_history(study, **kw),
        _save_axes(lambda: pm.plot_optimization_history(study, **kw)),
    )


def _intermediate(study: optuna.Study, multi: bool) -> Figure:
    import optuna.visualization as pv
    import optuna.visualization.matplotlib as pm

    title = "Intermediate values (the reports to the pruner; pruned trials stop early)"
    if not any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
        why = "no trial reported an intermediate value"
        if multi:
            why += " (a study of several objectives is not pruned, so its trials report none)"
        return Figure("intermediate-values", title, table=_note(why))
    return Figure(
        "intermediate-values",
        title,
        pv.plot_intermediate_values(study),
        _save_axes(lambda: pm.plot_intermediate_values(study)),
    )


def build_figures(study: optuna.Study) -> list[Figure]:
    import matplotlib

    matplotlib.use("Agg")
    import optuna.visualization as pv
    import optuna.visualization.matplotlib as pm

    S = optuna.trial.TrialState
    complete = study.get_trials(deepcopy=False, states=(S.COMPLETE,))
    names = _objective_names(study)
    multi = len(names) > 1
    # A multi-objective study: every per-objective plot shows the first objective.
    kw: dict[str, Any] = {}
    if multi:
        kw = {"target": lambda t: t.values[0], "target_name": names[0]}
    first = f" ({names[0]}, the first objective)" if multi else ""
    figs = [_history(study, complete, kw, first), _intermediate(study, multi)]
    figs += _param_figures(study, complete, kw, first)
    if complete and multi:
        front = sorted(study.best_trials, key=lambda t: t.number)
        header = ["trial", *names]
        rows = [[t.number, *t.values] for t in front]
        title = f"Pareto front: {len(front)} trials no other trial beats on every objective"
        pareto: Any = None
        pareto_save: Any = None
        if len(names) in (2, 3):
            pareto = pv.plot_pareto_front(study, target_names=names)
            pareto_save = _save_axes(lambda: pm.plot_pareto_front(study, target_names=names))
        figs.append(
            Figure(
                "pareto-front",
                title,
                pareto,
                pareto_save if pareto is not None else _table_png(title, header, rows),
                table=_table(header, rows),
            )
        )
    if complete:
        metrics, params = best_trial_rows(study)
        best = _best(study)
        label = f"Best trial {best.number}" + (f" on {names[0]}, of the front" if multi else "")
        figs.append(
            Figure(
                "best-trial",
                f"{label}: metrics and params",
                table=_table(["metric", "value"], metrics) + _table(["param", "value", ""], params),
                png=_table_png(
                    label,
                    ["name", "value"],
                    metrics + [[k, v] for k, v, _ in params],
                ),
            )
        )
    figs += _stored_figures(study)
    return figs


def _param_figures(
    study: optuna.Study, complete: list[Any], kw: dict[str, Any], first: str
) -> list[Figure]:
    """Parameter importances, parallel coordinates and slices (or why they are missing)."""
    import optuna.visualization as pv
    import optuna.visualization.matplotlib as pm

    figs: list[Figure] = []
    searched = sorted({p for t in complete for p in t.params})
    top: list[str] = searched[:TOP_PARAMS]
    if len(complete) >= 2 and searched:
        try:
            target = {"target": kw["target"]} if kw else {}
            importances = optuna.importance.get_param_importances(study, **target)
            top = list(importances)[:TOP_PARAMS]
            figs.append(
                Figure(
                    "param-importances",
                    "Parameter importances" + first,
                    pv.plot_param_importances(study, **kw),
                    _save_axes(lambda: pm.plot_param_importances(study, **kw)),
                )
            )
        except (RuntimeError, ValueError) as e:
            figs.append(
                Figure(
                    "param-importances",
                    "Parameter importances",
                    table=f"<p>not drawn: {html.escape(str(e))}</p>",
                )
            )
        figs.append(
            Figure(
                "parallel-coordinate",
                "Parallel coordinates" + first,
                pv.plot_parallel_coordinate(study, **kw),
                _save_axes(lambda: pm.plot_parallel_coordinate(study, **kw)),
            )
        )
        figs.append(
            Figure(
                "slice",
                f"Slices of the top parameters ({', '.join(top)})" + first,
                pv.plot_slice(study, params=top, **kw),
                _save_axes(lambda: pm.plot_slice(study, params=top, **kw)),
            )
        )
    else:
        why = f"<p>needs 2 complete trials, the study has {len(complete)}</p>"
        for fid, title in (
            ("param-importances", "Parameter importances"),
            ("parallel-coordinate", "Parallel coordinates"),
            ("slice", "Slices of the top parameters"),
        ):
            figs.append(Figure(fid, title, table=why))
    return figs


def _stored_figures(study: optuna.Study) -> list[Figure]:
    """What confirm and train stored: the verdict, the luck figures, the confirmed spread."""
    figs: list[Figure] = []
    verdict = study.user_attrs.get("verdict")
    if isinstance(verdict, dict):
        figs += _verdict_figures(verdict)
    luck = study.user_attrs.get("luck")
    if isinstance(luck, dict):
        from search.study.luck import format_luck

        text = html.escape(format_luck(luck)).replace("\n", "<br>")
        figs.append(Figure("luck", "How much of the edge is luck", table=f"<p>{text}</p>"))
    confirm = study.user_attrs.get("confirm")
    if isinstance(confirm, dict) and confirm.get("trials"):
        from search.evaluate.figures import confirm_figure, confirm_rows

        searched = {t.number: t.values[0] for t in study.get_trials(deepcopy=False) if t.values}
        fig, save, title = confirm_figure(confirm, searched)
        rows = confirm_rows(confirm, searched)
        flag = confirm.get("flag")
        header = ["trial", "search value", "confirmed mean", "seed spread", "seeds", ""]
        figs.append(
            Figure(
                "confirm-spread",
                title,
                fig,
                save,
                table=(f"<p>{html.escape(str(flag))}</p>" if flag else "")
                + _table(header, [[r[0], *map(_rounded, r[1:4]), *r[4:]] for r in rows]),
            )
        )
    return figs


def _verdict_figures(verdict: dict[str, Any]) -> list[Figure]:
    """The test rank IC per predictor (with the summary and the table of every metric) and
    the cumulative daily rank IC over the test dates."""
    from search.evaluate.figures import note, verdict_cumulative, verdict_rank_ic

    header, rows = verdict_table(verdict)
    summary = verdict.get("summary", "")
    if verdict.get("next"):
        from search.evaluate.verdict import format_next_questions

        summary = f"{summary}\n{format_next_questions(verdict['next'])}"
    trials = verdict.get("trials")
    if isinstance(trials, list) and trials:
        by = {"train": "fitted by train", "confirm": "confirm's winner"}.get(
            str(verdict.get("source"))
        )
        fit = {
            "final": "at the final budget",
            "search": "at the search's budget",
            "exact": "reproducing the trial at the search's budget",
        }.get(str(verdict.get("fit")))
        by = ", ".join(x for x in (by, fit) if x)
        if verdict.get("model"):
            by += f" (saved as {verdict['model']})"
        which = f"trial{'s' if len(trials) > 1 else ''} {', '.join(map(str, trials))}"
        summary = f"The model judged here: {which}" + (f", {by}" if by else "") + f".\n{summary}"
    text = f"<p>{html.escape(str(summary))}</p>".replace("\n", "<br>") if summary else ""
    chart = verdict_rank_ic(verdict)
    fig, save, title = chart or (None, None, "Verdict: the model against the baselines")
    figs = [Figure("verdict", title, fig, save, table=text + _table(header, rows))]
    cumulative = verdict_cumulative(verdict)
    if cumulative is not None:
        fig, save, title = cumulative
        figs.append(Figure("verdict-cumulative", title, fig, save))
    elif "test" in verdict:
        why = "not drawn: the verdict holds no daily values (one series, or a verdict of an "
        why += "earlier version: run confirm or train again)"
        figs.append(Figure("verdict-cumulative", "Cumulative daily rank IC", table=note(why)))
    return figs


CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:left;font-size:90%}th{background:#f3f3f3}h2{margin-top:2em}code{background:#f3f3f3}"""


def render_html(study: optuna.Study, figs: list[Figure]) -> str:
    n = len(study.get_trials(deepcopy=False))
    data = study.user_attrs.get("data", {})
    missing = no_complete_trial(study)
    head = (
        f"<h1>Study {html.escape(study.study_name)}</h1><p>{plural(n, 'trial')} "
        f"({state_counts(study)})"
        + (
            f"; data <code>{html.escape(str(data.get('file')))}</code>, "
            f"{data.get('securities')} "
            f"{'security' if data.get('securities') == 1 else 'securities'} x "
            f"{data.get('dates')} dates"
            if data
            else ""
        )
        + "</p>"
        + (f"<p><b>{html.escape(missing)}</b></p>" if missing else "")
    )
    parts = []
    inline_js = True  # plotly.js once, inline, in the first plotly figure: opens offline
    for f in figs:
        parts.append(f'<section id="section-{f.id}"><h2>{html.escape(f.title)}</h2>')
        if f.plotly is not None:
            parts.append(f.plotly.to_html(full_html=False, include_plotlyjs=inline_js, div_id=f.id))
            inline_js = False
        parts.append(f.table + "</section>")
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(study.study_name)}: report</title><style>{CSS}</style></head>"
        f"<body>{head}{''.join(parts)}</body></html>"
    )


def write_report(study: optuna.Study, out: Path) -> tuple[Path, list[Path]]:
    """Write OUT/report.html and OUT/<figure>.png; returns their paths. Optuna's own log
    lines while the figures are drawn are left out: a figure with nothing to draw says so."""
    if not study.get_trials(deepcopy=False):
        raise ReportError(f"study {study.study_name!r} has no trials yet: nothing to report")
    out.mkdir(parents=True, exist_ok=True)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        return _write(study, out)
    finally:
        optuna.logging.set_verbosity(verbosity)


def _write(study: optuna.Study, out: Path) -> tuple[Path, list[Path]]:
    with warnings.catch_warnings():  # optuna's ExperimentalWarning on every matplotlib plot
        warnings.simplefilter("ignore")
        figs = build_figures(study)
        pngs = []
        for f in figs:
            if f.png is not None:
                path = out / f"{f.id}.png"
                f.png(path)
                pngs.append(path)
        page = out / "report.html"
        page.write_text(render_html(study, figs), encoding="utf-8")
    return page, pngs
