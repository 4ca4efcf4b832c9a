"""The flags' argparse types: argparse names the flag ("argument --n-trials: ..."), so the
messages say only what was expected and what was given; every flag is checked while the
arguments are parsed, before any storage is opened or any file written."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from search.cli.common import out_problem
from search.study.session import SEED_MAX

PORT_MAX = 65535


def _int(s: str) -> int:
    try:
        return int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None


def _positive_int(s: str) -> int:
    v = _int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {v}")
    return v


def _workers(s: str) -> int | str:
    if s.strip().lower() == "auto":
        return "auto"
    try:
        v = int(s)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 or auto, got {s!r}")
    return v


def _nonnegative_int(s: str) -> int:
    v = _int(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {v}")
    return v


def _seed(s: str) -> int:
    v = _int(s)
    if not 0 <= v <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"expected a seed from 0 to {SEED_MAX}, got {v}")
    return v


def _port(s: str) -> int:
    v = _int(s)
    if not 0 <= v <= PORT_MAX:
        raise argparse.ArgumentTypeError(
            f"expected a port from 0 to {PORT_MAX} (0 picks a free one), got {v}"
        )
    return v


def _positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {s!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds > 0, got {s!r}")
    return v


def _out_file(s: str) -> str:
    problem = out_problem(s)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return s


def _out_folder(s: str) -> str:
    problem = out_problem(s, folder=True)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return s


def _table_file(s: str) -> str:
    if Path(s).suffix not in (".csv", ".parquet"):
        raise argparse.ArgumentTypeError(f"expected a .csv or .parquet file name, got {s!r}")
    return _out_file(s)
