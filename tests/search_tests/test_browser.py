"""A real browser on the dashboard: headless Chromium opens the pages served by
`optuna-run dashboard` for a study made by the project, the rendered DOM must show the study
name, its trial count and its note, and a screenshot is saved (build/browser/, git-ignored)
to be looked at. Skips, with one line, where no Chromium is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.search_tests.helpers import load, run_cli, write_study
from tests.search_tests.studyrun import start_dashboard

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
SHOTS = ROOT / "build" / "browser"
N_TRIALS = 4


def browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium on PATH (apt-get install chromium; .ci/run does)")


def headless(exe: str, profile: Path, *args: str, budget_ms: int = 10_000) -> str:
    """Run headless Chromium with background networking off; returns its stdout."""
    cmd = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={profile}",
        f"--virtual-time-budget={budget_ms}",
        *args,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def text_of(dom: str) -> str:
    """The visible text of a dumped DOM, one space between elements."""
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    text = re.sub(r"<[^>]+>", " ", dom)
    return re.sub(r"\s+", " ", text.replace("&amp;", "&")).strip()


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    folder = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{folder}/s.db"
    cfg = write_study(folder, "browser-study")
    assert run_cli("--config", str(cfg), "--storage", url, "--n-trials", str(N_TRIALS)) == 0
    study_id = load(url, "browser-study")._study_id
    proc, base = start_dashboard(url, folder)
    try:
        assert base.startswith("http://127.0.0.1:"), base
        yield base, study_id
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_chromium_renders_the_study_its_trials_and_its_note(
    dashboard: tuple[str, int], tmp_path: Path
) -> None:
    exe = browser()
    base, sid = dashboard
    trials = text_of(headless(exe, tmp_path / "p", "--dump-dom", f"{base}studies/{sid}/trials"))
    assert f"browser-study (id={sid})" in trials, trials[:500]
    assert f"{N_TRIALS} Trials" in trials, trials[:500]
    for n in range(N_TRIALS):
        assert f"Trial {n} " in trials
    note = text_of(headless(exe, tmp_path / "p", "--dump-dom", f"{base}studies/{sid}/note"))
    for part in (
        "sp500_sample.parquet",
        "40 securities x 1,259 dates",
        "Target",
        "optuna-run export --study-name browser-study",
    ):
        assert part in note, (part, note[:800])
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / "dashboard-history.png"
    shot.unlink(missing_ok=True)
    headless(
        exe,
        tmp_path / "p",
        "--window-size=1400,1100",
        f"--screenshot={shot}",
        f"{base}studies/{sid}",
    )
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000
