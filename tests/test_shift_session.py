"""A shift-long session in the care team's app (issue 16 #1), in headless Chromium at tablet
and phone size, with Playwright's clock for the passing time:

- the access token lives 10 minutes, and the app renews it before it expires, again and again:
  after 40 minutes she is still signed in and live, and a reload keeps her signed in (the
  httpOnly refresh cookie);
- a resolution note she is writing survives the reload and a new sign-in;
- when the session is ended (revoked at the platform), the app says so in a fixed notice at
  every scroll position, keeps the last screen marked as not up to date, and lets her sign in
  again; axe-core finds nothing in each state;
- an alarm raised while the live stream reconnects with a renewed token is shown and announced."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from axe_core import install
from care_screens import SIZES, accessible, at_top_of_viewport, sign_in, sized_page
from nurse_world import NURSE, NurseWorld, running_world
from playwright.async_api import Browser, Request, Route, expect
from sqlalchemy import update
from test_nurse_app import screenshot

from gateway.records.models import RefreshTokenRow

pytestmark = pytest.mark.asyncio(loop_scope="session")

MINUTE_MS = 60_000


@pytest.fixture(scope="module")
def axe_script() -> str:
    return install().read_text(encoding="utf-8")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[NurseWorld]:
    async with running_world(tmp_path_factory.mktemp("shift-session")) as running:
        yield running


async def taken_by_the_nurse(world: NurseWorld, family: str) -> int:
    """A fall at her patient's home, acknowledged and taken by her (the resolve form is hers)."""
    fall = await world.fall(family)
    for step in ("acknowledge", "start"):
        await world.act(fall.id, step, world.nurse_subject)
    return fall.id


@pytest.mark.parametrize("size", ["tablet", "phone"])
async def test_a_shift_long_session_and_its_end(
    world: NurseWorld, browser: Browser, axe_script: str, size: str
) -> None:
    async with sized_page(browser, SIZES[size]) as page:
        refreshes: list[Request] = []
        page.on(
            "request",
            lambda r: refreshes.append(r) if r.url.endswith("/api/v1/auth/refresh") else None,
        )
        await page.clock.install()
        await page.goto(f"{world.url}/#/alarms")
        await sign_in(page, NURSE)
        await expect(page.locator("#connection")).to_contain_text("Direkte")
        alarm_id = await taken_by_the_nurse(world, "Ødegård")
        try:
            item = page.locator(f'.alarm-list > li[data-alarm-id="{alarm_id}"]')
            note = item.get_by_label(re.compile("Hva ble funnet og gjort"))
            await note.fill("Fant henne på badet, ")
            # Kept in the tab's sessionStorage as she types; a person does not reload within the
            # same millisecond (a reload at once lost it in one full run at phone size).
            await page.wait_for_function(
                "text => Object.values(sessionStorage).includes(text)", arg="Fant henne på badet, "
            )
            await page.wait_for_timeout(500)

            # A reload: still signed in (the refresh cookie), and the note is still there.
            await page.reload()
            await expect(page.locator("#connection")).to_contain_text("Direkte")
            await expect(note).to_have_value("Fant henne på badet, ")
            await note.press("End")
            await note.type("ringte legevakten")
            renewed = len(refreshes)

            # 40 minutes of a shift with a 10-minute access token: renewed before each expiry.
            for _ in range(5):
                await page.clock.fast_forward(9 * MINUTE_MS)
                await expect(page.locator("#connection")).to_contain_text("Direkte")
            assert len(refreshes) - renewed >= 4, f"{len(refreshes) - renewed} refreshes in 45 min"
            await expect(page.locator("#session-ended")).to_be_hidden()
            await expect(page.get_by_role("heading", level=1)).to_have_text("Alarmer")
            await expect(note).to_have_value("Fant henne på badet, ringte legevakten")

            # The session is revoked at the platform ("sign out everywhere"): at the next renewal
            # the app says so, whatever she was doing, and keeps the last screen as it was.
            async with world.store.session() as s:
                await s.execute(update(RefreshTokenRow).values(revoked_at=datetime.now(UTC)))
            await page.clock.fast_forward(9 * MINUTE_MS)
            ended = page.locator("#session-ended")
            await expect(ended.get_by_role("alert")).to_contain_text("Du er logget ut")
            await expect(ended.get_by_role("alert")).to_contain_text("oppdateres ikke")
            await expect(page).to_have_title("Logget ut – Tryggheim")
            await expect(page.locator("#connection")).to_contain_text("Logget ut")
            await expect(page.locator("main")).to_have_class(re.compile(r"\bnot-live\b"))
            await expect(item).to_be_visible()
            await expect(note).to_have_value("Fant henne på badet, ringte legevakten")
            await expect(page.locator(".stale-marker").first).to_be_visible()
            await at_top_of_viewport(page, "#session-ended")
            await accessible(page, axe_script, f"session ended ({size})")
            await screenshot(page, f"session-ended-{size}.png")

            # She signs in again: the note she was writing is there.
            await ended.get_by_role("button", name="Logg inn igjen").click()
            await expect(page.get_by_role("heading", level=1)).to_have_text("Logg inn")
            await accessible(page, axe_script, f"sign in again ({size})")
            await sign_in(page, NURSE)
            await expect(page.locator("#connection")).to_contain_text("Direkte")
            await expect(ended).to_be_hidden()
            await expect(note).to_have_value("Fant henne på badet, ringte legevakten")
            await accessible(page, axe_script, f"signed in again ({size})")

            # Signing out on purpose ends the session and forgets the note (a shared tablet).
            await page.locator("#sign-out").click()
            await page.reload()
            await expect(page.get_by_role("heading", level=1)).to_have_text("Logg inn")
            assert await page.evaluate("() => Object.keys(sessionStorage).length") == 0
        finally:
            await world.settle(alarm_id)


