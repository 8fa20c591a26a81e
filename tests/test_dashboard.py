"""The nurse page in a real browser (Debian chromium via Playwright): it lists the patient and
shows a new cuff reading live, without a reload."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from access import care_team_of
from chain import reading, running_chain, until
from playwright.async_api import Page, expect
from servers import BrokerFixture

from gateway.auth import Role
from gateway.bootstrap import add_user
from gateway.models import DEFAULT_TENANT

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
        await expect(page).to_have_title("Tryggheim — my patients")
        await page.get_by_label("User name").fill("kari.nurse")
        await page.get_by_label("Password").fill("wrong password!")
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")
        await page.get_by_label("Password").fill(NURSE_PASSWORD)
        await page.get_by_role("button", name="Sign in").click()
        row = page.get_by_role("row", name="Ødegård, Kari")
        await expect(row).to_be_visible()
        await expect(row.locator("td.bp")).to_have_text("–")
        await expect(page.locator("#connection")).to_have_text("Live")

        await chain.cuff.measure(reading(152, 94, 71, datetime(2026, 11, 22, 9, 15)))
        await until(lambda: chain.cuff.readings_delivered == 1, timeout=30, what="delivery")
        await expect(row.locator("td.bp")).to_have_text("152/94 mmHg", timeout=20_000)
        await expect(row.locator("td.pulse")).to_have_text("71 /min")
        # The time the patient's cuff showed, whatever the tablet's own time zone.
        await expect(row.locator("td").nth(3)).to_have_text("22.11.2026 09:15")
        await page.screenshot(path=str(tmp_path / "nurse-page.png"))
