"""Whether an output path can be written, checked before any work that ends in writing it
(a flag's type for the CLI, an argument's check for the API), and a study name as the stem
of the files named after it."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
from pathlib import Path

# a file name holds at most 255 bytes: the stem leaves room for "-report", "-best.json", ...
STEM_BYTES = 200
_NOT_IN_A_NAME = re.compile(r"[/\\\x00-\x1f\x7f]")


def name_stem(name: str) -> str:
    """A study name as the stem of the files named after it (`NAME.log`, `NAME-report`,
    `NAME-model.pt`): the name itself where it can be one; else a `/`, a backslash or a
    control character becomes `_` (the file stays in its folder), a name longer than
    STEM_BYTES bytes is cut, and a hash of the whole name is added (`a/b` and `a_b`, or
    two long names sharing their start, still get a file each)."""
    stem = _NOT_IN_A_NAME.sub("_", name)
    if stem == name and len(stem.encode()) <= STEM_BYTES:
        return stem
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    cut = stem.encode()[: STEM_BYTES - len(digest) - 1].decode(errors="ignore")
    return f"{cut}-{digest}"


def study_file(name: str, what: str) -> str:
    """The default path of a study's `what` (`model.pt`, `report`, `best.json`, ...):
    studies/NAME-what, NAME the name as a file name (`name_stem`)."""
    return f"studies/{name_stem(name)}-{what}"


def study_flag(name: str) -> str:
    """`--study-name NAME` as a shell takes it: quoted where it must be, and joined by `=`
    where the name starts with `-` (argparse would read it as a flag)."""
    if name.startswith("-"):
        return shlex.quote(f"--study-name={name}")
    return f"--study-name {shlex.quote(name)}"


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
