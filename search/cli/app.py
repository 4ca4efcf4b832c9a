"""`optuna-run`: run a study (default), or `optuna-run export` its best trial, `train`,
`predict`, or `proxy` (the gRPC storage proxy)."""

from __future__ import annotations

import importlib
import sys

from search.cli.common import stacks_on_sigusr1

# verb -> (the module of its parser and handler, the parser's name, the handler's name)
VERBS: dict[str, tuple[str, str, str]] = {
    "export": ("search.cli.export", "export_parser", "run_export"),
    "train": ("search.cli.train", "train_parser", "run_train"),
    "predict": ("search.cli.predict", "predict_parser", "run_predict"),
    "confirm": ("search.cli.confirm", "confirm_parser", "run_confirm"),
    "dashboard": ("search.cli.dashboard", "dashboard_parser", "run_dashboard"),
    "report": ("search.cli.report", "report_parser", "run_report"),
}


def run_verb(name: str, argv: list[str]) -> int:
    """Import the verb's module, parse its flags and call its handler."""
    module, parser, func = VERBS[name]
    mod = importlib.import_module(module)
    args = getattr(mod, parser)().parse_args(argv)
    return int(getattr(mod, func)(args))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    stacks_on_sigusr1()
    verb = argv[0] if argv and (argv[0] in VERBS or argv[0] == "proxy") else None
    try:
        if verb == "proxy":
            from search.cli.proxy import cmd_proxy

            return cmd_proxy(argv[1:])
        if verb is not None:
            return run_verb(verb, argv[1:])
        if argv and argv[0] == "run":
            argv = argv[1:]
        from search.cli.run import cmd_run

        return cmd_run(argv)
    except KeyboardInterrupt:
        if verb is not None:
            print(f"optuna-run {verb}: interrupted", file=sys.stderr)
        else:  # a search: before any trial started (loading data, opening storage)
            print("optuna-run: interrupted before any trial started", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