@pytest.mark.parametrize("size", ["tablet", "phone"])
async def test_she_is_warned_before_the_session_maximum(
    world: NurseWorld, browser: Browser, axe_script: str, size: str
) -> None:
    """Ten minutes before the shift's maximum (12 h after signing in) a banner among the alerts
    fixed at the top says when she will be signed out; she signs in again at once, and the note
    she was writing is still there."""
    async with sized_page(browser, SIZES[size]) as page:
        await page.clock.install()
        await page.goto(f"{world.url}/#/alarms")
        await sign_in(page, NURSE)
        await expect(page.locator("#connection")).to_contain_text("Direkte")
        alarm_id = await taken_by_the_nurse(world, "Ødegård")
        try:
            note = page.locator(f'.alarm-list > li[data-alarm-id="{alarm_id}"]').get_by_label(
                re.compile("Hva ble funnet og gjort")
            )
            await note.fill("Ringte pårørende")
            ending = page.locator("#session-ending")

            await page.clock.fast_forward(11 * 60 * MINUTE_MS + 45 * MINUTE_MS)
            await expect(page.locator("#connection")).to_contain_text("Direkte")
            await expect(ending).to_be_hidden()
            await page.clock.fast_forward(6 * MINUTE_MS)
            await expect(ending.get_by_role("heading")).to_have_text(
                re.compile(r"Økten avsluttes kl\. \d\d[:.]\d\d$")
            )
            await expect(ending).to_contain_text(re.compile(r"om (9|10) min"))
            await expect(page.locator("#connection")).to_contain_text("Direkte")
            await at_top_of_viewport(page, "#session-ending")
            await expect(page).to_have_title(re.compile("Alarmer"))
            await accessible(page, axe_script, f"the session's end is near ({size})")
            await screenshot(page, f"session-ending-{size}.png")

            await ending.get_by_role("button", name="Logg inn på nytt nå").click()
            await expect(page.get_by_role("heading", level=1)).to_have_text("Logg inn")
            await sign_in(page, NURSE)
            await expect(page.locator("#connection")).to_contain_text("Direkte")
            await expect(ending).to_be_hidden()
            await expect(note).to_have_value("Ringte pårørende")
        finally:
            await world.settle(alarm_id)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def brief_tokens(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[NurseWorld]:
    """Access tokens of the shortest life the platform allows (60 s): the app renews hers 30 s
    after signing in, well before its live stream would be taken for silent (40 s)."""
    async with running_world(
        tmp_path_factory.mktemp("brief-tokens"), access_token_lifetime_s=60
    ) as running:
        yield running


async def test_an_alarm_raised_while_the_stream_reconnects_after_a_renewal_is_shown(
    brief_tokens: NurseWorld, browser: Browser
) -> None:
    """At a token renewal the live stream reconnects with the new token (a slow network: it
    takes a while). A fall raised before the new stream listens reaches her all the same."""
    world = brief_tokens
    async with sized_page(browser, SIZES["tablet"]) as page:
        opened = 0
        reconnecting = asyncio.Event()
        network_answers = asyncio.Event()

        async def slow_reconnection(route: Route) -> None:
            nonlocal opened
            opened += 1
            if opened == 2:
                reconnecting.set()
                await network_answers.wait()
            await route.continue_()

        await page.route("**/api/v1/stream", slow_reconnection)
        await page.clock.install()
        await page.goto(f"{world.url}/#/alarms")
        await sign_in(page, NURSE)
        await expect(page.locator("#connection")).to_contain_text("Direkte")
        try:
            await page.clock.fast_forward(31_000)  # the renewal, 30 s before the token's end
            await asyncio.wait_for(reconnecting.wait(), 10)
            # Long enough for anything the app asks at the renewal itself to be answered.
            await asyncio.sleep(1.5)
            fall = await world.fall("Ødegård")
        finally:
            network_answers.set()
        try:
            shown = page.locator(f'.alarm-list > li[data-alarm-id="{fall.id}"]')
            await expect(shown).to_be_visible()
            await expect(page.locator("#announce-alert")).to_have_text(
                "Ny alarm – kritisk: Fall hos Ødegård, Kari."
            )
            await expect(page.locator("#connection")).to_contain_text("Direkte")
        finally:
            await world.settle(fall.id)
