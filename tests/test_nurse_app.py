"""The nurse app (dashboards/static) in headless Chromium against a real platform with a week of
data (tests/nurse_world.py): the main workflows, keyboard included, and axe-core's WCAG 2.1 A/AA
rules on every page state, with zero violations. The screenshots in docs/screenshots/ (tablet,
1024×768) are made here: they are written there when TRYGGHEIM_UPDATE_SCREENSHOTS=1, and to a
temporary directory otherwise, so that a test run leaves the checkout as it was.

- sign in (bokmål by default), my team's patients sorted by urgency, values coloured against
  each patient's own limits, and no other team's patient;
- one patient: trend charts with her limits drawn and a table alternative, the time range,
  the events in her home, her devices with battery and last seen;
- a new alarm appears live without a reload and is announced (visual, screen reader, sound),
  is acknowledged, taken and resolved with a note from the inbox, and the list re-sorts;
- settings: language (English), the alarm sound and which alarms give notice;
- the live connection: a silent stream is called stale, a stopped platform lost, the app says
  so plainly, reconnects, and shows what it missed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import uvicorn
from axe_core import install, report, violations
from chain import until
from nurse_world import (
    ADMIN,
    COORDINATOR,
    NURSE,
    PASSWORD,
    NurseWorld,
    gateway_of,
    now_here,
    running_world,
)
from playwright.async_api import Browser, Locator, Page, expect
from proxy import PartitionProxy

from tryggheim import codes
from tryggheim.broker import find_free_port

pytestmark = pytest.mark.asyncio(loop_scope="session")

DOCS_SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
TABLET = {"width": 1024, "height": 768}


@pytest.fixture(scope="session")
def axe_script() -> str:
    """The text of axe.min.js (installed with npm on first use)."""
    return install().read_text(encoding="utf-8")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[NurseWorld]:
    async with running_world(tmp_path_factory.mktemp("nurse-app")) as running:
        yield running


@contextlib.asynccontextmanager
async def tablet_page(browser: Browser, **options: Any) -> AsyncIterator[Page]:
    """A tablet-sized page in Oslo time; uncaught script errors fail the test."""
    context = await browser.new_context(
        viewport=TABLET, timezone_id="Europe/Oslo", locale="nb-NO", **options
    )
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        await context.close()
    assert errors == [], f"script errors in the page: {errors}"


@pytest_asyncio.fixture(loop_scope="session")
async def tablet(browser: Browser) -> AsyncIterator[Page]:
    async with tablet_page(browser) as page:
        yield page


async def accessible(page: Page, script: str, what: str) -> None:
    found = await violations(page, script)
    assert found == [], f"axe-core, {what}:\n{report(found)}"


def screenshot_dir() -> Path:
    if os.environ.get("TRYGGHEIM_UPDATE_SCREENSHOTS") == "1":
        return DOCS_SCREENSHOTS
    return Path(tempfile.gettempdir()) / "tryggheim-screenshots"


async def screenshot(page: Page, name: str, **options: Any) -> None:
    directory = screenshot_dir()
    directory.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(directory / name), **options)


async def sign_in(page: Page, url: str, hash_: str = "", username: str = NURSE) -> None:
    await page.goto(f"{url}/{hash_}")
    await page.get_by_label("Brukernavn").fill(username)
    await page.get_by_label("Passord").fill(PASSWORD)
    await page.get_by_role("button", name="Logg inn").click()
    await expect(page.locator("#connection")).to_contain_text("Direkte")


def cards(page: Page) -> Locator:
    return page.locator(".patient-list > li h2")


def card(page: Page, name: str) -> Locator:
    return page.locator(".patient-card", has=page.get_by_role("heading", name=name))


async def no_sideways_scrolling(page: Page) -> None:
    wide = await page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert wide <= 0, f"the page is {wide} px wider than the screen"


# --- sign in, my patients -----------------------------------------------------------------------


async def test_sign_in_and_my_patients_by_urgency(
    world: NurseWorld, tablet: Page, axe_script: str
) -> None:
    page = tablet
    await page.goto(world.url + "/")
    await expect(page).to_have_title("Logg inn – Tryggheim")
    assert await page.evaluate("document.documentElement.lang") == "nb"
    await accessible(page, axe_script, "sign-in page")
    await screenshot(page, "login.png")

    # An admin has no care role: she gets her own home screen, never the patients
    # (tests/test_admin_screens.py), and signs out again.
    await page.get_by_label("Brukernavn").fill(ADMIN)
    await page.get_by_label("Passord").fill(PASSWORD)
    await page.get_by_role("button", name="Logg inn").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Administrasjon")
    await expect(page.get_by_role("link", name="Pasienter")).to_be_hidden()
    await page.get_by_role("button", name="Logg ut").click()
    await expect(page.get_by_role("navigation", name="Hovedmeny")).to_be_hidden()

    await page.get_by_label("Brukernavn").fill(NURSE)
    await page.get_by_label("Passord").fill("wrong password!")
    await page.get_by_role("button", name="Logg inn").click()
    await expect(page.get_by_role("alert").filter(has_text="Feil")).to_have_text(
        "Feil brukernavn eller passord."
    )
    await accessible(page, axe_script, "sign-in page with a problem")
    # Keyboard only: the password field has focus again; type and press Enter.
    await expect(page.get_by_label("Passord")).to_be_focused()
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")

    await expect(page.get_by_role("heading", level=1)).to_have_text("Mine pasienter")
    await expect(page.get_by_role("heading", level=1)).to_be_focused()
    await expect(page).to_have_title(re.compile(r"^\(2\) Mine pasienter – Tryggheim$"))
    await expect(page.locator("#connection")).to_contain_text("Direkte")
    await expect(page.locator("#user")).to_have_text("Innlogget som Siri Sykepleier")
    # The most urgent first: unacknowledged high alarm, acknowledged high, low, nothing.
    await expect(cards(page)).to_have_text(
        ["Nilsen, Per", "Haugen, Ingrid", "Ødegård, Kari", "Berg, Ola"]
    )
    # Coloured against her own limit (88 %, not the default 92 %), and said in words.
    spo2 = card(page, "Nilsen, Per").locator("[data-vital=spo2]")
    await expect(spo2).to_have_class(re.compile(r"\bout\b"))
    await expect(spo2.locator(".value")).to_have_text("86")
    await expect(spo2.locator(".assessment")).to_have_text("▼ Under grensen 88 %")
    bp = card(page, "Haugen, Ingrid").locator("[data-vital=bp]")
    await expect(bp.locator(".value")).to_have_text("186/101")
    await expect(bp.locator(".assessment")).to_have_text("▲ Over grensen 180 mmHg")
    await expect(card(page, "Haugen, Ingrid").locator(".alarm-badges")).to_contain_text(
        "Høy: Høyt blodtrykk Kvittert"
    )
    await expect(card(page, "Berg, Ola").locator(".vital.out")).to_have_count(0)
    await expect(card(page, "Berg, Ola").locator("[data-vital=glucose] .unit")).to_have_text(
        "mmol/L"
    )
    await expect(page.get_by_text("Andersen, Lise")).to_have_count(0)
    await accessible(page, axe_script, "my patients")
    await no_sideways_scrolling(page)
    await screenshot(page, "patients.png")

    # A tablet held upright: one column, nothing cut off.
    await page.set_viewport_size({"width": 768, "height": 1024})
    await no_sideways_scrolling(page)
    await page.set_viewport_size(TABLET)


# --- one patient --------------------------------------------------------------------------------


async def test_patient_page_trends_events_and_devices(
    world: NurseWorld, tablet: Page, axe_script: str
) -> None:
    page = tablet
    await sign_in(page, world.url)
    # Keyboard: to the patient's link and Enter.
    await card(page, "Ødegård, Kari").get_by_role("link").focus()
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(rf"#/patients/{world.patients['Ødegård']}$"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Ødegård, Kari")
    await expect(page.get_by_role("heading", level=1)).to_be_focused()

    bp = page.locator("figure[data-group=bp]")
    await expect(bp.get_by_role("heading")).to_have_text("Blodtrykk (mmHg)")
    chart = bp.get_by_role("img")
    await expect(chart).to_have_accessible_name(re.compile(r"^Blodtrykk \(mmHg\) \d+ målinger"))
    await expect(chart).to_have_accessible_name(
        re.compile(r"Grenser: alarm over 180 \(systolisk\), alarm under 90 \(systolisk\)\.$")
    )
    await expect(bp.locator(".chart-svg .limit line")).to_have_count(2)
    week = await bp.locator(".chart-svg .series-solid .point").count()
    assert week >= 12
    # The values as a table: the alternative to the picture.
    await bp.get_by_text("Vis verdiene som tabell").click()
    rows = bp.locator("tbody tr")
    await expect(rows).to_have_count(week)
    await expect(rows.first.locator("td").first).to_have_text(re.compile(r"^\d+/\d+ mmHg$"))
    await expect(rows.first.locator("td").nth(1)).to_have_text("Innenfor grensene")
    for group in ("pulse", "spo2", "weight"):
        await expect(page.locator(f"figure[data-group={group}]")).to_be_visible()
    await page.evaluate("window.scrollTo(0, 0)")
    await screenshot(page, "patient.png")

    # Events in her home, newest first, and the lanes overview.
    events = page.get_by_role("region", name="Hendelser i hjemmet")
    await expect(events.get_by_role("img")).to_have_accessible_name(
        re.compile(r"^Oversikt: Dør: \d+, Seng: \d+, Bevegelse: \d+, Fall og alarm: 0\.$")
    )
    today = events.locator(".timeline details").first
    await expect(today).to_have_attribute("open", "")
    await expect(today.locator(".event-door").first).to_contain_text(
        re.compile("Dør (åpnet|lukket)")
    )
    await expect(events.get_by_text("Sto opp av sengen").first).to_be_visible()

    # Devices: battery and last seen, the low one said in words.
    devices = page.get_by_role("region", name="Enheter")
    motion = devices.locator("tr", has_text="motion-odegard")
    await expect(motion.locator("th")).to_contain_text("Bevegelsessensor")
    await expect(motion.locator("td").nth(0)).to_have_text("12 % ▼ lavt")
    await expect(motion.locator("td").nth(2)).to_have_text("gw-odegard: tilkoblet")
    cuff = devices.locator("tr", has_text="C0:10:00:00:00:01")
    await expect(cuff.locator("th")).to_contain_text("Blodtrykksmåler")
    await expect(cuff.locator("td").nth(0)).to_have_text("70 %")
    await accessible(page, axe_script, "patient page")
    await no_sideways_scrolling(page)
    await page.evaluate("document.getElementById('events-title').scrollIntoView()")
    await screenshot(page, "patient-events.png")

    # The time range: the last day has fewer points than the week; the choice is in the URL.
    await page.get_by_label("Siste døgn").check()
    await expect(page).to_have_url(re.compile(r"\?range=1d$"))
    await expect(page.get_by_label("Siste døgn")).to_be_focused()
    await expect(bp.locator(".chart-svg .series-solid .point")).not_to_have_count(week)
    assert await bp.locator(".chart-svg .series-solid .point").count() < week
    await page.get_by_label("30 dager").check()
    await expect(bp.locator(".chart-svg .series-solid .point")).to_have_count(week)

    # A new value shows up live on her page too.
    spo2_points = page.locator("figure[data-group=spo2] .chart-svg .point")
    before = await spo2_points.count()
    oximeter = "C0:10:00:00:00:02"
    await world.commit(gateway_of("Ødegård"), [(oximeter, codes.SPO2.ref, "94", "%", now_here())])
    await expect(spo2_points).to_have_count(before + 1)

    # Another patient: her personal limit is drawn and named as such.
    await page.goto(f"{world.url}/#/patients/{world.patients['Nilsen']}")
    spo2 = page.locator("figure[data-group=spo2]")
    await expect(spo2.locator(".limit-label")).to_have_text("alarm under 88")
    await expect(spo2.locator(".limit-note")).to_have_text("(personlig)")
    await expect(spo2.locator(".chart-svg .point.out")).to_have_count(1)
    await accessible(page, axe_script, "patient page with a personal limit")


# --- a new alarm, live --------------------------------------------------------------------------


async def test_a_new_alarm_appears_live_and_is_handled_to_the_end(
    world: NurseWorld, tablet: Page, axe_script: str
) -> None:
    page = tablet
    await sign_in(page, world.url)
    await expect(cards(page).first).to_have_text("Nilsen, Per")
    await page.evaluate("window.sameDocument = true")

    fall = await world.fall("Ødegård")

    banner = page.get_by_role("region", name="Ny alarm")
    await expect(banner).to_contain_text("Kritisk alarm: Fall hos Ødegård, Kari")
    await expect(page.locator("#announce-alert")).to_have_text(
        "Ny kritisk alarm: Fall hos Ødegård, Kari."
    )
    await expect(page.locator("html")).to_have_attribute("data-alarm-sounds", "1")
    await expect(cards(page)).to_have_text(
        ["Ødegård, Kari", "Nilsen, Per", "Haugen, Ingrid", "Berg, Ola"]
    )
    await expect(page.locator("#announce-polite")).to_have_text(
        "Rekkefølgen er endret: Ødegård, Kari står nå øverst."
    )
    await expect(page).to_have_title(re.compile(r"^\(3\) "))
    assert await page.evaluate("window.sameDocument") is True, "the page was reloaded"
    await accessible(page, axe_script, "my patients with a new alarm")
    await screenshot(page, "new-alarm.png")

    # The inbox: the fall first; acknowledge, take it, resolve it with a note.
    await page.get_by_role("navigation").get_by_role("link", name=re.compile("^Alarmer")).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Alarmer")
    await expect(page.locator(".alarm-list > li").first.get_by_role("heading")).to_have_text(
        "⚠ Fall – Ødegård, Kari"
    )
    # Unacknowledged alarms go first: once acknowledged the card moves, and focus with it.
    first = page.locator(f'.alarm-list > li[data-alarm-id="{fall.id}"]')
    await expect(first.locator(".state")).to_have_text("Ny")
    # Which sensor it came from; an event has no measured value to show.
    await expect(first.locator(".alarm-meta")).to_contain_text("Enhet fall-ødegård")
    await expect(first.locator(".alarm-meta")).not_to_contain_text("Målt")
    # Nilsen's SpO2 alarm says what was measured, and on which oximeter.
    nilsen = page.locator(".alarm-list > li").filter(has_text="Nilsen, Per")
    await expect(nilsen.locator(".alarm-meta")).to_contain_text("Målt 86 %")
    await first.get_by_role("button", name="Kvitter").click()
    await expect(first.locator(".state")).to_have_text("Kvittert")
    await expect(banner).to_be_hidden()
    await expect(page.locator("#announce-polite")).to_have_text(
        "Alarmen Fall for Ødegård, Kari er kvittert."
    )
    assert await world.alarm_state(fall.id) == "acknowledged"
    # The next step has focus: a keyboard user just presses Enter.
    take = first.get_by_role("button", name="Ta oppdraget")
    await expect(take).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(first.locator(".state")).to_have_text("Under arbeid")
    note = first.get_by_label("Hva ble funnet og gjort? (påkrevd)")
    await expect(note).to_be_focused()
    await first.get_by_role("button", name="Marker som løst").click()
    await expect(first.locator(".problem")).to_have_text(
        "Skriv hva som ble funnet og gjort før alarmen markeres som løst."
    )
    await expect(note).to_have_attribute("aria-invalid", "true")
    assert await world.alarm_state(fall.id) == "in_progress"
    await note.fill("Hjulpet opp fra gulvet, ingen skader. Nytt tilsyn i kveld.")
    await accessible(page, axe_script, "alarm inbox")
    await screenshot(page, "alarms.png")
    await first.get_by_role("button", name="Marker som løst").click()
    await expect(first.locator(".state")).to_have_text("Løst")
    await expect(first.locator(".note")).to_have_text(
        "Notat: Hjulpet opp fra gulvet, ingen skader. Nytt tilsyn i kveld."
    )
    resolved = await world.store.alarm(fall.id)
    assert resolved.state == "resolved"
    assert resolved.resolution_note == "Hjulpet opp fra gulvet, ingen skader. Nytt tilsyn i kveld."

    # Back on the list: the fall is dealt with, and the list has sorted itself again.
    await page.get_by_role("navigation").get_by_role("link", name="Pasienter").click()
    await expect(cards(page)).to_have_text(
        ["Nilsen, Per", "Haugen, Ingrid", "Ødegård, Kari", "Berg, Ola"]
    )
    await expect(page).to_have_title(re.compile(r"^\(2\) "))

    # Closing it takes it out of the open alarms.
    await page.get_by_role("navigation").get_by_role("link", name=re.compile("^Alarmer")).click()
    await (
        page.locator(".alarm-list > li", has_text="Fall")
        .get_by_role("button", name="Lukk alarmen")
        .click()
    )
    await expect(page.locator(".alarm-list > li", has_text="Fall")).to_have_count(0)
    assert await world.alarm_state(fall.id) == "closed"


# --- settings and English -----------------------------------------------------------------------


async def test_settings_english_and_which_alarms_give_notice(
    world: NurseWorld, tablet: Page, axe_script: str
) -> None:
    page = tablet
    await sign_in(page, world.url)
    await page.get_by_role("link", name="Innstillinger").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Innstillinger")
    await accessible(page, axe_script, "settings")
    await screenshot(page, "settings.png")

    await page.get_by_label("Spill av lyd ved nye alarmer").uncheck()
    await page.get_by_label("Varsle om").select_option("critical")
    await page.get_by_label("English").check()
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Settings")
    await expect(page.get_by_label("Play a sound for new alarms")).not_to_be_checked()
    await expect(page.get_by_role("navigation", name="Main menu")).to_contain_text("Patients")
    await accessible(page, axe_script, "settings in English")

    # A high alarm gives no notice now (critical only) but is in the list and the inbox.
    await page.get_by_role("link", name="Patients").click()
    berg = gateway_of("Berg")
    # a plasma-calibrated meter (issue 14): alarmed like any glucose, its sample type shown
    low_glucose = [
        ("C0:40:00:00:00:03", codes.GLUCOSE_CAPILLARY_PLASMA.ref, "2.9", "mmol/L", now_here())
    ]
    glucose = await world.commit(berg, low_glucose)
    berg_card = card(page, "Berg, Ola")
    await expect(berg_card.locator(".alarm-badges")).to_contain_text("High: Low blood glucose New")
    await expect(berg_card.locator("[data-vital=glucose] .assessment")).to_have_text(
        "▼ Below the limit 4 mmol/L"
    )
    await expect(berg_card.locator("[data-vital=glucose] .sample")).to_have_text(
        " (capillary plasma)"
    )
    await expect(page.get_by_role("region", name="New alarm")).to_have_count(0)

    # A critical one does: shown and read out, but without sound (switched off).
    panic = await world.commit(berg, [("panic-berg", codes.EVENT_PANIC.ref, "1", "1", now_here())])
    banner = page.get_by_role("region", name="New alarm")
    await expect(banner).to_contain_text("Critical alarm: Panic button for Berg, Ola")
    await expect(page.locator("#announce-alert")).to_have_text(
        "New critical alarm: Panic button for Berg, Ola."
    )
    await expect(cards(page).first).to_have_text("Berg, Ola")
    assert await page.locator("html").get_attribute("data-alarm-sounds") is None
    await accessible(page, axe_script, "my patients in English with a new alarm")

    # Settings stay on this tablet: back to bokmål for the tests that follow.
    await page.get_by_role("button", name="Norsk (bokmål)").click()
    await expect(page.locator("html")).to_have_attribute("lang", "nb")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Mine pasienter")
    for alarm in (*panic.alarms, *glucose.alarms):
        await world.settle(alarm.id)
    await expect(cards(page).first).to_have_text("Nilsen, Per")


# --- the live connection ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def platform_on(world: NurseWorld, port: int) -> AsyncIterator[uvicorn.Server]:
    """The world's app served on ``port`` until the block ends (an open live stream is cut
    after a second: the platform is gone)."""
    config = uvicorn.Config(
        world.app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name="nurse-app-platform")
    try:
        await until(lambda: server.started, what="the platform's HTTP server")
        yield server
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_the_app_says_plainly_when_it_is_not_live(
    world: NurseWorld, browser: Browser, axe_script: str
) -> None:
    port = find_free_port()
    async with (
        PartitionProxy("127.0.0.1", port) as proxy,
        tablet_page(browser) as page,
    ):
        url = f"http://127.0.0.1:{proxy.port}"
        await page.clock.install()
        async with platform_on(world, port):
            await sign_in(page, url)
            await expect(cards(page)).to_have_count(4)
            banner = page.locator("#connection-alert")
            await expect(banner).to_have_text("")

            # The network goes silent (nothing arrives, nothing fails): stale after 40 s.
            async with proxy.partitioned():
                await page.clock.fast_forward(45_000)
                await expect(banner).to_contain_text(
                    "Ikke direkte: ingen livstegn fra plattformen på 40 sekunder."
                )
                await expect(page.locator("#connection")).to_contain_text("Ikke oppdatert")
                await expect(page.locator("main")).to_have_class(re.compile(r"\bnot-live\b"))
                await expect(page.locator(".stale-marker")).to_have_text("⚠ Kan være utdatert")
                await accessible(page, axe_script, "not live (stale)")
                await screenshot(page, "connection-lost.png")
            # The network is back: live again by itself, and it says so.
            await page.clock.fast_forward(20_000)
            await expect(page.locator("#connection")).to_contain_text("Direkte")
            await expect(banner).to_have_text("")
            await expect(page.locator("main")).not_to_have_class(re.compile(r"\bnot-live\b"))
            await expect(page.locator("#announce-polite")).to_have_text(
                "Direkte igjen. Visningen er oppdatert."
            )

        # The platform stops: the stream ends, and the app says so at once.
        await expect(banner).to_contain_text("Ikke direkte: forbindelsen til plattformen er brutt.")
        await expect(banner).to_contain_text("Det du ser, kan være utdatert.")
        await expect(page.locator("#connection")).to_contain_text("Frakoblet")
        await accessible(page, axe_script, "not live (lost)")

        # An alarm raised while the app was not connected ...
        fall = await world.fall("Ødegård")
        async with platform_on(world, port):
            await page.get_by_role("button", name="Koble til nå").click()
            await expect(page.locator("#connection")).to_contain_text("Direkte")
            # ... is shown and announced once the app is live again.
            await expect(page.get_by_role("region", name="Ny alarm")).to_contain_text(
                "Kritisk alarm: Fall hos Ødegård, Kari"
            )
            await expect(card(page, "Ødegård, Kari").locator(".alarm-badges")).to_contain_text(
                "Kritisk: Fall Ny"
            )
        await world.settle(fall.id)


async def test_a_device_checking_itself_is_shown_on_the_device(
    world: NurseWorld, tablet: Page
) -> None:
    """Issue 14: a smoke alarm's test and a sensor's own "battery low" (it reports no
    percentage) show on the device, not as a fire. Last in the module: its low-battery alarm
    would change the other tests' alarm counts."""
    at = now_here()
    await world.commit(
        gateway_of("Ødegård"),
        [
            ("smoke-odegard", codes.EVENT_SMOKE_TEST.ref, "1", "1", at),
            ("smoke-odegard", codes.EVENT_BATTERY_LOW.ref, "1", "1", at),
        ],
    )
    page = tablet
    await sign_in(page, world.url)
    await card(page, "Ødegård, Kari").get_by_role("link").click()
    devices = page.get_by_role("region", name="Enheter")
    smoke = devices.locator("tr", has_text="smoke-odegard")
    await expect(smoke.locator("th")).to_contain_text("Røykvarsler")
    await expect(smoke.locator("th .device-check")).to_contain_text("Alarmtest")
    await expect(smoke.locator("td").nth(0)).to_have_text("▼ lavt")


