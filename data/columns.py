"""Which columns of a file play which role: the time axis, the id, the target, the features."""

from __future__ import annotations

import difflib
import fnmatch
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from data.config import DataConfig
from data.errors import DataError, DataWarning

# Names that say a column is a label (another horizon's return, a responder): such a column
# is never taken as a feature unless [data] features names it. Matched on the name in lower
# case, its words split at non-alphanumerics and camelCase (fwdRet5 -> fwd_ret5).
LABEL_NAME = re.compile(r"^(target|label|y|resp|response|outcome)s?_?\d*[a-z]?$")
LABEL_WORD = re.compile(r"^(future|responder|ahead)\d*$")
RETURN_AHEAD = re.compile(
    r"(^|_)(next|fwd|forward|future)_?(ret|rets|return|returns|rtn)"
    r"|(ret|rets|return|returns|rtn)(_?\d+[a-z]?)?_(next|fwd|forward|future|ahead|lead)\d*(_|$)"
)


def looks_like_label(name: str) -> bool:
    """Whether column `name` reads as a label: target, y_5, resp_1, responder_6, fwd_ret_5,
    nextRet, ret5_fwd, future_ret, return_5d_ahead (not forward_pe, target_price, ret_1y)."""
    words = "_".join(w for w in re.split(r"[^a-z0-9]+", _snake(name)) if w)
    return bool(
        LABEL_NAME.match(words)
        or any(LABEL_WORD.match(w) for w in words.split("_"))
        or RETURN_AHEAD.search(words)
    )


def _snake(name: str) -> str:
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


# The OHLCV roles and the column each reads when `[data]` does not map it.
ROLES: dict[str, str] = {
    r: getattr(DataConfig, r) for r in ("open", "high", "low", "close", "volume")
}


@dataclass(frozen=True)
class Columns:
    """The file's columns, resolved from the config."""

    time: str
    time_key: str  # the [data] key naming the time column: "date" or "order"
    id: str | None
    target: str | None
    ohlcv: dict[str, str]  # role -> column, only those present; derivation on when non-empty
    features: tuple[str, ...]  # raw feature columns copied into the panel
    tradable: str | None
    weight: str | None
    derive: bool  # derive OHLCV features
    has_target: bool = True  # False: the given target column is absent (read to predict)


