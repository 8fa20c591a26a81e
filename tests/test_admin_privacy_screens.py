"""The admin's privacy duties in headless Chromium at tablet and phone size, against a real
platform (issue 16, "an admin can do their whole job in the app"): she changes the municipality's
retention (the platform's refusals next to their fields; a failed save says so and offers to try
again), sets a patient's GP and HL7 endpoint, downloads a patient's GDPR export as a JSON file,
erases all the patient's data behind a typed confirmation, and finds both in the audit log. A
nurse's list drops a patient moved to another team, and takes her back, without a reload.
axe-core finds nothing in each state; everything is done from the keyboard where it matters."""

from __future__ import annotations

import itertools
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from care_screens import SIZES, sign_in, sized_page
from nurse_world import ADMIN, NURSE, TEAM, NurseWorld, now_here
from playwright.async_api import Browser, Page, Route, expect
from sqlalchemy import func, select
from test_admin_screens import axe_script, check, section, world
from test_nurse_app import screenshot

from gateway.records.models import (
    DEFAULT_TENANT,
    AuditEntry,
    CareTeam,
    HomeGateway,
    Patient,
    Tenant,
)
from gateway.registry.service import Registry
from tryggheim import codes

pytestmark = pytest.mark.asyncio(loop_scope="session")

__all__ = ["axe_script", "world"]  # the fixtures of the admin screens' tests, shared

NOTICE = "#admin-notice"
_numbers = itertools.count(1)


async def new_patient(world: NurseWorld, given: str, family: str, team: str = TEAM) -> Patient:
    """A patient of her own for a test (a fødselsnummer-shaped number no other test uses)."""
    async with world.store.session() as s:
        team_id = await s.scalar(select(CareTeam.id).where(CareTeam.name == team))
    return await Registry(world.store).create_patient(
        DEFAULT_TENANT,
        national_id=f"9{next(_numbers):010d}",
        family_name=family,
        given_name=given,
        care_team_id=team_id,
    )


async def retention_of(world: NurseWorld) -> tuple[int, int, int]:
    async with world.store.session() as s:
        tenant = await s.get(Tenant, DEFAULT_TENANT)
        assert tenant is not None
        return (
            tenant.retention_observations_days,
            tenant.retention_alarms_days,
            tenant.retention_audit_days,
        )