# --- the platform's own health -------------------------------------------------------------------


async def test_a_coordinator_is_told_when_the_platform_itself_is_degraded(
    world: NurseWorld, browser: Browser, axe_script: str
) -> None:
    """A coordinator sees a banner while the platform cannot hear the homes (the readiness
    check IT's alert TryggheimIngestDisconnected watches too); a nurse is not asked, and stays
    signed in."""
    async with tablet_page(browser) as coordinator, tablet_page(browser) as nurse:
        await sign_in(coordinator, world.url, username=COORDINATOR)
        banner = coordinator.locator("#platform-banner")
        await expect(coordinator.locator("#platform-alert")).to_have_count(1)
        await expect(banner).to_be_hidden()
        world.platform_checks["ingest"] = False
        try:
            await coordinator.reload()  # the app asks at once on start, then every 30 s
            await expect(banner).to_be_visible()
            await expect(banner).to_contain_text("ingen forbindelse til hjemmene")
            await expect(coordinator.locator("#platform-alert")).to_have_attribute("role", "status")
            await accessible(coordinator, axe_script, "coordinator, platform degraded")
            await coordinator.get_by_role("button", name="English").click()
            await expect(banner).to_contain_text("no connection to the homes")
            await coordinator.get_by_role("button", name="Norsk (bokmål)").click()

            await sign_in(nurse, world.url)
            await expect(nurse.locator(".patient-list")).to_be_visible()
            await expect(nurse.locator("#platform-banner")).to_be_hidden()
            await expect(nurse.locator("#connection")).to_contain_text("Direkte")
        finally:
            world.platform_checks["ingest"] = True
        await coordinator.reload()
        await expect(banner).to_be_hidden()
