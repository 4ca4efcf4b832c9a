"""What load_panel refuses or warns about in one go: infinite values, a given target's horizon,
features constant over the training dates."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from data import DataError
from data.errors import DataWarning
from tests.data_tests.panels import f0, load, long_file


def test_every_column_with_infinite_values_is_named_at_once(tmp_path: Path) -> None:
    inf = math.inf
    cols = {
        "f0": f0,
        "f1": lambda d, s: inf if (d, s) == (1, 0) else 1.0,
        "f2": lambda d, s: -inf if s == 1 else 2.0,
        "f3": lambda d, s: 1e39 if d == 2 else 3.0,  # beyond float32
        "target": lambda d, s: inf if (d, s) == (0, 0) else 0.1,
    }
    path = long_file(tmp_path / "p.parquet", 4, 2, cols)
    with pytest.raises(DataError) as e:
        load(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: infinite values (or values beyond float32 range) in 4 ")
    assert "'f1' (1 row), 'f2' (4 rows), 'f3' (2 rows), 'target' (1 row)" in msg
    assert "'f0'" not in msg
