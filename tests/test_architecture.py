"""The house rules of docs/architecture.md: which of our folders may import which. The kernel
(tryggheim/, except the apps that live in its folder) imports nothing of ours; edge/, hl7/ and
firmware_sim/ only the kernel; gateway/ the kernel and hl7/."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parent.parent
OURS = {"tryggheim", "edge", "gateway", "hl7", "dashboards", "firmware_sim"}
APPS = "tryggheim/apps/"
MAY_IMPORT = {
    "tryggheim": set(),
    "edge": {"tryggheim"},
    "hl7": {"tryggheim"},
    "firmware_sim": {"tryggheim"},
    "gateway": {"tryggheim", "hl7"},
    "dashboards": set(),
}


def imported_packages(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return {name.split(".")[0] for name in names} & OURS


def test_each_folder_imports_only_what_the_architecture_allows() -> None:
    breaches = {}
    for folder, allowed in MAY_IMPORT.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = str(path.relative_to(ROOT))
            if relative.startswith(APPS):
                continue
            extra = imported_packages(path) - allowed - {folder}
            if extra:
                breaches[relative] = sorted(extra)
    assert breaches == {}, "see docs/architecture.md, 'The house'"


def test_hl7_knows_no_platform_observation() -> None:
    """Issue 15: hl7/ is an HL7 v2 protocol library on its own frozen dataclasses; the platform's
    Observation becomes an OBX in gateway/ (gateway.hl7.outbound.compose), in one place."""
    users = []
    for path in sorted((ROOT / "hl7").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module == "tryggheim.domain"
                and any(alias.name == "Observation" for alias in node.names)
            ):
                users.append(str(path.relative_to(ROOT)))
    assert users == []
