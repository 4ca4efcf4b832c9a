"""Shared fixtures: tiny hand-checkable panels written to files, the bundled sample, paths."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import polars as pl
import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample" / "sp500_sample.parquet"
SHARED_DATA = ROOT.parent / "shared" / "data"
PG_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def postgres_available() -> bool:
    return _listening(5432)


def write_panel(
    path: Path,
    n_dates: int = 60,
    n_ids: int = 4,
    n_features: int = 2,
    seed: int = 0,
    drop: list[tuple[int, int]] | None = None,
    target: bool = True,
) -> Path:
    """A long panel file: columns date, id, f0.., target; `drop` removes (date_idx, id_idx) rows.

    Feature f0 at (d, s) is d * 100 + s, so a gathered window is checkable by eye.
    """
    rng = np.random.default_rng(seed)
    dates = pl.date_range(
        pl.date(2020, 1, 1), pl.date(2020, 1, 1) + pl.duration(days=n_dates - 1), eager=True
    )
    rows = []
    dropped = set(drop or [])
    for d in range(n_dates):
        for s in range(n_ids):
            if (d, s) in dropped:
                continue
            r = {"date": dates[d], "id": f"S{s}", "f0": float(d * 100 + s)}
            for k in range(1, n_features):
                r[f"f{k}"] = float(rng.normal())
            if target:
                r["target"] = float(rng.normal())
            rows.append(r)
    df = pl.DataFrame(rows)
    if path.suffix == ".csv":
        df.write_csv(path)
    else:
        df.write_parquet(path)
    return path


@pytest.fixture
def tiny_panel_file(tmp_path: Path) -> Path:
    return write_panel(tmp_path / "tiny.parquet")


@pytest.fixture
def sample_path() -> Path:
    assert SAMPLE.exists(), "the bundled sample data is missing"
    return SAMPLE


@pytest.fixture
def pg_url() -> str:
    if not postgres_available():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    return PG_URL


@pytest.fixture
def mysql_url() -> str:
    if not _listening(3306):
        pytest.skip("MySQL / MariaDB is not reachable on 127.0.0.1:3306")
    pytest.importorskip("pymysql", reason="PyMySQL is not installed (the [mysql] extra)")
    return MYSQL_URL
