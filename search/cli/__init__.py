"""`optuna-run`: the command line, a thin layer over the search service."""

from search.cli.app import main

__all__ = ["main"]
