"""Whether an output path can be written, checked before any work that ends in writing it
(a flag's type for the CLI, an argument's check for the API)."""

from __future__ import annotations

import os
from pathlib import Path


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
