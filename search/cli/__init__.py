"""`optuna-run`: the command line, a thin layer over the search service."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """The console script: search.cli.app.main, with a Ctrl-C while that module itself
    loads (the first hundredth of a second) said in one line like any other."""
    try:
        from search.cli.app import main as run
    except KeyboardInterrupt:
        print("optuna-run: interrupted", file=sys.stderr)
        return 130
    return run(argv)


__all__ = ["main"]
