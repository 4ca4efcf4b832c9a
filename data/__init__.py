"""Market panel data: loading, checks, features and targets, dense panel, splits, windows.

Every name is imported on first use: `from data import ConfigError` (what the command
line's flag checks need) loads neither polars nor torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from data.lazy import lazy_dir, lazy_names

if TYPE_CHECKING:
    from data.config import DataConfig
    from data.errors import ConfigError, DataError
    from data.panel import Panel, fingerprint, load_panel
    from data.prepared import Batch, Prepared
    from data.split import Split, make_split
    from data.windows import WindowIndex, gather, run_lengths, window_ends

# public name -> the module that holds it
_LAZY = {
    "DataConfig": "data.config",
    "ConfigError": "data.errors",
    "DataError": "data.errors",
    "Panel": "data.panel",
    "fingerprint": "data.panel",
    "load_panel": "data.panel",
    "Batch": "data.prepared",
    "Prepared": "data.prepared",
    "Split": "data.split",
    "make_split": "data.split",
    "WindowIndex": "data.windows",
    "gather": "data.windows",
    "run_lengths": "data.windows",
    "window_ends": "data.windows",
}

__all__ = [
    "Batch",
    "ConfigError",
    "DataConfig",
    "DataError",
    "Panel",
    "Prepared",
    "Split",
    "WindowIndex",
    "fingerprint",
    "gather",
    "load_panel",
    "make_split",
    "run_lengths",
    "window_ends",
]


if not TYPE_CHECKING:  # mypy reads the imports above; an unknown name stays an error
    __getattr__ = lazy_names(__name__, _LAZY, globals())
    __dir__ = lazy_dir(_LAZY, globals())
