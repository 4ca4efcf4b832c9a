"""Optuna's own storage tests, run against this project's storages.

    python tests/optuna_suite/run.py                       # SQLite
    python tests/optuna_suite/run.py --backend postgresql  # a fresh database on --pg
    python tests/optuna_suite/run.py --backend mysql       # a fresh database on --mysql
    OPTUNA_RUN_STOCK_STORAGE=1 python tests/optuna_suite/run.py   # the stock fallback path

The tests are those of the INSTALLED Optuna, from its sdist (`pip download
optuna==VERSION --no-deps --no-binary :all:`), kept in build/optuna-sdist/ (git-ignored,
never part of the project). The plugin beside this file (optuna_suite_plugin.py) points
Optuna's test helper StorageSupplier (and test_with_server.py's get_storage) at
`make_storage`; the deliberate deviations are listed there, each with its reason.

Without the sdist (no network, no pip), or without the database server of its backend (or
PyMySQL for MySQL), prints one
line saying why and exits 0. Extra arguments go to pytest (e.g. `-k heartbeat`, `-x`).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "build" / "optuna-sdist"
FILES = (
    "tests/storages_tests/test_storages.py",
    "tests/storages_tests/test_heartbeat.py",
    "tests/storages_tests/test_callbacks.py",
    "tests/storages_tests/test_with_server.py",
)
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
MYSQL = "mysql+pymysql://root@127.0.0.1:3306/test"


def sdist(version: str) -> tuple[Path | None, str]:
    """The unpacked sdist of optuna==`version` (downloaded once), or None and why not."""
    tree = CACHE / f"optuna-{version}"
    if (tree / FILES[0]).exists():
        return tree, ""
    CACHE.mkdir(parents=True, exist_ok=True)
    archive = CACHE / f"optuna-{version}.tar.gz"
    if not archive.exists():
        why = _download(version)
        if why:
            return None, why
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(f"optuna-{version}/")]
        tar.extractall(CACHE, members=members, filter="data")
    return tree, ""


def _reachable(url: str) -> bool:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    try:
        port = u.port or (3306 if u.get_backend_name() == "mysql" else 5432)
        with socket.create_connection((u.host or "127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def _download(version: str) -> str:
    """Download the sdist into CACHE; why it failed ('' if not). pip prepares its metadata:
    with this environment's setuptools first, else in an isolated build."""
    why = ""
    for isolation in (["--no-build-isolation"], []):
        cmd = [sys.executable, "-m", "pip", "download", f"optuna=={version}", "--no-deps"]
        cmd += ["--no-binary", ":all:", *isolation, "-q", "-d", str(CACHE)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"pip download failed: {e}"
        if done.returncode == 0 and (CACHE / f"optuna-{version}.tar.gz").exists():
            return ""
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no archive"]
        errors = [x.strip() for x in lines if x.strip().lower().startswith("error")]
        why = f"pip download optuna=={version} failed: {(errors or lines)[-1]}"
    return why


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=("sqlite", "postgresql", "mysql"), default="sqlite")
    ap.add_argument("--pg", default=PG, help="a PostgreSQL database to create the test one from")
    ap.add_argument("--mysql", default=MYSQL, help="a MySQL database to create the test one from")
    args, rest = ap.parse_known_args(argv)
    version = importlib.metadata.version("optuna")
    tree, why = sdist(version)
    mode = "stock" if os.environ.get("OPTUNA_RUN_STOCK_STORAGE") == "1" else "fast"
    if tree is None:
        print(f"optuna-suite: skipped (optuna {version}, {args.backend}, {mode}): {why}")
        return 0
    server = {"postgresql": args.pg, "mysql": args.mysql}.get(args.backend)
    if server is not None and not _reachable(server):
        print(
            f"optuna-suite: skipped (optuna {version}, {args.backend}, {mode}): "
            f"{server} unreachable"
        )
        return 0
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), str(Path(__file__).parent), env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    env["OPTUNA_SUITE_BACKEND"] = args.backend
    env["OPTUNA_SUITE_PG"] = args.pg
    env["OPTUNA_SUITE_MYSQL"] = args.mysql
    cmd = [sys.executable, "-m", "pytest", "-p", "optuna_suite_plugin", "-p", "no:cacheprovider"]
    cmd += ["-q", "--color=no"]
    cmd += ["-c", str(tree / "pyproject.toml"), "--rootdir", str(tree), *FILES, *rest]
    print(f"optuna-suite: optuna {version}'s storage tests on {args.backend}, {mode} path")
    return subprocess.call(cmd, cwd=tree, env=env)


if __name__ == "__main__":
    sys.exit(main())
