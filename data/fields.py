"""Frozen config dataclasses that check themselves: every field against its real annotation,
then the class's own value checks, every problem collected and raised together.

A section names its problems by the TOML table it is read from (`[data] horizon: ...`), so a
value given on the command line can be blamed on its flag by the caller.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from data.errors import ConfigError

C = TypeVar("C", bound="Checked")


def did_you_mean(key: str, options: list[str]) -> str:
    close = difflib.get_close_matches(key, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_keys(where: str, got: Mapping[str, Any], known: list[str]) -> list[str]:
    """One problem per key of `got` not in `known`, with the closest known key."""
    return [
        f"{where}: unknown key {k!r}{did_you_mean(k, known)}; known keys are {known}"
        for k in got
        if k not in known
    ]


SHOWN = 200  # the longest repr a problem line shows whole


def shown(value: Any) -> str:
    """A wrong value as a problem line shows it: its repr, cut where it runs long (a long
    list or string); where it spans lines (a data frame, an array), its type."""
    text = repr(value)
    if "\n" not in text:
        return text if len(text) <= SHOWN else f"{text[:SHOWN]}... (a {type(value).__name__})"
    kind = type(value)
    package = kind.__module__.split(".")[0]
    return f"a {'' if package == 'builtins' else package + ' '}{kind.__name__}"


def _members(tp: Any) -> tuple[Any, ...]:
    """The alternatives of a union annotation (`int | None`), else the annotation itself."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return typing.get_args(tp)
    return (tp,)


def _matches(value: Any, tp: Any) -> bool:
    if tp is Any:
        return True
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp in (int, float):  # True is no number here
        return isinstance(value, tp) and not isinstance(value, bool)
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return isinstance(value, tuple) and all(_matches(v, args[0]) for v in value)
        return isinstance(value, tuple)
    origin = typing.get_origin(tp)
    return isinstance(value, origin or tp)


def _describe(tp: Any) -> str:
    if tp is type(None):
        return "None"
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        return f"list of {_describe(args[0])}" if args else "list"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any) -> Any:
    """What TOML, JSON and flags write for a field, as the field holds it: an integer where a
    float is expected, a list or a single string where a tuple of strings is, a TOML date or
    date-time (`val_start = 2020-03-01`) where a string is (its ISO form)."""
    alts = _members(tp)
    if str in alts and isinstance(value, dt.datetime):  # the time as written, offset dropped
        return value.replace(tzinfo=None).isoformat()
    if str in alts and isinstance(value, dt.date):
        return value.isoformat()
    if float in alts and int not in alts and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if any(typing.get_origin(a) is tuple for a in alts):
        if isinstance(value, list):
            return tuple(value)
        if isinstance(value, str) and str not in alts:
            return (value,)
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The annotations of a dataclass's init fields, resolved (cached per class)."""
    if cls not in _HINTS:
        hints = typing.get_type_hints(cls)
        _HINTS[cls] = {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}
    return _HINTS[cls]


class Checked:
    """Base of a frozen dataclass validated on construction (directly, by `replace`, from a
    TOML table or from a stored dict): its fields' types, then `problems()`."""

    section: ClassVar[str] = ""
    """The TOML table the fields are keys of, naming them in problems (`[data] horizon`)."""

    def __post_init__(self) -> None:
        problems, bad = self._type_problems()
        checked: Checked | None = self
        if bad:
            checked = self._with_defaults(bad)
        if checked is not None:
            problems += checked.problems()
        if problems:
            raise ConfigError(problems)

    def problems(self) -> list[str]:
        """The value checks of a well-typed instance: one line per problem, naming the key."""
        return []

    def _key(self, name: str) -> str:
        return f"[{self.section}] {name}" if self.section else name

    def _type_problems(self) -> tuple[list[str], set[str]]:
        problems: list[str] = []
        bad: set[str] = set()
        for name, tp in _hints(type(self)).items():
            value = _coerce(getattr(self, name), tp)
            object.__setattr__(self, name, value)
            alts = _members(tp)
            if not any(_matches(value, a) for a in alts):
                want = " or ".join(_describe(a) for a in alts)
                problems.append(f"{self._key(name)}: expected {want}, got {shown(value)}")
                bad.add(name)
        return problems, bad

    def _with_defaults(self, bad: set[str]) -> Checked | None:
        """A copy whose wrongly typed fields hold their defaults, for the value checks of the
        others (None when a wrongly typed field has no default)."""
        copy = object.__new__(type(self))
        for f in dataclasses.fields(type(self)):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name in bad:
                if f.default is not dataclasses.MISSING:
                    value = f.default
                elif f.default_factory is not dataclasses.MISSING:
                    value = f.default_factory()
                else:
                    return None
            object.__setattr__(copy, f.name, value)
        return copy

    @classmethod
    def from_dict(cls: type[C], d: Any, where: str | None = None) -> C:
        """The inverse of `dataclasses.asdict` (what a study stores, what a TOML table
        holds): keys left out take their defaults; an unknown key or a bad value is a
        ConfigError naming it, every problem at once."""
        where = where if where is not None else f"[{cls.section}]"
        if not isinstance(d, Mapping):
            raise ConfigError([f"{where}: expected a table, got {d!r}"])
        known = list(_hints(cls))
        problems = unknown_keys(where, d, known)
        try:
            made = cls(**{k: v for k, v in d.items() if k in known})
        except ConfigError as e:
            problems += e.problems
        except TypeError as e:  # a field without a default left out
            problems.append(f"{where}: {e}")
        if problems:
            raise ConfigError(problems)
        return made
