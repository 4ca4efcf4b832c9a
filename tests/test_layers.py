"""The dependency rule of docs/ARCHITECTURE.md, read off every module's imports (top-level and
inside functions alike): no import points back up the layers, and only the fenced package
imports Optuna's private modules."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# a package -> the packages it must never import
FORBIDDEN = {
    "data": ("models", "search", "optuna"),
    "models": ("search", "optuna"),
    "search.config": ("search.study", "search.evaluate", "search.api", "search.cli"),
    "search.storage": ("search.study", "search.evaluate", "search.api", "search.cli"),
    "search.study": ("search.evaluate", "search.api", "search.cli"),
    "search.evaluate": ("search.api", "search.cli"),
    "search.api": ("search.cli",),
}
FENCE = "search.storage._optuna"


def imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_no_import_points_back_up_the_layers() -> None:
    bad = []
    for top in ("data", "models", "search"):
        for path in sorted((ROOT / top).rglob("*.py")):
            mod = module_name(path)
            for package, banned in FORBIDDEN.items():
                if under(mod, package):
                    bad += [
                        f"{mod} imports {n}" for n in imports(path) for b in banned if under(n, b)
                    ]
    assert not bad, "\n".join(bad)


def private(name: str) -> bool:
    """An Optuna name behind a private module, or a private name its public module does not
    export (`optuna.storages._CachedStorage` is in optuna.storages.__all__: public)."""
    parts = name.split(".")
    if parts[0] != "optuna":
        return False
    for i, part in enumerate(parts[1:], 1):
        if part.startswith("_"):
            try:
                exported = importlib.import_module(".".join(parts[:i])).__all__
            except (ImportError, AttributeError):
                return True
            return i < len(parts) - 1 or part not in exported
    return False


def test_only_the_fence_imports_optunas_private_modules() -> None:
    bad = []
    for top in ("data", "models", "search"):
        for path in sorted((ROOT / top).rglob("*.py")):
            mod = module_name(path)
            if not under(mod, FENCE):
                bad += [f"{mod} imports {n}" for n in imports(path) if private(n)]
    assert not bad, "\n".join(bad)


HELP_CHECK = """
import sys
from search.cli.app import VERBS, main
for verb in VERBS:
    try:
        main(["--help"] if verb == "run" else [verb, "--help"])
    except SystemExit as e:
        assert e.code == 0, (verb, e.code)
heavy = ("torch", "polars", "optuna", "sqlalchemy", "numpy", "pandas", "data.panel", "models")
print(sorted(m for m in heavy if m in sys.modules))
"""


def test_every_verbs_help_loads_no_heavy_library() -> None:
    """`optuna-run VERB --help` answers at once: the flags' checks and help texts load no
    torch, polars, Optuna or SQLAlchemy (each package's names are imported on first use)."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", HELP_CHECK], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout[-2000:] + out.stderr
