"""The house rules of docs/architecture.md, "The house": which folder and which wing of the
platform may import which. The rules are import-linter contracts in pyproject.toml
(``[tool.importlinter]``): the kernel (tryggheim/, except its roof tryggheim/apps/) imports
nothing of ours; edge/, hl7/ and firmware_sim/ only the kernel; gateway/ the kernel and hl7/;
inside gateway/ nothing imports the composition root, the wings do not import the API, the
record store is the ground floor, the alarm core is pure and routes hold no SQL."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent


def contracts() -> list[dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    found: list[dict[str, object]] = config["tool"]["importlinter"]["contracts"]
    return found


def test_the_import_contracts_hold() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(contracts())} kept, 0 broken." in result.stdout


def test_every_folder_of_ours_is_under_a_contract() -> None:
    """A new top-level package would otherwise be free of every rule."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = set(config["tool"]["importlinter"]["root_packages"])
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert on_disk - {"tests", "bench"} == packages


def test_the_tests_mirror_the_tree_without_shadowing_it() -> None:
    """tests/gateway, tests/edge and tests/hl7 share the product's folder names; pytest run as CI
    runs it (``.venv/bin/pytest``, no PYTHONPATH) put tests/ first on sys.path, where those
    folders became namespace packages in place of ours (``No module named
    'gateway.alarms.book'``). The project root must win."""
    import edge
    import gateway
    import hl7

    for package in (edge, gateway, hl7):
        assert package.__file__ is not None, f"{package.__name__} is a namespace package"
        assert Path(package.__file__).parent == ROOT / package.__name__
