"""axe-core, the accessibility engine, for the browser tests of the nurse app.

The npm package ``axe-core`` (MPL-2.0), pinned in tests/axe/package.json and package-lock.json,
is installed on first use into ``~/.cache/tryggheim-tests/axe-core`` (``$XDG_CACHE_HOME`` is
honoured) with ``npm ci``; once it is there no network is needed. :func:`violations` injects
``axe.min.js`` into the page and runs every rule tagged WCAG 2.0/2.1 level A and AA."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page
from servers import require_binary

SOURCE = Path(__file__).parent / "axe"
NPM_TIMEOUT_S = 300
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def cache_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "tryggheim-tests" / "axe-core"


def install(directory: Path | None = None) -> Path:
    """``npm ci`` of the pinned lock file into ``directory`` unless that lock file is installed
    there already (a stamp holds its hash); the path of ``axe.min.js``."""
    directory = directory or cache_dir()
    lock = (SOURCE / "package-lock.json").read_bytes()
    digest = hashlib.sha256((SOURCE / "package.json").read_bytes() + lock).hexdigest()
    directory.mkdir(parents=True, exist_ok=True)
    stamp = directory / ".installed"
    script = directory / "node_modules" / "axe-core" / "axe.min.js"
    # Two test runs on one machine must not install into the same directory at once.
    with (directory / ".lock").open("w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text() == digest and script.exists():
            return script
        stamp.unlink(missing_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(SOURCE / name, directory / name)
        done = subprocess.run(
            [require_binary("npm"), "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci of axe-core failed:\n{done.stderr[-3000:]}")
        stamp.write_text(digest)
    return script


async def violations(page: Page, source: str) -> list[dict[str, Any]]:
    """Every WCAG 2.1 A/AA violation axe finds in the page as it is now; ``source`` is the
    text of ``axe.min.js``."""
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        await page.add_script_tag(content=source)
    result: dict[str, Any] = await page.evaluate(
        """async (tags) => {
            const results = await axe.run(document, {
                runOnly: { type: "tag", values: tags },
                resultTypes: ["violations"],
            });
            return { violations: results.violations.map((v) => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map((n) => ({ target: n.target, summary: n.failureSummary })),
            })) };
        }""",
        WCAG_21_AA,
    )
    found: list[dict[str, Any]] = result["violations"]
    return found


def report(found: list[dict[str, Any]]) -> str:
    lines = []
    for v in found:
        lines.append(f"{v['id']} ({v['impact']}): {v['help']}")
        for node in v["nodes"][:5]:
            lines.append(f"    {node['target']}: {(node['summary'] or '').splitlines()[-1:]}")
    return "\n".join(lines)
