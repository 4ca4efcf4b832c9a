"""`optuna-run dashboard` and `optuna-run --dashboard`: a real optuna-dashboard server on the
study storage, bound to 127.0.0.1 by default; a busy port is a one-line error."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

import pytest

from search.cli import main
from tests.search_tests.helpers import run_cli, write_study
from tests.search_tests.studyrun import finish, start_cli, start_dashboard


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def study_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("dash")
    url = f"sqlite:///{folder}/s.db"
    assert (
        run_cli("--config", str(write_study(folder, "dash")), "--storage", url, "--n-trials", "2")
        == 0
    )
    return url


def test_dashboard_serves_the_study_on_127_0_0_1(study_url: str, tmp_path: Path) -> None:
    proc, first = start_dashboard(study_url, tmp_path)
    try:
        assert first.startswith("http://127.0.0.1:") and first.endswith("/dashboard/"), first
        base = first[: -len("/dashboard/")]
        studies = get_json(f"{base}/api/studies")["study_summaries"]
        assert [s["study_name"] for s in studies] == ["dash"]
        detail = get_json(f"{base}/api/studies/{studies[0]['study_id']}")
        assert len(detail["trials"]) == 2
        with urllib.request.urlopen(first, timeout=10) as r:
            assert b"<html" in r.read().lower()
    finally:
        proc.terminate()
    rc, _, err = finish(proc, timeout=30)
    assert rc == 0, err


def test_a_busy_port_is_a_clear_error(study_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["dashboard", "--storage", study_url, "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"optuna-run: error: --port {port}: 127.0.0.1:{port} is already in use; "
        "choose another --port (0 picks a free one)"
    )


def test_a_busy_port_stops_a_search_before_any_trial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    cfg = write_study(tmp_path, "busy")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert run_cli("--config", str(cfg), "--storage", url, "--dashboard", str(port)) == 2
    err = capsys.readouterr().err
    assert (
        f"--dashboard {port}: 127.0.0.1:{port} is already in use; choose another --dashboard" in err
    )
    # the port is bound before the storage is opened: no database, no empty study
    assert not (tmp_path / "s.db").exists()


def test_dashboard_of_a_missing_sqlite_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/typo.db"
    assert main(["dashboard", "--storage", url, "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"optuna-run: error: --storage: no SQLite file {tmp_path}/typo.db"), err
    assert "--dashboard" in err and "\n" not in err
    assert not (tmp_path / "typo.db").exists()


def test_dashboard_beside_a_search_stops_with_it(tmp_path: Path) -> None:
    cfg = write_study(tmp_path, "beside")
    url = f"sqlite:///{tmp_path}/s.db"
    with socket.socket() as s:  # a port free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = start_cli(
        ["--config", str(cfg), "--storage", url, "--n-trials", "40", "--dashboard", str(port)],
        cwd=tmp_path,
    )
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("dashboard: "):
            break
    assert lines[-1].startswith(f"dashboard: http://127.0.0.1:{port}/dashboard/"), lines
    studies = get_json(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
    assert [s["study_name"] for s in studies] == ["beside"]
    rc, _, err = finish(proc)
    assert rc == 0, err
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
