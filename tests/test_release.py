"""One version everywhere: ``tryggheim --version``, the wheel the release step builds, the image
label and (tests/gateway/test_observability.py) ``/metrics``."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from test_compose import dockerfile_stages

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "scripts" / "release.sh"
VERSION: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def release(*args: str, dist: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHON": sys.executable, "DIST": str(dist)}
    return subprocess.run(
        [str(RELEASE), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
    )


def test_the_command_says_its_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tryggheim.apps.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == f"tryggheim {VERSION}"


def test_the_release_step_builds_the_tagged_wheel_with_its_licence(tmp_path: Path) -> None:
    done = release(f"v{VERSION}", "--no-image", dist=tmp_path)
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob(f"tryggheim-{VERSION}-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        info = f"tryggheim-{VERSION}.dist-info"
        metadata = archive.read(f"{info}/METADATA").decode()
        licence = next(n for n in archive.namelist() if n.startswith(f"{info}/licenses/LICENSE"))
        assert archive.read(licence) == (ROOT / "LICENSE").read_bytes()
    assert f"\nVersion: {VERSION}\n" in metadata


def test_the_release_step_refuses_a_tag_that_is_not_the_declared_version(tmp_path: Path) -> None:
    done = release("v99.0.0", "--no-image", dist=tmp_path)
    assert done.returncode == 2
    assert f"pyproject.toml says version {VERSION}" in done.stderr
    assert not list(tmp_path.iterdir())


def test_the_image_is_labelled_with_the_version_it_is_built_for() -> None:
    runtime = dockerfile_stages()["runtime"]
    assert ("ARG", "VERSION=dev") in runtime
    (label,) = [arg for ins, arg in runtime if ins == "LABEL"]
    assert 'org.opencontainers.image.version="${VERSION}"' in label
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in label


def test_the_licence_is_the_apache_licence_the_package_declares() -> None:
    text = (ROOT / "LICENSE").read_text()
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    assert declared == "Apache-2.0"
    assert text.lstrip().startswith("Apache License\n                           Version 2.0")
    assert "END OF TERMS AND CONDITIONS" in text
