"""Browser helpers shared by the tests of the session, coordinator and admin screens: a page at
tablet (1024×768) or phone (390×844) size in Oslo time, signing in, and axe-core."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from axe_core import report, violations
from nurse_world import PASSWORD
from playwright.async_api import Browser, Page, expect

TABLET = {"width": 1024, "height": 768}
PHONE = {"width": 390, "height": 844}
SIZES = {"tablet": TABLET, "phone": PHONE}


@contextlib.asynccontextmanager
async def sized_page(
    browser: Browser, viewport: dict[str, int], **options: Any
) -> AsyncIterator[Page]:
    """A page of this size in Oslo time; uncaught script errors fail the test."""
    context = await browser.new_context(
        viewport=viewport, timezone_id="Europe/Oslo", locale="nb-NO", **options
    )
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        await context.close()
    assert errors == [], f"script errors in the page: {errors}"


async def sign_in(page: Page, username: str) -> None:
    await page.get_by_label("Brukernavn").fill(username)
    await page.get_by_label("Passord").fill(PASSWORD)
    await page.get_by_role("button", name="Logg inn").click()


async def accessible(page: Page, script: str, what: str) -> None:
    found = await violations(page, script)
    assert found == [], f"axe-core, {what}:\n{report(found)}"


async def no_sideways_scrolling(page: Page) -> None:
    wide = await page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert wide <= 0, f"the page is {wide} px wider than the screen"


async def at_top_of_viewport(page: Page, selector: str) -> None:
    """The element is in view at the top even when the page is scrolled to its end."""
    await page.evaluate("() => window.scrollTo(0, document.documentElement.scrollHeight)")
    await expect(page.locator(selector)).to_be_in_viewport()
    box = await page.locator(selector).bounding_box()
    assert box is not None and box["y"] == 0, f"{selector} is at {box}"
