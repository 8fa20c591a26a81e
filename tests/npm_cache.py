"""npm packages the tests run (an independent HL7 peer, axe-core), installed once per machine.

Each is pinned by a package.json and package-lock.json in the repository and installed with
``npm ci`` into ``~/.cache/tryggheim-tests/<name>`` (``$XDG_CACHE_HOME`` honoured); a stamp
holds the lock file's hash, so once it is installed no network, nor npm, is needed."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from servers import require_binary

NPM_TIMEOUT_S = 300


def cache_dir(name: str) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "tryggheim-tests" / name


def npm_installed(source: Path, directory: Path) -> Path:
    """``npm ci`` of ``source``'s pinned lock file into ``directory`` unless it is installed
    there already; the ``node_modules`` directory."""
    lock = (source / "package-lock.json").read_bytes()
    digest = hashlib.sha256((source / "package.json").read_bytes() + lock).hexdigest()
    directory.mkdir(parents=True, exist_ok=True)
    stamp = directory / ".installed"
    modules = directory / "node_modules"
    # Two test runs on one machine must not install into the same directory at once.
    with (directory / ".lock").open("w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text() == digest and modules.is_dir():
            return modules
        stamp.unlink(missing_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(source / name, directory / name)
        done = subprocess.run(
            [require_binary("npm"), "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci in {directory} failed:\n{done.stderr[-3000:]}")
        stamp.write_text(digest)
    return modules
