"""Packaging: every package folder is listed (editable installs hide a missing one), and the wheel has them all."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOT_PACKAGES = {"tests", "bench", "notebooks", "examples", "build", "dist", "deploy"}


def _declared() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])


def _on_disk() -> set[str]:
    found = {"kgot_errors"}
    for init in ROOT.rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT)
        if not rel.parts or rel.parts[0] in NOT_PACKAGES or rel.parts[0].startswith(".") or "venv" in rel.parts[0]:
            continue
        if any(p.endswith(".egg-info") or p == "__pycache__" for p in rel.parts):
            continue
        found.add(".".join(("kgot_errors", *rel.parts)))
    return found


def test_every_package_folder_is_listed_in_pyproject():
    assert _on_disk() - _declared() == set(), "add these to [tool.setuptools] packages"
    assert _declared() - _on_disk() == set(), "listed packages with no folder"


def test_root_holds_only_the_three_top_level_modules_and_tests_are_not_a_package():
    top = {p.name for p in ROOT.glob("*.py")}
    assert top == {"__init__.py", "errors.py", "cli.py"}
    assert not list((ROOT / "tests").rglob("__init__.py"))


def test_wheel_contains_every_package_and_nothing_else(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("kgot_errors-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in _declared():
        assert f"{package.replace('.', '/')}/__init__.py" in names, package
    assert "kgot_errors/py.typed" in names
    assert not any(n.startswith(("kgot_errors/tests/", "kgot_errors/bench/", "kgot_errors/examples/"))
                   for n in names)