@pytest.mark.parametrize("size", ["tablet", "phone"])
async def test_an_admin_changes_the_retention_in_the_app(
    world: NurseWorld, browser: Browser, axe_script: str, size: str
) -> None:
    observations, alarms, audit = await retention_of(world)
    async with sized_page(browser, SIZES[size]) as page:
        await page.goto(world.url)
        await sign_in(page, ADMIN)
        await section(page, "Lagringstid")
        await expect(page.locator("[data-retention]")).to_have_text(
            f"Nå: målinger {observations} dager · alarmer {alarms} dager · "
            f"revisjonslogg {audit} dager."
        )
        kept = page.get_by_label("Målinger (dager)")
        await expect(kept).to_have_value(str(observations))
        await check(page, axe_script, f"retention ({size})")

        # Refused by the platform, next to the fields, in Norwegian; focus on the first.
        await kept.fill("0")
        await page.get_by_label("Lukkede alarmer (dager)").fill("to år")
        await page.get_by_label("Revisjonslogg (dager)").fill("3650")
        await page.get_by_label("Revisjonslogg (dager)").press("Enter")
        await expect(page.locator(NOTICE)).to_have_text("Ikke lagret: rett feltene som er merket.")
        await expect(page.locator("#retention-observations_days-problem")).to_have_text(
            "Må være minst 1."
        )
        await expect(page.locator("#retention-alarms_days-problem")).to_have_text(
            "Skriv et helt tall."
        )
        await expect(kept).to_have_attribute("aria-invalid", "true")
        await expect(kept).to_be_focused()
        # The fields say what to change; the button is not a "try again".
        await expect(page.locator('[data-key="save-retention"]')).to_have_text(
            "Lagre lagringstiden"
        )
        await check(page, axe_script, f"retention refused ({size})")
        assert await retention_of(world) == (observations, alarms, audit)

        # The platform cannot be reached: the button says it is under way, then offers to
        # try again, and the notice says why.
        async def unreachable(route: Route) -> None:
            await page.wait_for_timeout(600)
            await route.abort()

        await page.route("**/api/v1/registry/tenant/retention", unreachable)
        await kept.fill("400")
        await page.get_by_label("Lukkede alarmer (dager)").fill("200")
        await page.get_by_role("button", name="Lagre lagringstiden").click()
        busy = page.locator('[data-key="save-retention"]')
        await expect(busy).to_have_text("Arbeider …")
        await expect(busy).to_be_disabled()
        await expect(page.locator(NOTICE)).to_contain_text("Ikke utført:")
        retry = page.get_by_role("button", name="Prøv igjen: Lagre lagringstiden")
        await expect(retry).to_be_enabled()
        await check(page, axe_script, f"retention not saved ({size})")
        await page.unroute("**/api/v1/registry/tenant/retention")
        await retry.focus()
        await page.keyboard.press("Enter")
        await expect(page.locator(NOTICE)).to_have_text("Lagringstiden er endret.")
        await expect(page.locator(NOTICE)).to_be_focused()
        await expect(page.locator("[data-retention]")).to_have_text(
            "Nå: målinger 400 dager · alarmer 200 dager · revisjonslogg 3650 dager."
        )
        await expect(page.get_by_role("button", name="Lagre lagringstiden")).to_be_enabled()
        await check(page, axe_script, f"retention saved ({size})")
    assert await retention_of(world) == (400, 200, 3650)
    async with world.store.session() as s:
        actions = (await s.scalars(select(AuditEntry.action).order_by(AuditEntry.id))).all()
    assert "set_retention" in actions


async def open_edit(page: Page, row: str, name: str) -> None:
    await page.locator(row).get_by_text(f"Endre registreringen for {name}").click()


@pytest.mark.parametrize("size", ["tablet", "phone"])
async def test_an_admin_sets_a_patients_gp_and_hl7_endpoint(
    world: NurseWorld, browser: Browser, axe_script: str, size: str
) -> None:
    patient = await new_patient(world, f"Gunn {size.title()}", "Fastlegesen")
    name = f"Fastlegesen, Gunn {size.title()}"
    row = f'li[data-patient="{patient.id}"]'
    edit = f"#patient-{patient.id}"
    async with sized_page(browser, SIZES[size]) as page:
        await page.goto(world.url)
        await sign_in(page, ADMIN)
        await section(page, "Pasienter")
        await expect(page.locator(row)).to_contain_text(
            "Ingen fastlege registrert · ingen HL7 til fastlegen"
        )
        await open_edit(page, row, name)
        save = page.locator(row).get_by_role("button", name=f"Lagre endringer for {name}")

        # A port without its host, then a port out of range: refused at the port.
        await page.locator(f"{edit}-gp_name").fill("Dr. Hansen")
        await page.locator(f"{edit}-gp_hl7_port").fill("2575")
        await save.click()
        problem = page.locator(f"{edit}-gp_hl7_port-problem")
        await expect(problem).to_have_text("Fyll også ut vertsnavnet: porten hører til det.")
        await expect(page.locator(f"{edit}-gp_hl7_port")).to_be_focused()
        await check(page, axe_script, f"a GP endpoint refused ({size})")
        await page.locator(f"{edit}-gp_hl7_host").fill("legekontor.example")
        await page.locator(f"{edit}-gp_hl7_port").fill("70000")
        await save.click()
        await expect(problem).to_have_text("Kan ikke være mer enn 65535.")

        await page.locator(f"{edit}-gp_hl7_port").fill("2575")
        await page.locator(f"{edit}-gp_hl7_port").press("Enter")
        await expect(page.locator(NOTICE)).to_have_text(f"Endringene for {name} er lagret.")
        await expect(page.locator(row)).to_contain_text(
            "Fastlege: Dr. Hansen · HL7 til legekontor.example:2575"
        )
        await check(page, axe_script, f"a GP endpoint saved ({size})")
    async with world.store.session() as s:
        saved = await s.get(Patient, patient.id)
        assert saved is not None
        assert (saved.gp_name, saved.gp_hl7_host, saved.gp_hl7_port) == (
            "Dr. Hansen",
            "legekontor.example",
            2575,
        )


