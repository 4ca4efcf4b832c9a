"""The flags' argparse types: argparse names the flag ("argument --n-trials: ..."), so the
messages say only what was expected and what was given; every flag is checked while the
arguments are parsed, before any storage is opened or any file written."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from search.api import DEVICES_HELP
from search.config.paths import out_problem
from search.study.session import SEED_MAX

PORT_MAX = 65535


def integer(s: str) -> int:
    try:
        return int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None


def positive_int(s: str) -> int:
    v = integer(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {v}")
    return v


def worker_count(s: str) -> int | str:
    if s.strip().lower() == "auto":
        return "auto"
    try:
        v = int(s)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 or auto, got {s!r}")
    return v


def nonnegative_int(s: str) -> int:
    v = integer(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {v}")
    return v


def seed_value(s: str) -> int:
    v = integer(s)
    if not 0 <= v <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"expected a seed from 0 to {SEED_MAX}, got {v}")
    return v


def port_number(s: str) -> int:
    v = integer(s)
    if not 0 <= v <= PORT_MAX:
        raise argparse.ArgumentTypeError(
            f"expected a port from 0 to {PORT_MAX} (0 picks a free one), got {v}"
        )
    return v


def seconds(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {s!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds > 0, got {s!r}")
    return v


def out_file(s: str) -> str:
    problem = out_problem(s)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return s


def out_folder(s: str) -> str:
    problem = out_problem(s, folder=True)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return s


def column_list(s: str) -> list[str]:
    """Comma-separated column names or globs, at least one (an empty value would otherwise
    be read as not given and leave the study TOML's list in place without a word)."""
    names = [n.strip() for n in s.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated column names or globs (e.g. f1,feat_*), got {s!r}; "
            "leave the flag out for the study TOML's features"
        )
    return names


# what other verbs write: a checkpoint by one of these names is a mistyped --out
NOT_A_CHECKPOINT = (".csv", ".parquet", ".json", ".html", ".png", ".toml", ".db")


def checkpoint_file(s: str) -> str:
    """A model checkpoint's file name: not one of another output's kinds (`predict` writes
    the .csv, `export` the .json)."""
    if Path(s).suffix.lower() in NOT_A_CHECKPOINT:
        raise argparse.ArgumentTypeError(
            f"expected a model checkpoint file name (e.g. model.pt), got {s!r}, the kind of "
            "file another verb writes (predict: .csv / .parquet, export: .json, report: "
            ".html / .png)"
        )
    return out_file(s)


def table_file(s: str) -> str:
    if Path(s).suffix not in (".csv", ".parquet"):
        raise argparse.ArgumentTypeError(f"expected a .csv or .parquet file name, got {s!r}")
    return out_file(s)


# The flags several verbs share, each written once.

STORAGE_DEFAULT = "default: $OPTUNA_STORAGE, else sqlite:///studies/optuna.db"


def add_storage(p: argparse.ArgumentParser, what: str = "storage URL") -> None:
    p.add_argument("--storage", default=None, help=f"{what} ({STORAGE_DEFAULT})")


def add_study_name(p: argparse.ArgumentParser, **kw: Any) -> None:
    kw.setdefault("required", True)
    p.add_argument("--study-name", **kw)


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help=DEVICES_HELP)


def add_seed(p: argparse.ArgumentParser, help: str) -> None:  # noqa: A002
    p.add_argument("--seed", type=seed_value, default=None, help=help)


def add_no_tree(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-tree", action="store_true", help="leave the LightGBM baseline out")


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no line per epoch")
