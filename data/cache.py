"""A panel saved as .npy files in a folder, for worker processes to memory-map (one copy in
RAM on a CPU, however many workers read it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data.panel import Panel


def save_panel(panel: Panel, folder: Path) -> None:
    """Write the panel as .npy files; workers memory-map them (one copy in RAM on a CPU)."""
    np.save(folder / "values.npy", panel.values)
    np.save(folder / "target.npy", panel.target)
    np.save(folder / "valid.npy", panel.valid)
    np.save(folder / "dates.npy", panel.dates)
    np.save(folder / "ids.npy", panel.ids)
    if panel.weight is not None:
        np.save(folder / "weight.npy", panel.weight)
    (folder / "features.txt").write_text("\n".join(panel.feature_names))
    (folder / "source.txt").write_text(panel.source)


def panel_bytes(panel: Panel) -> int:
    """About what save_panel writes, in bytes."""
    arrays = [panel.values, panel.target, panel.valid, panel.dates, panel.ids, panel.weight]
    return sum(int(a.nbytes) for a in arrays if a is not None)


def load_cached_panel(folder: Path) -> Panel:
    w = folder / "weight.npy"
    return Panel(
        values=np.load(folder / "values.npy", mmap_mode="r"),
        target=np.load(folder / "target.npy"),
        valid=np.load(folder / "valid.npy"),
        dates=np.load(folder / "dates.npy"),
        ids=np.load(folder / "ids.npy"),
        feature_names=(folder / "features.txt").read_text().split("\n"),
        weight=np.load(w) if w.exists() else None,
        source=(folder / "source.txt").read_text(),
    )