def resolve_columns(
    cfg: DataConfig,
    schema: pl.Schema,
    empty: frozenset[str] = frozenset(),
    for_prediction: bool = False,
    not_numbers: Callable[[str], list[str]] | None = None,
) -> Columns:
    """The columns `cfg` names in a file of `schema`; `empty`: the columns with no value
    (see `settle_types`), taken as numeric. `for_prediction`: a given target column may be
    absent or empty (data without labels, to predict), and the weight column is not read.
    `not_numbers`: a text column's first values that are no number, shown when a feature
    column is text."""
    path = cfg.file
    names = list(schema.names())
    schema = pl.Schema({n: pl.Float64 if n in empty else t for n, t in schema.items()})
    target_given = bool(cfg.target)
    has_target = not (
        for_prediction and target_given and (cfg.target not in schema or cfg.target in empty)
    )

    missing: list[str] = []

    def need(col: str | None, key: str, hint: str = "") -> str | None:
        if col is None or col == "":
            return None
        if col not in schema:
            close = difflib.get_close_matches(col, names, n=1, cutoff=0.6)
            mean = f" (did you mean {close[0]!r}?)" if close else ""
            missing.append(f"column {col!r} ([data] {key}) not found{mean}{hint}")
            return None
        return col

    def check_missing() -> None:
        if missing:
            raise DataError(
                f"{path}: {'; '.join(missing)}; columns are {names[:30]}"
                + (" ..." if len(names) > 30 else "")
            )

    time_key = "order" if cfg.order else "date"
    # predictions: the model's columns; `predict --date/--id` name the file's own
    theirs = "; name this file's column with predict --{}"
    time = need(
        cfg.order or cfg.date,
        time_key,
        theirs.format("date") if for_prediction and not cfg.order else "",
    )
    ident = need(
        cfg.id,
        "id",
        theirs.format("id")
        if for_prediction
        else "; set [data] id = \"\" (--id '') if the file is one series",
    )
    target = need(cfg.target, "target") if has_target else None
    tradable = need(cfg.tradable, "tradable")
    weight = None if for_prediction else need(cfg.weight, "weight")  # predictions need none
    for pat in cfg.features:
        if not _is_glob(pat):
            need(pat, "features")
        elif not any(fnmatch.fnmatchcase(n, pat) for n in names):
            missing.append(
                f"pattern {pat!r} ([data] features) matches no column{_case(pat, names)}"
            )
    roles = {r: getattr(cfg, r) for r in ROLES}
    if cfg.ohlcv_features is not False:
        # A role mapped to a column of the user's choosing must be there: left absent, its
        # features would be dropped without a word. A role left at its default is optional.
        for r, c in roles.items():
            if c != ROLES[r]:
                need(c, r)
    check_missing()
    assert time is not None
    derive = cfg.ohlcv_features
    if derive is None:
        derive = roles["close"] in schema
    ohlcv: dict[str, str] = {}
    if derive or not target_given:
        if roles["close"] not in schema:
            why = "to derive OHLCV features" if derive else "to derive the forward-return target"
            raise DataError(
                f"{path}: column {roles['close']!r} ([data] close) not found, needed {why}; "
                f"set [data] target (--target) to a target column, or map [data] close"
            )
        ohlcv = {r: c for r, c in roles.items() if c in schema}
        if not derive:
            ohlcv = {"close": ohlcv["close"]}
    # each column a role takes -> its [data] key (the first, should one column take two)
    role_of: dict[str, str] = {}
    for c, key in (
        (time, time_key),
        (cfg.date, "date"),
        (ident, "id"),
        (cfg.target, "target"),
        (tradable, "tradable"),
        (cfg.weight, "weight"),
    ):
        if c:
            role_of.setdefault(c, key)
    used = set(role_of)
    # Raw price and volume levels are never features by default: the mapped columns, and
    # a column of a role's default name mapped to no role (a raw close beside an adjusted one).
    levels = set(roles.values()) | set(ROLES.values())
    if cfg.features:
        feats: list[str] = []
        named = {p for p in cfg.features if not _is_glob(p)}
        for pat in cfg.features:
            if _is_glob(pat):
                hits = [n for n in names if fnmatch.fnmatchcase(n, pat) and n not in used]
                if not hits:
                    raise DataError(f"{path}: pattern {pat!r} ([data] features) matches no column")
                # a label matched by a pattern is left out (a leak), unless named as itself
                ahead = [n for n in hits if looks_like_label(n) and n not in named]
                if ahead and not for_prediction:
                    hits = [n for n in hits if n not in ahead]
                    if not hits:
                        raise DataError(
                            f"{path}: pattern {pat!r} ([data] features) matches only "
                            f"column(s) that look like labels: {ahead[:10]}; name such a "
                            "column itself (not by a pattern) to use it as a feature"
                        )
                    warnings.warn(
                        f"{path}: pattern {pat!r} ([data] features) matches column(s) "
                        f"{ahead[:10]}{' ...' if len(ahead) > 10 else ''} that look like labels "
                        "(a forward-looking name): left out of the features; name such a "
                        "column itself (not by a pattern) to use it",
                        DataWarning,
                        stacklevel=2,
                    )
            else:
                if pat in used:
                    key = role_of[pat]
                    raise DataError(
                        f"{path}: column {pat!r} ([data] features) is the {key} column "
                        f"([data] {key}); it cannot also be a feature"
                    )
                hits = [pat]
            feats += [h for h in hits if h not in feats]
    else:
        candidates = [n for n in names if n not in used and n not in levels and n != cfg.order]
        feats = [n for n in candidates if schema[n].is_numeric()]
        ahead = [n for n in feats if looks_like_label(n)]
        if ahead and not target_given and not for_prediction:  # a model names its own
            warnings.warn(
                f"{path}: column(s) {ahead[:10]}{' ...' if len(ahead) > 10 else ''} look like "
                "labels (a forward-looking name): left out of the features, which [data] "
                "features does not name; name them there (--features) to use them",
                DataWarning,
                stacklevel=2,
            )
            feats = [n for n in feats if n not in ahead]
        if target_given and feats:
            # A given target usually sits beside other labels (other horizons, other
            # responders): never take a column as a feature unless it is named.
            if not derive:
                raise DataError(
                    f"{path}: [data] target = {target!r} is given but [data] features is not; "
                    "name the feature columns (names or globs, --features), since other "
                    f"columns may be labels too; numeric candidates: {feats[:30]}"
                    + (" ..." if len(feats) > 30 else "")
                )
            warnings.warn(
                f"{path}: [data] target is given, so only the features derived from OHLCV are "
                f"used; name other columns in [data] features to use them: {feats[:30]}",
                DataWarning,
                stacklevel=2,
            )
            feats = []
        left_out = [f"{n} ({schema[n]})" for n in candidates if not schema[n].is_numeric()]
        if left_out:
            warnings.warn(
                f"{path}: column(s) left out of the features for their non-numeric type: "
                f"{', '.join(left_out)}; list them in [data] features (--features) to be told why",
                DataWarning,
                stacklevel=2,
            )
    text = [f for f in feats if not (schema[f].is_numeric() or schema[f] == pl.Boolean)]

    def such(col: str) -> str:
        seen = not_numbers(col) if not_numbers is not None and schema[col] == pl.String else []
        return f", values such as {seen}" if seen else ""

    if len(text) == 1:
        raise DataError(
            f"{path}: feature column {text[0]!r} ([data] features) has type {schema[text[0]]}"
            f"{such(text[0])}, expected a numeric type"
        )
    if text:
        raise DataError(
            f"{path}: feature columns {', '.join(f'{f!r} ({schema[f]}{such(f)})' for f in text)} "
            f"([data] features) are not numeric: expected numeric types"
        )
    roles_used = ((target, "target"), (weight, "weight"), (tradable, "tradable"))
    for col, key in (*roles_used, *((c, r) for r, c in ohlcv.items())):
        if col and col in empty:
            expected = "booleans (or 0/1 integers)" if key == "tradable" else "numbers"
            raise DataError(
                f"{path}: column {col!r} ([data] {key}) has no value: every row is empty; "
                f"expected {expected}"
            )
    for col, key in ((target, "target"), (weight, "weight"), *((c, r) for r, c in ohlcv.items())):
        if col and not schema[col].is_numeric():
            raise DataError(
                f"{path}: column {col!r} ([data] {key}) has type {schema[col]}{such(col)}, "
                "expected numeric"
            )
    if tradable and not (schema[tradable] == pl.Boolean or schema[tradable].is_integer()):
        raise DataError(
            f"{path}: column {tradable!r} ([data] tradable) has type {schema[tradable]}, "
            "expected boolean (or 0/1 integers)"
        )
    if not feats and not derive:
        raise DataError(
            f"{path}: no feature columns: set [data] features (--features) or provide OHLCV columns"
        )
    return Columns(
        time,
        time_key,
        ident,
        target,
        ohlcv,
        tuple(feats),
        tradable,
        weight,
        bool(derive),
        has_target,
    )