@pytest.mark.parametrize("size", ["tablet", "phone"])
async def test_an_admin_exports_and_erases_a_patients_data_and_the_audit_log_shows_both(
    world: NurseWorld, browser: Browser, axe_script: str, size: str
) -> None:
    given = f"Eli {size.title()}"
    patient = await new_patient(world, given, "Innsyn")
    name = f"Innsyn, {given}"
    row = f'li[data-patient="{patient.id}"]'
    # Two temperatures from her home gateway, which stays (without her) after the erasure.
    gateway = f"gw-innsyn-{size}"
    await Registry(world.store).create_gateway(
        DEFAULT_TENANT, gateway, patient.id, "", datetime.now(UTC)
    )
    await world.commit(
        gateway,
        [
            (
                "C0:77:00:00:00:01",
                codes.BODY_TEMP.ref,
                value,
                "Cel",
                now_here() - timedelta(minutes=m),
            )
            for m, value in ((5, "36.8"), (1, "37.0"))
        ],
    )
    async with world.store.session() as s:
        before = await s.scalar(select(func.max(AuditEntry.id))) or 0
    async with sized_page(browser, SIZES[size], accept_downloads=True) as page:
        await page.goto(world.url)
        await sign_in(page, ADMIN)
        await section(page, "Pasienter")

        # The export: the platform out of reach, then a JSON file named for the patient, her
        # registration in it.
        export = f"**/api/v1/registry/patients/{patient.id}/export"
        await page.route(export, lambda route: route.abort())
        await page.locator(row).get_by_role("button", name=f"Eksporter data for {name}").click()
        await expect(page.locator(NOTICE)).to_contain_text("Ikke utført:")
        retry = page.locator(row).get_by_role(
            "button", name=f"Prøv igjen: Eksporter data for {name}", exact=True
        )
        await expect(retry).to_be_enabled()
        await page.unroute(export)
        async with page.expect_download() as downloading:
            await retry.click()
        download = await downloading.value
        file = f"pasient-{patient.id}-innsyn.json"
        assert download.suggested_filename == file
        exported = json.loads((await download.path()).read_text(encoding="utf-8"))
        assert patient.national_id in json.dumps(exported)
        await expect(page.locator(NOTICE)).to_have_text(
            f"Dataene om {name} er lastet ned som {file}."
        )
        await check(page, axe_script, f"a patient's data exported ({size})")

        # The erasure asks for her number or name, typed; Escape takes it back.
        erase = page.locator(row).get_by_role("button", name=f"Slett alle data om {name}")
        await erase.focus()
        await page.keyboard.press("Enter")
        confirm = page.get_by_role("group", name=f"Slette alle data om {name}?")
        typed = confirm.get_by_label(re.compile("^Skriv fødselsnummeret"))
        await expect(typed).to_be_focused()
        now = confirm.get_by_role("button", name=f"Slett alt om {name} nå")
        await expect(now).to_be_disabled()
        await check(page, axe_script, f"an erasure to confirm ({size})")
        await typed.press_sequentially("Innsyn")
        await expect(now).to_be_disabled()
        await page.keyboard.press("Escape")
        await expect(confirm).to_have_count(0)
        await expect(erase).to_be_focused()
        await expect(erase).to_have_attribute("aria-expanded", "false")

        await page.keyboard.press("Enter")
        await expect(typed).to_have_value("")
        await typed.press_sequentially(f"{patient.national_id[:6]} {patient.national_id[6:]}")
        await expect(now).to_be_enabled()
        await typed.fill(f"  {given.lower()}  innsyn ")
        await expect(now).to_be_enabled()
        await check(page, axe_script, f"an erasure confirmed ({size})")
        await screenshot(page, f"admin-erase-{size}.png")
        await now.click()
        await expect(page.locator(NOTICE)).to_have_text(
            f"Alle data om {name} er slettet: 2 målinger."
        )
        await expect(page.locator(NOTICE)).to_be_focused()
        await expect(page.locator(row)).to_have_count(0)
        await check(page, axe_script, f"a patient's data erased ({size})")

        # Both are in the audit log, found by the patient's id.
        await section(page, "Revisjonslogg")
        await page.get_by_label("Pasient-ID").fill(str(patient.id))
        await page.get_by_role("button", name="Vis").click()
        entries = page.locator(".audit-list > li")
        await expect(entries.filter(has_not_text=f"pasient {patient.id}")).to_have_count(0)
        # (On SQLite an erased patient's id is given again to the next one registered, so
        # the phone's patient may have the tablet's id: at least one of each.)
        await expect(entries.filter(has_text="erase_patient_data").first).to_be_visible()
        await expect(entries.filter(has_text="export_patient_data").first).to_be_visible()
        await check(page, axe_script, f"the audit log of an erased patient ({size})")
    async with world.store.session() as s:
        assert await s.get(Patient, patient.id) is None
        kept = await s.get(HomeGateway, gateway)
        assert kept is not None and kept.patient_id is None
        audited = (
            await s.scalars(
                select(AuditEntry.action).where(
                    AuditEntry.id > before,
                    AuditEntry.patient_id == patient.id,
                    AuditEntry.action.in_(["export_patient_data", "erase_patient_data"]),
                )
            )
        ).all()
    assert sorted(audited) == ["erase_patient_data", "export_patient_data"]


