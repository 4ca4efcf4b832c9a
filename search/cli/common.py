"""Helpers shared by the verbs of `optuna-run`: the one-line error (also for argparse's
errors) and the one-line warning of the data layer."""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Iterator
from typing import Any, NoReturn


def fail(msg: str, code: int = 2) -> int:
    print(f"optuna-run: error: {msg}", file=sys.stderr)
    return code


def warn(msg: str) -> None:
    print(f"optuna-run: warning: {msg}", file=sys.stderr)


@contextlib.contextmanager
def data_warnings_as_lines() -> Iterator[None]:
    """Within: each DataWarning is said once as `optuna-run: warning: MESSAGE` (one line, the
    same message once however often the file is read), not as a Python warning with its
    source line; other warnings are shown as before."""
    from data.errors import DataWarning

    said: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("always", DataWarning)
        show = warnings.showwarning

        def one_line(message: Any, category: Any, *args: Any, **kw: Any) -> None:
            if not issubclass(category, DataWarning):
                show(message, category, *args, **kw)
            elif str(message) not in said:
                said.add(str(message))
                warn(str(message))

        warnings.showwarning = one_line
        yield


class Parser(argparse.ArgumentParser):
    """argparse with the one-line error of every verb: `optuna-run: error: argument --flag:
    what was expected, got what (see PROG --help)`, exit status 2, no usage block."""

    def error(self, message: str) -> NoReturn:
        line = " ".join(part.strip() for part in message.splitlines() if part.strip())
        self.exit(2, f"optuna-run: error: {line} (see {self.prog} --help)\n")
