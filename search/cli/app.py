"""`optuna-run`: run a study (the default verb), or `optuna-run VERB` with one of the verbs
below. Each verb is a module of search.cli with `parser()` (its flags, checked while they
are parsed) and `handle(args)` (a call of the Python API, search.api, and what it says);
the errors the API raises for bad input become one line and exit status 2."""

from __future__ import annotations

import importlib
import sys

from search.cli.common import data_warnings_as_lines, fail
from search.study.stop import (
    import_holding_ctrl_c,
    stacks_on_sigusr1,
    term_as_ctrl_c,
    trials_began,
)

# verb -> the module of its parser and handler
VERBS: dict[str, str] = {
    "run": "search.cli.run",
    "confirm": "search.cli.confirm",
    "export": "search.cli.export",
    "train": "search.cli.train",
    "predict": "search.cli.predict",
    "dashboard": "search.cli.dashboard",
    "report": "search.cli.report",
    "proxy": "search.cli.proxy",
}
# verb -> what it does, in `optuna-run --help`; every verb has one
SUMMARIES: dict[str, str] = {
    "run": "this search, the default verb",
    "confirm": "retrain the best trials with fresh seeds, name the winner",
    "export": "best trial to JSON",
    "train": "retrain the best params, save the model",
    "predict": "predictions from a model",
    "dashboard": "optuna-dashboard on the storage",
    "report": "HTML and PNG figures of a study",
    "proxy": "a gRPC storage proxy that workers reach with --storage grpc://HOST:PORT",
}
# the libraries a verb loads, imported with Ctrl-C held once its flags are parsed (a Ctrl-C
# inside a library's import can leave it half-loaded); the dashboard and the proxy need no torch
LIBRARIES = ("numpy", "sqlalchemy", "optuna")
TRAINING = ("torch", "polars")


def verbs_help() -> str:
    """The verbs of `optuna-run --help`, each with what it does, in the dispatcher's order."""
    return "Subcommands: " + ", ".join(f"`optuna-run {v}` ({SUMMARIES[v]})" for v in VERBS) + "."


def input_errors() -> tuple[type[Exception], ...]:
    """What the API raises for bad input, each with a one-line message."""
    from data import ConfigError, DataError
    from search.dashboard import DashboardError
    from search.evaluate.export import ExportError
    from search.evaluate.report import ReportError
    from search.storage.rdb import StorageError
    from search.study.create import IncompatibleStudy

    return (ConfigError, DataError, StorageError, ExportError, ReportError) + (
        IncompatibleStudy,
        DashboardError,
    )


def run_verb(name: str, argv: list[str]) -> int:
    """Import the verb's module, parse its flags and call its handler, the data layer's
    warnings said as one line each."""
    mod = importlib.import_module(VERBS[name])
    args = mod.parser().parse_args(argv)
    import_holding_ctrl_c(
        LIBRARIES if name in ("dashboard", "proxy") else LIBRARIES + TRAINING,
        exit_line=interrupted_line(name),
    )
    try:
        with data_warnings_as_lines():
            return int(mod.handle(args))
    except Exception as e:
        if isinstance(e, input_errors()):
            return fail(str(e))
        raise


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    stacks_on_sigusr1()
    trials_began.clear()
    if argv and not argv[0].startswith("-") and argv[0] not in VERBS:
        return fail(unknown_verb(argv[0]))
    verb = argv.pop(0) if argv and argv[0] in VERBS else "run"
    try:
        with term_as_ctrl_c():
            return run_verb(verb, argv)
    except KeyboardInterrupt:
        print(interrupted_line(verb), file=sys.stderr)
        return 130


def unknown_verb(word: str) -> str:
    """The line for a first word that is no verb (`run` takes no positional argument)."""
    import difflib

    close = difflib.get_close_matches(word, list(VERBS), n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return (
        f"unknown sub-command {word!r}{hint} (expected one of {', '.join(VERBS)},"
        " or flags of the search; see optuna-run --help)"
    )


def interrupted_line(verb: str) -> str:
    """What a Ctrl-C (or SIGTERM) that reaches the command line says: a search's came
    before any trial started (loading data, opening storage) or after its trials (the
    summary); one during a trial is handled inside the run."""
    if verb == "run" and trials_began.is_set():
        return "optuna-run: interrupted after the trials, in the summary; the study holds them"
    if verb == "run":
        return "optuna-run: interrupted before any trial started"
    return f"optuna-run {verb}: interrupted"


if __name__ == "__main__":
    sys.exit(main())
