"""Helpers shared by the verbs of `optuna-run`: the one-line error (also for argparse's
errors) and the device flag."""

from __future__ import annotations

import argparse
import sys
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
