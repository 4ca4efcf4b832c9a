"""Helpers shared by the verbs of `optuna-run`: the one-line error (also for argparse's
errors), output paths checked before anything is written, and the device flag."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn


def fail(msg: str, code: int = 2) -> int:
    print(f"optuna-run: error: {msg}", file=sys.stderr)
    return code


class Parser(argparse.ArgumentParser):
    """argparse with the one-line error of every verb: `optuna-run: error: argument --flag:
    what was expected, got what (see PROG --help)`, exit status 2, no usage block."""

    def error(self, message: str) -> NoReturn:
        line = " ".join(part.strip() for part in message.splitlines() if part.strip())
        self.exit(2, f"optuna-run: error: {line} (see {self.prog} --help)\n")


def out_problem(value: str, folder: bool = False) -> str | None:
    """Why `value` cannot be written as a file (or, with `folder`, as a folder of files):
    a folder where a file is meant or the reverse, a file on the way, no permission; None
    when it can. Missing parent folders are fine: they are created when it is written."""
    if not value.strip():
        return f"expected a {'folder' if folder else 'file'} name, got {value!r}"
    path = Path(value)
    if path.is_dir() and not folder:
        return f"{value} is a folder; expected a file name"
    if path.exists() and not path.is_dir() and folder:
        return f"{value} is a file; expected a folder"
    where = path if folder else path.parent
    while not where.exists() and where != where.parent:
        where = where.parent
    if not where.is_dir():
        return f"cannot write {value}: {where} is not a folder"
    if not os.access(where, os.W_OK | os.X_OK):
        return f"cannot write {value}: no permission to write in {where}"
    return None
