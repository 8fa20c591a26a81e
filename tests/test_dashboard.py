"""The nurse app end to end (Debian chromium via Playwright): a reading taken with a simulated
cuff goes through the home gateway, the broker and the platform, and appears live on the
nurse's list without a reload. The app's own workflows are in tests/test_nurse_app.py."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from access import care_team_of
from chain import reading, running_chain, until
from playwright.async_api import Page, expect
from servers import BrokerFixture

from gateway.auth import Role
from gateway.records.models import DEFAULT_TENANT
from gateway.registry.bootstrap import add_user

pytestmark = pytest.mark.asyncio(loop_scope="session")

NURSE_PASSWORD = "correct horse battery"


async def test_nurse_page_shows_a_new_reading_live(
    mosquitto: BrokerFixture, page: Page, tmp_path: Path
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"
    async with running_chain(mosquitto, database_url, tmp_path) as chain:
        await add_user(
            chain.platform.store,
            tenant_id=DEFAULT_TENANT,
            username="kari.nurse",
            display_name="Kari Sykepleier",
            roles=[Role.NURSE],
            team_names=["Team A"],
            password=NURSE_PASSWORD,
        )
        (patient,) = await chain.platform.store.patients()
        await care_team_of(chain.platform.store, patient.id, "Team A")
        await page.goto(chain.base_url + "/")
        await expect(page).to_have_title("Logg inn – Tryggheim")
        await page.get_by_label("Brukernavn").fill("kari.nurse")
        await page.get_by_label("Passord").fill("wrong password!")
        await page.get_by_role("button", name="Logg inn").click()
        await expect(page.locator("#login-problem")).to_have_text("Feil brukernavn eller passord.")
        await page.get_by_label("Passord").fill(NURSE_PASSWORD)
        await page.get_by_role("button", name="Logg inn").click()
        card = page.locator(".patient-card", has=page.get_by_role("link", name="Ødegård, Kari"))
        await expect(card).to_be_visible()
        await expect(card.locator(".no-values")).to_have_text("Ingen målinger ennå.")
        await expect(page.locator("#connection")).to_contain_text("Direkte")

        await chain.cuff.measure(reading(152, 94, 71, datetime(2026, 11, 22, 9, 15)))
        await until(lambda: chain.cuff.readings_delivered == 1, timeout=30, what="delivery")
        bp = card.locator("[data-vital=bp]")
        await expect(bp.locator(".value")).to_have_text("152/94", timeout=20_000)
        await expect(bp.locator(".unit")).to_have_text("mmHg")
        await expect(card.locator("[data-vital=pulse] .value")).to_have_text("71")
        # The time the patient's cuff showed, whatever the tablet's own time zone.
        await expect(bp.locator(".when")).to_have_text("22.11.2026 09:15")
        await page.screenshot(path=str(tmp_path / "nurse-page.png"))
