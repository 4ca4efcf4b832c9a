"""Storage URLs: resolution (--storage, $OPTUNA_STORAGE, the default file), validation before
anything is opened, and masking: passwords never leave this module unmasked."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from search.storage.common import (
    DEFAULT_STORAGE,
    ENV_VAR,
    SCHEMES,
    SECRET_KEY_PARTS,
    StorageError,
)


def resolve_url(flag: str | None) -> str:
    """--storage wins over $OPTUNA_STORAGE, which wins over the default SQLite file.

    A relative SQLite path is made absolute against the current directory;
    `postgresql://` and `postgres://` mean the psycopg 3 driver.
    """
    url = flag or os.environ.get(ENV_VAR) or DEFAULT_STORAGE
    for alias in ("postgresql://", "postgres://"):
        if url.startswith(alias):
            url = "postgresql+psycopg://" + url[len(alias) :]
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        rel = url[len("sqlite:///") :]
        if rel and not rel.startswith(":memory:"):
            url = "sqlite:///" + str(Path(rel).resolve())
    return url


SCHEME_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
SECRET_QUERY = re.compile(
    r"([?&][^=&]*(?:" + "|".join(SECRET_KEY_PARTS) + r")[^=&]*=)([^&]*)", re.IGNORECASE
)


def _userinfo(url: str) -> tuple[str, str, str] | None:
    """(scheme://, user info, the rest from its @) of a URL with user info, cut at the last @
    before the query (a password may hold an unencoded @ or /); None without one, or for a
    SQLite file (whose path may hold an @)."""
    m = SCHEME_PREFIX.match(url)
    if m is None or url.lower().startswith("sqlite"):
        return None
    head = re.split(r"[?#]", url[m.end() :], maxsplit=1)[0]
    at = head.rfind("@")
    if at < 0:
        return None
    return m.group(0), head[:at], url[m.end() + at :]


def _password(url: str) -> str | None:
    info = _userinfo(url)
    if info is None or ":" not in info[1]:
        return None
    return info[1].partition(":")[2]


def _ambiguous_userinfo(url: str) -> bool:
    """The user info holds an unencoded @ or /: URL parsers split it elsewhere."""
    info = _userinfo(url)
    return info is not None and any(c in info[1] for c in "@/")


def _secret_key(key: str) -> bool:
    return any(part in key.lower() for part in SECRET_KEY_PARTS)


def _raw_secrets(url: str) -> list[str]:
    """Passwords as written in the URL (maybe %-encoded), found without parsing it."""
    found = [p for p in [_password(url)] if p]
    found += [m.group(2) for m in SECRET_QUERY.finditer(url)]
    return found + [unquote(s) for s in found]


def _secrets(url: str) -> list[str]:
    out = _raw_secrets(url)
    try:
        u = make_url(url)
    except (ArgumentError, ValueError):
        return [s for s in out if s]
    if u.password and not _ambiguous_userinfo(url):
        out.append(str(u.password))  # (a parser splits an ambiguous user info wrongly)
    for k, v in u.query.items():
        if _secret_key(k):
            out.extend([v] if isinstance(v, str) else list(v))
    return sorted({s for s in out if s}, key=len, reverse=True)


def _mask_raw(url: str) -> str:
    info = _userinfo(url)
    out = url
    if info is not None and ":" in info[1]:
        out = info[0] + info[1].partition(":")[0] + ":***" + info[2]
    return SECRET_QUERY.sub(r"\1***", out)


def mask(url: str) -> str:
    """The URL with any password (user info, or a query key such as `password` or
    `sslpassword`) replaced by ***."""
    if _ambiguous_userinfo(url):
        return _mask_raw(url)  # an unencoded @ or / in the user info: parsers split it wrongly
    try:
        u = make_url(url)
        hidden = {k: "***" for k in u.query if _secret_key(k)}
        if hidden:
            u = u.update_query_dict(hidden)
        return u.render_as_string(hide_password=True).replace("=%2A%2A%2A", "=***")
    except (ArgumentError, ValueError):
        return _mask_raw(url)


def scrub(text: str, url: str) -> str:
    """`text` with the URL and its password (plain or %-encoded) masked."""
    out = text.replace(url, mask(url))
    for secret in _secrets(url):
        out = out.replace(secret, "***")
    return out


def storage_flag(url: str) -> str | None:
    """What a printed command needs to reach the study at `url` as this run did: "" where
    the command would resolve it anyway (the default file, or $OPTUNA_STORAGE), else
    " --storage URL"; None where the URL holds a password (never printed)."""
    import shlex

    if url == resolve_url(None):
        return ""
    if _secrets(url):
        return None
    if url.startswith("sqlite:///"):
        return f" --storage {shlex.quote(url)}"
    return f" --storage {shlex.quote(url.replace('postgresql+psycopg://', 'postgresql://', 1))}"


def describe(url: str) -> str:
    """Where the study lives, for people: the SQLite file's absolute path, or the masked URL."""
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///") :]
    return mask(url)


def _scheme(url: str) -> str:
    return url.split(":", 1)[0].split("+", 1)[0].lower() if "://" in url else ""


def _sqlite_file(url: str) -> str | None:
    """The SQLite database file of `url`, or None for an in-memory database or another URL."""
    if _scheme(url) != "sqlite":
        return None
    db = make_url(url).database
    return None if not db or db.startswith(":memory:") else db


EXPECTED_URL = (
    "expected sqlite:///FILE, postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE, "
    "mysql+pymysql://USER:PASSWORD@HOST:PORT/DATABASE or grpc://HOST:PORT (`optuna-run proxy`)"
)


def _as_written(url: str) -> str:
    """The URL as given (not re-rendered, so nothing %-encoded), its passwords masked (also
    in a string with no scheme: what stands between the first ':' and the last '@')."""
    if "://" not in url and "@" in url:
        head, _, tail = url.rpartition("@")
        url_shown = (head.split(":", 1)[0] + ":***" if ":" in head else head) + "@" + tail
        return SECRET_QUERY.sub(r"\1***", url_shown)
    out = _mask_raw(url)
    for secret in _secrets(url):
        out = out.replace(secret, "***")
    return out


def _check_sqlite_file(url: str, shown: str) -> None:
    """An existing path of a SQLite URL must be a SQLite database (or an empty file)."""
    db = _sqlite_file(url)
    if db is None:
        return
    path = Path(db)
    if path.is_dir():
        raise StorageError(
            f"storage URL {shown!r}: {db} is a folder; expected a SQLite file in it, e.g. "
            f"sqlite:///{path / 'optuna.db'}"
        )
    if path.is_file() and path.stat().st_size and not _is_sqlite(path):
        raise StorageError(
            f"storage URL {shown!r}: {db} is not a SQLite database; expected a study "
            "file (or a new file name)"
        )


def _is_sqlite(path: Path) -> bool:
    """Whether SQLite reads the file as a database. Asked of SQLite itself, never by opening
    the file here: closing any descriptor of a database file drops the POSIX locks that this
    process's open connections hold on it (their writes then race other processes')."""
    import sqlite3

    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return True  # cannot be opened here: the storage's own open says why
    try:
        con.execute("PRAGMA schema_version").fetchone()
        return True
    except sqlite3.DatabaseError as e:
        return "not a database" not in str(e)
    finally:
        con.close()


def check_url(url: str) -> None:
    """Refuse, before anything is opened, a storage URL that cannot hold a study: another
    scheme, one that does not parse (e.g. a port that is no number), a port out of range, an
    in-memory SQLite database, a SQLite path that is a folder or a file of another kind, a
    password with an unencoded @. Raises StorageError with the password masked."""
    scheme = _scheme(url)
    shown = _as_written(url)
    if scheme not in SCHEMES:
        path = "://" not in url and "@" not in url  # a bare path (not user@host)
        raise StorageError(
            f"storage URL {shown!r}: "
            + (f"a path, not a URL: for a SQLite file write sqlite:///{shown}; " if path else "")
            + f"{EXPECTED_URL} (journal files are not offered: they have no heartbeat, so a "
            "dead worker's trial would stay RUNNING)"
        )
    if scheme == "sqlite" and re.match(r"sqlite(\+\w+)?://[^/]", url):
        raise StorageError(
            f"storage URL {shown!r}: a SQLite URL has no host: three slashes before a "
            "relative path (sqlite:///studies/optuna.db), four before an absolute one "
            "(sqlite:////tmp/optuna.db)"
        )
    if _ambiguous_userinfo(url):
        raise StorageError(
            f"storage URL {shown!r}: the user or password holds an '@' or '/', which end the "
            "user info and the host; percent-encode them (@ as %40, / as %2F, : as %3A)"
        )
    if scheme == "grpc":
        m = re.fullmatch(r"grpc://(\[[^\]]+\]|[^:/\[\]]+):(\d+)/?", url)
        if not m:
            raise StorageError(f"storage URL {shown!r}: expected grpc://HOST:PORT")
        port: int | None = int(m.group(2))
    else:
        try:
            u = make_url(url)
            port = u.port
        except (ArgumentError, ValueError):
            raise StorageError(
                f"storage URL {shown!r} is not valid: {EXPECTED_URL} (PORT a number)"
            ) from None
        if scheme == "sqlite" and _in_memory(u.database or "", u.query.get("mode")):
            raise StorageError(
                f"storage URL {shown!r}: an in-memory SQLite database cannot hold a study "
                "(it is gone when the process ends, and other processes cannot share it); "
                "give a file: sqlite:///FILE, e.g. sqlite:///studies/optuna.db"
            )
    if port is not None and not 1 <= port <= 65535:
        raise StorageError(f"storage URL {shown!r}: expected a PORT from 1 to 65535, got {port}")
    if scheme != "grpc":
        try:
            make_url(url).get_dialect().import_dbapi()
        except NoSuchModuleError:
            driver = url.split("://", 1)[0]
            raise StorageError(
                f"storage URL {shown!r}: unknown database driver {driver!r}; {EXPECTED_URL}"
            ) from None
        except ImportError as e:
            name = e.name or str(e).strip().splitlines()[0]
            package = DRIVER_PACKAGES.get(name, name.split(".")[0])
            raise StorageError(
                f"storage URL {shown!r} needs a database driver that is not installed: {name} "
                f"(pip install {package})"
            ) from None
    if scheme == "sqlite":
        _check_sqlite_file(url, shown)


# a driver module -> the package that installs it
DRIVER_PACKAGES = {
    "MySQLdb": "mysqlclient, or use mysql+pymysql:// with PyMySQL",
    "pymysql": "PyMySQL",
    "mysql.connector": "mysql-connector-python",
    "psycopg2": "psycopg2-binary, or use postgresql+psycopg://",
    "psycopg": "'psycopg[binary]'",
}


def check_new_file_folder(url: str) -> None:
    """Refuse a SQLite file (other than the default studies/optuna.db) whose folder does not
    exist: a mistyped path would otherwise create folders and an empty study there."""
    path = _sqlite_file(url)
    if path is None or url == resolve_url(DEFAULT_STORAGE):
        return
    folder = Path(path).parent
    if not folder.is_dir():
        raise StorageError(
            f"storage URL {_as_written(url)!r}: the folder {folder} does not exist (a new "
            "study file is created, not its folder: create it first, or check the path)"
        )


def _in_memory(database: str, mode: str | Sequence[str] | None) -> bool:
    """`sqlite://`, `sqlite:///:memory:` or `?mode=memory`: a database that lives in one
    process only."""
    modes = [mode] if isinstance(mode, str) else list(mode or [])
    return not database or database.startswith((":memory:", "file::memory:")) or "memory" in modes
