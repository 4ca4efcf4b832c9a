"""Errors raised by the data layer: each names the file and the column or key at fault."""

from __future__ import annotations


def plural(n: int, word: str) -> str:
    """'1 date', '2 dates', '12,870 splits'."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


class DataError(ValueError):
    """Input data that cannot be used as it is.

    The message always names the file (when there is one) and the column or config key,
    and states what was expected.
    """


class SegmentError(DataError):
    """A segment of the split too thin for what is asked of it: `source` is the file, `facts`
    what it lacks (which segment, how many dates or securities). A caller that knows which
    setting asked for it may re-raise the facts with that setting's name."""

    def __init__(self, source: str, facts: str) -> None:
        self.source = source
        self.facts = facts
        super().__init__(f"{source}: {facts}")


class ConfigError(ValueError):
    """One or more invalid configuration values, all reported together."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class DataWarning(UserWarning):
    """Something in the data was left out or changed without being an error."""
