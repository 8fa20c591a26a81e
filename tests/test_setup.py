"""A fresh machine gets everything the tests and the demo start: every external program comes
from a Debian package that scripts/setup.sh installs (or from the base system), and the list
of programs (tests/programs.py) is the one the sources actually use. A machine with leftovers
(mosquitto_sub installed by hand, say) would otherwise pass while a fresh one fails."""

from __future__ import annotations

import functools
import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

import yaml
from programs import OPTIONAL_PROGRAMS, PROGRAMS

ROOT = Path(__file__).parent.parent
SETUP = ROOT / "scripts" / "setup.sh"
SOURCE_DIRS = (
    "tryggheim",
    "edge",
    "gateway",
    "hl7",
    "dashboards",
    "firmware_sim",
    "tests",
    "bench",
)

# The ways our Python starts or looks up a program by a literal name.
_STARTED = re.compile(
    r"""(?:require_binary|_find_binary|shutil\.which)\(\s*"(?P<looked_up>[^"]+)"
      | (?:subprocess\.(?:run|Popen|check_output|check_call)|create_subprocess_exec)
        \(\s*\[?\s*"(?P<started>[^"]+)"
      | \[\s*"(?P<argv0>[a-z][\w.+-]*)",\s*"-     # a command line: ["runuser", "-u", ...]
      | \bbindir\s*/\s*"(?P<in_bindir>[\w-]+)"    # PostgreSQL's versioned bin directory
    """,
    re.VERBOSE,
)


def programs_in_sources() -> dict[str, set[str]]:
    """Program name → the files that start it or look it up."""
    found: dict[str, set[str]] = {}
    for directory in SOURCE_DIRS:
        for path in sorted((ROOT / directory).rglob("*.py")):
            for match in _STARTED.finditer(path.read_text(encoding="utf-8")):
                name = next(group for group in match.groups() if group)
                found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    # The compose health checks that tests run on this machine, not in a container.
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    for path in sorted((ROOT / "tests").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for service in re.findall(r'services\(\)\["([\w-]+)"\]\["healthcheck"\]', text):
            test = compose["services"][service]["healthcheck"]["test"]
            command = test[1].split()[0] if test[0] == "CMD-SHELL" else test[1]
            found.setdefault(command, set()).add(str(path.relative_to(ROOT)))
    return found


def setup_packages() -> set[str]:
    """The Debian packages that scripts/setup.sh installs (its PACKAGES=(…) and PACKAGES+=(…))."""
    text = SETUP.read_text(encoding="utf-8")
    return {
        name
        for listed in re.findall(r"^\s*PACKAGES\+?=\(([^)]*)\)", text, re.MULTILINE)
        for name in listed.split()
    }


@functools.cache
def installed_packages() -> dict[str, tuple[bool, list[list[str]]]]:
    """Installed package → (part of the base system, its Depends/Pre-Depends as alternatives)."""
    listing = subprocess.run(
        [
            "dpkg-query",
            "-W",
            "-f=${db:Status-Abbrev}\t${Package}\t${Essential}\t${Priority}\t${Provides}\t"
            "${Pre-Depends}, ${Depends}\n",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    packages: dict[str, tuple[bool, list[list[str]]]] = {}
    for line in listing.splitlines():
        status, name, essential, priority, provides, depends = line.split("\t")
        if not status.startswith("ii"):
            continue
        alternatives = [
            [_name_of(choice) for choice in clause.split("|")]
            for clause in depends.split(",")
            if clause.strip()
        ]
        entry = (essential == "yes" or priority == "required", alternatives)
        packages[name] = entry
        for virtual in provides.split(","):
            if virtual.strip():
                packages.setdefault(_name_of(virtual), (False, [[name]]))
    return packages


def _name_of(relation: str) -> str:
    # "libc6:any (>= 2.34)" → "libc6"
    return relation.strip().split()[0].split(":")[0]


def closure(roots: set[str]) -> set[str]:
    """``roots`` and every installed package they depend on."""
    packages = installed_packages()
    seen: set[str] = set()
    todo = [root for root in roots if root in packages]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for choices in packages[name][1]:
            todo.extend(c for c in choices if c in packages and c not in seen)
    return seen


def locate(program: str) -> str | None:
    postgres = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{program}"))
    if postgres:
        return postgres[-1]
    return shutil.which(program) or shutil.which(program, path="/usr/sbin:/usr/bin:/sbin:/bin")


def package_of(path: str) -> str | None:
    """The package that installed ``path`` (Debian's merged /usr: dpkg may know it as /bin/…)."""
    real = os.path.realpath(path)
    candidates = [path, real, *(p.removeprefix("/usr") for p in (path, real))]
    for candidate in dict.fromkeys(candidates):
        result = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
        owners = [
            line.split(":", 1)[0].split(",")[0].strip()
            for line in result.stdout.splitlines()
            if not line.startswith("diversion by ")  # dash diverts /bin/sh
        ]
        if result.returncode == 0 and owners:
            return owners[0]
    return None


def test_every_program_the_sources_start_is_listed() -> None:
    unlisted = {
        name: sorted(files)
        for name, files in programs_in_sources().items()
        if name not in PROGRAMS and name not in OPTIONAL_PROGRAMS
    }
    assert unlisted == {}, "add these to tests/programs.py (and their package to setup.sh)"


def test_every_listed_program_comes_from_a_package_setup_installs() -> None:
    packages = installed_packages()
    provided = closure(setup_packages()) | {name for name, (base, _) in packages.items() if base}
    problems = {}
    for program in PROGRAMS:
        path = locate(program)
        if path is None:
            problems[program] = "not installed"
            continue
        package = package_of(path)
        if package is None:
            problems[program] = f"{path} belongs to no Debian package"
        elif package not in provided:
            problems[program] = f"{path} is in package {package}, which setup.sh does not install"
    assert problems == {}, f"setup.sh installs {sorted(setup_packages())}"
