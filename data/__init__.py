"""Market panel data: loading, checks, features and targets, dense panel, splits, windows."""

from __future__ import annotations

from data.config import DataConfig
from data.errors import ConfigError, DataError
from data.panel import Panel, fingerprint, load_panel
from data.prepared import Batch, Prepared
from data.split import Split, make_split
from data.windows import WindowIndex, gather, run_lengths, window_ends

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
