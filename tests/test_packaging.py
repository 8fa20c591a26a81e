"""The built wheel, installed without extras into a fresh venv, runs the product: a user who
runs `pip install tryggheim-*.whl` gets every runtime dependency and every file the product
reads (migrations, the nurse app, Grafana provisioning), not only what the test extra or the
source tree happens to provide.

The venv is built once per session (about a minute: pip resolves and installs the runtime
dependencies; its cache makes later runs faster). Every command runs from a directory outside
the source tree and without PYTHONPATH, so nothing is imported from the checkout."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tryggheim.apps.broker import find_free_port

ROOT = Path(__file__).parent.parent
PRODUCT_PACKAGES = ("tryggheim", "edge", "gateway", "hl7", "dashboards", "firmware_sim")

ADT_A01 = (
    "MSH|^~\\&|DIPS|AHUS|TRYGGHEIM|BAERUM|20250301120000+0100||ADT^A01|WHEEL-1|P|2.5|||||NOR\n"
    "EVN|A01|20250301115930+0100\n"
    "PID|1||15076500565^^^NOR^NNNOR||Ødegård^Kari||19650715|F\n"
)


@dataclass(frozen=True)
class InstalledWheel:
    wheel: Path
    bin: Path
    workdir: Path

    def env(self) -> dict[str, str]:
        env = _clean_env()
        return env | {"PATH": f"{self.bin}{os.pathsep}{env.get('PATH', '')}"}

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "tryggheim"), *args],
            cwd=self.workdir,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _clean_env() -> dict[str, str]:
    # PYTHONPATH (the checkout, under pytest) would make pip and the product see the sources.
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    return [name for name in listed.decode().split("\0") if name and (ROOT / name).is_file()]


@pytest.fixture(scope="session")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InstalledWheel]:
    base = tmp_path_factory.mktemp("wheel")
    # Built from a copy, so that the build leaves nothing in the checkout.
    source = base / "source"
    for name in _tracked_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    dist = base / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), "."],
        cwd=source,
        env=_clean_env(),
        check=True,
        timeout=300,
    )
    (wheel,) = dist.glob("tryggheim-*.whl")
    venv = base / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", str(venv)], cwd=base, env=_clean_env(), check=True
    )
    subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-compile",
            str(wheel),
        ],
        cwd=base,
        env=_clean_env(),
        check=True,
        timeout=600,
    )
    workdir = base / "work"
    workdir.mkdir()
    yield InstalledWheel(wheel, venv / "bin", workdir)


def test_the_wheel_holds_every_file_of_the_product(installed_wheel: InstalledWheel) -> None:
    in_wheel = set(zipfile.ZipFile(installed_wheel.wheel).namelist())
    product = [
        name
        for name in _tracked_files()
        if name.split("/")[0] in PRODUCT_PACKAGES and "__pycache__" not in name
    ]
    assert any(name.startswith("dashboards/grafana/provisioning/") for name in product)
    assert [name for name in product if name not in in_wheel] == []


def test_help_and_ble_decode_run_from_the_wheel(installed_wheel: InstalledWheel) -> None:
    helped = installed_wheel.run("--help")
    assert helped.returncode == 0 and "demo" in helped.stdout, helped.stderr
    decoded = installed_wheel.run(
        "ble", "decode", "2A35", "1e 8000 5200 6100 e907 03 01 08 0f 00 4200 01 0400"
    )
    assert decoded.returncode == 0, decoded.stderr
    assert json.loads(decoded.stdout)["systolic"] == "128"


def test_fhir_observations_and_validate_run_from_the_wheel(
    installed_wheel: InstalledWheel,
) -> None:
    """The FHIR JSON Schema ships in the wheel (gateway/fhir/schema) and jsonschema-rs with it."""
    decoded = installed_wheel.run(
        "ble", "decode", "2A35", "06 8e00 5b00 6c00 ea07 0c 06 08 1e 05 4800", "--observations"
    )
    assert decoded.returncode == 0, decoded.stderr
    (installed_wheel.workdir / "obs.json").write_text(decoded.stdout)
    bundle = installed_wheel.run(
        "fhir",
        "observations",
        "--observations",
        "obs.json",
        "--patient-id",
        "01017012345",
        "--device-eui64",
        "AA:BB:CC:DD:EE:FF",
    )
    assert bundle.returncode == 0, bundle.stderr
    (installed_wheel.workdir / "bundle.json").write_text(bundle.stdout)
    valid = installed_wheel.run("fhir", "validate", "bundle.json")
    assert (valid.returncode, valid.stdout) == (0, ""), valid.stderr
    (installed_wheel.workdir / "bundle.json").write_text(bundle.stdout.replace('"/min"', '"bpm"'))
    invalid = installed_wheel.run("fhir", "validate", "bundle.json")
    assert invalid.returncode == 1
    assert "valueQuantity.code 'bpm' is not /min" in invalid.stdout


def test_hl7_listen_from_the_wheel_acks_an_adt(installed_wheel: InstalledWheel) -> None:
    port = find_free_port()
    listen = subprocess.Popen(
        [
            *(str(installed_wheel.bin / "tryggheim"), "hl7", "listen", "--port", str(port)),
            *("--database", "sqlite:///x.db"),
        ],
        cwd=installed_wheel.workdir,
        env=installed_wheel.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert listen.stdout is not None
        line = listen.stdout.readline()  # the endpoint prints its port once it listens
        assert line.strip().endswith(f":{port}"), line + (
            listen.stderr.read() if listen.stderr else ""
        )
        adt = installed_wheel.workdir / "adt.hl7"
        adt.write_text(ADT_A01, encoding="utf-8")
        sent = installed_wheel.run(
            "hl7", "send", "--host", "127.0.0.1", "--port", str(port), str(adt)
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert "MSA|AA|WHEEL-1" in sent.stdout
    finally:
        listen.terminate()
        listen.communicate(timeout=30)
    assert (installed_wheel.workdir / "x.db").is_file()


def test_the_demo_runs_from_the_wheel(installed_wheel: InstalledWheel) -> None:
    demo = installed_wheel.run(
        "demo", "--homes", "2", "--for", "20", "--port", str(find_free_port()), timeout=240
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    verdict = json.loads(demo.stdout.strip().splitlines()[-1])
    assert verdict["observations_lost"] == 0 and verdict["duplicates"] == 0, verdict
    assert verdict["hl7_acked"] == verdict["hl7_sent"] > 0, verdict


def _runtime_closure() -> set[str]:
    """Normalised names of the project's runtime dependencies and everything they pull in
    (with the extras they ask for), as installed here."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    todo = [Requirement(r) for r in declared["project"]["dependencies"]]
    seen: set[str] = set()
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        if name in seen:
            continue
        seen.add(name)
        extras = requirement.extras | {""}
        for text in metadata.requires(requirement.name) or []:
            pulled = Requirement(text)
            if pulled.marker is None or any(pulled.marker.evaluate({"extra": e}) for e in extras):
                todo.append(Requirement(str(pulled).split(";")[0]))
    return seen


def test_every_module_the_product_imports_is_a_runtime_dependency() -> None:
    """Statically, for every import in the product's packages, also those that no command
    of the wheel test reaches (e.g. the OIDC client)."""
    distributions = metadata.packages_distributions()
    closure = _runtime_closure()
    missing: dict[str, list[str]] = {}
    for package in PRODUCT_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in sys.stdlib_module_names or top in PRODUCT_PACKAGES:
                        continue
                    providers = {canonicalize_name(d) for d in distributions.get(top, [])}
                    if not providers & closure:
                        missing.setdefault(top, []).append(str(path.relative_to(ROOT)))
    assert missing == {}, "add these to [project] dependencies in pyproject.toml"
