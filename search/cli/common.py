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
    what was expected, got what (see PROG --help)`, exit status 2, no usage block; a flag
    one slip from a real one is named beside it."""

    argv: list[str] = []  # the command line parsed last, for the did-you-mean

    def error(self, message: str) -> NoReturn:
        line = " ".join(part.strip() for part in message.splitlines() if part.strip())
        if line.startswith(("unrecognized arguments:", "the following arguments are required")):
            line += self.did_you_mean(self.argv)
        self.exit(2, f"optuna-run: error: {line} (see {self.prog} --help)\n")

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        self.argv = [str(a) for a in (sys.argv[1:] if args is None else args)]
        return super().parse_args(args, namespace)

    def did_you_mean(self, tokens: list[str]) -> str:
        """`; did you mean --flag?` for each unknown flag among `tokens` (the command line)
        that is one slip away from one of this parser's flags."""
        import difflib

        flags = [f for f in self._option_string_actions if f.startswith("--")]
        hints = []
        for token in tokens:
            name = token.split("=", 1)[0]
            if name.startswith("--") and not any(f.startswith(name) for f in flags):
                close = difflib.get_close_matches(name, flags, n=1, cutoff=0.75)
                if close:
                    hints.append(f"{name}: did you mean {close[0]}?")
        return "".join(f"; {h}" for h in hints)
