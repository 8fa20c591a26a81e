"""axe-core, the accessibility engine, for the browser tests of the nurse app.

The npm package ``axe-core`` (MPL-2.0), pinned in tests/axe/package.json and package-lock.json,
is installed on first use into ``~/.cache/tryggheim-tests/axe-core`` (``$XDG_CACHE_HOME`` is
honoured) with ``npm ci``; once it is there no network is needed. :func:`violations` injects
``axe.min.js`` into the page and runs every rule tagged WCAG 2.0/2.1 level A and AA."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from npm_cache import cache_dir, npm_installed
from playwright.async_api import Page

SOURCE = Path(__file__).parent / "axe"
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def install(directory: Path | None = None) -> Path:
    """The path of ``axe.min.js``, installed first if needed (see tests/npm_cache.py)."""
    modules = npm_installed(SOURCE, directory or cache_dir("axe-core"))
    return modules / "axe-core" / "axe.min.js"


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