def _is_glob(s: str) -> bool:
    return any(ch in s for ch in "*?[")


def feature_differences(
    path: Path, present: list[str], wanted: list[str], patterns: tuple[str, ...], roles: set[str]
) -> list[str]:
    """Check a file of columns `present` holds every feature of `wanted` (a model's, matched by
    name: their order in the file does not matter). Refused otherwise, naming only the
    differences: the columns missing, what each may have been renamed to, and the file's other
    columns (those matching the glob `patterns` when there are some, else any not in `roles`).
    Returns those other columns, which the model does not use."""
    known = set(wanted)
    globs = [p for p in patterns if _is_glob(p)]
    others = [
        n
        for n in present
        if n not in known
        and n not in roles
        and (not globs or any(fnmatch.fnmatchcase(n, p) for p in globs))
    ]
    have = set(present)
    missing = [n for n in wanted if n not in have]
    if not missing:
        return others
    renamed = []
    spare = [n for n in present if n not in known and n not in roles]  # globs or not
    for m in missing:
        close = [o for o in spare if o.startswith(m) or m.startswith(o)]
        close = close or difflib.get_close_matches(m, spare, n=1, cutoff=0.6)
        if close:
            renamed.append(f"{m!r} -> {close[0]!r}")
    raise DataError(
        f"{path}: {len(missing)} of the model's {len(wanted)} feature columns not found: "
        f"{_few(missing)}"
        + (f"; renamed? {_few(renamed, quote=False)}" if renamed else "")
        + (f"; the file's columns the model does not know: {_few(others)}" if others else "")
    )


def _few(names: list[str], quote: bool = True, n: int = 8) -> str:
    shown = ", ".join(repr(x) if quote else x for x in names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


def _case(pat: str, names: list[str]) -> str:
    """A hint for glob `pat` that matches none of `names`: the pattern in the case of the
    columns it matches when case is ignored; empty when it matches none either way."""
    for other in (pat.lower(), pat.upper()):
        if any(fnmatch.fnmatchcase(n, other) for n in names):
            return f" (did you mean {other!r}?)"
    hits = [n for n in names if fnmatch.fnmatchcase(n.lower(), pat.lower())]
    return f" (it matches {hits[0]!r} when case is ignored)" if hits else ""