@pytest.mark.parametrize("size", ["tablet", "phone"])
async def test_a_nurse_sees_a_patient_leave_and_join_her_list_live(
    world: NurseWorld, browser: Browser, axe_script: str, size: str
) -> None:
    """A patient registered in the nurse's team while her list is open appears on it; an admin
    moves her to another team: her card goes from the nurse's list (on the phone the nurse has
    the patient's page open: she is taken back to the list), with nothing asked of the
    platform; moved back, the patient is loaded again."""
    registry = Registry(world.store)
    async with world.store.session() as s:
        other = await s.scalar(
            select(CareTeam.id).where(CareTeam.name == "Hjemmesykepleien sone 2")
        )
    async with sized_page(browser, SIZES[size]) as page:
        await page.goto(world.url)
        await sign_in(page, NURSE)
        await expect(page.locator("#connection")).to_contain_text("Direkte")
        await expect(page.locator("[data-patient-id]").first).to_be_visible()
        patient = await new_patient(world, "Flytt", f"Flyttesen {size.title()}")
        card = f'[data-patient-id="{patient.id}"]'
        await expect(page.locator(card)).to_be_visible()
        if size == "phone":
            await page.goto(f"{world.url}/#/patients/{patient.id}")
            await expect(page.get_by_role("heading", level=1)).to_have_text(
                f"Flyttesen {size.title()}, Flytt"
            )
            await expect(page.locator("#alarms-title")).to_be_visible()  # her page loaded
        asked: list[str] = []
        page.on("request", lambda r: asked.append(r.url) if "/api/" in r.url else None)

        await registry.update_patient(DEFAULT_TENANT, patient.id, care_team_id=other)
        await expect(page.get_by_role("heading", level=1)).to_have_text("Mine pasienter")
        await expect(page.locator(card)).to_have_count(0)
        await expect(page.locator("#announce-polite")).to_have_text(
            f"Flyttesen {size.title()}, Flytt er flyttet til et annet team og er ikke lenger "
            "på listen din."
        )
        assert asked == []  # applied as it came, nothing asked
        await check(page, axe_script, f"a patient moved away ({size})")

        async with world.store.session() as s:
            team = await s.scalar(select(CareTeam.id).where(CareTeam.name == TEAM))
        await registry.update_patient(DEFAULT_TENANT, patient.id, care_team_id=team)
        await expect(page.locator(card)).to_be_visible()
