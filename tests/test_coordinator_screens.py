"""The coordinator's care-plan screen (issue 16, coordinator screens) in headless Chromium at
tablet and phone size: a patient's personal limits with units, measurement schedule and an
AND/OR rule edited in the app; the platform's validation errors shown next to the field; the
change audited; and effective at once: after a lower limit is saved, the next reading above it
raises an alarm. axe-core finds nothing in each state."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from axe_core import install
from care_screens import SIZES, accessible, no_sideways_scrolling, sign_in, sized_page
from nurse_world import COORDINATOR, NURSE, NurseWorld, gateway_of, now_here, running_world
from playwright.async_api import Browser, expect
from sqlalchemy import func, select
from test_nurse_app import screenshot

from gateway.records.models import AuditEntry, Patient
from tryggheim import codes

pytestmark = pytest.mark.asyncio(loop_scope="session")

BERG_THERMOMETER = "C0:40:00:00:00:01"


@pytest.fixture(scope="module")
def axe_script() -> str:
    return install().read_text(encoding="utf-8")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[NurseWorld]:
    async with running_world(tmp_path_factory.mktemp("coordinator")) as running:
        yield running


async def plan_edits(world: NurseWorld, patient_id: int) -> int:
    async with world.store.session() as s:
        count = await s.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == "edit_care_plan", AuditEntry.patient_id == patient_id)
        )
    return int(count or 0)


@pytest.mark.parametrize("size", ["tablet", "phone"])
async def test_a_coordinator_sets_a_care_plan_that_applies_at_once(
    world: NurseWorld, browser: Browser, axe_script: str, size: str
) -> None:
    berg = world.patients["Berg"]
    edits_before = await plan_edits(world, berg)
    async with sized_page(browser, SIZES[size]) as page:
        await page.goto(f"{world.url}/#/patients/{berg}")
        await sign_in(page, COORDINATOR)
        await page.get_by_role("link", name="Behandlingsplan").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text(
            "Behandlingsplan – Berg, Ola"
        )
        temperature = page.get_by_label("Temperatur over (°C)")
        await expect(temperature).to_be_visible()
        await expect(page.locator("#limit-temperature_high-hint")).to_have_text(
            "Gjelder nå: 38,5 °C"
        )
        await no_sideways_scrolling(page)
        await accessible(page, axe_script, f"care plan ({size})")

        # A typing slip: the platform refuses it and says so next to the field.
        await temperature.fill("37,8o")
        await page.get_by_label("Alarm når det ikke er bevegelse").fill("30")
        await page.get_by_role("button", name="Lagre behandlingsplanen").click()
        await expect(page.locator("#care-plan-result")).to_have_text(
            "Planen er ikke lagret: rett feltene som er merket."
        )
        await expect(page.locator("#limit-temperature_high-problem")).to_have_text(
            "Skriv et tall, f.eks. 37,8."
        )
        await expect(temperature).to_have_attribute("aria-invalid", "true")
        await expect(page.locator("#inactivity-hours-problem")).to_have_text(
            "Kan ikke være mer enn 24."
        )
        await expect(temperature).to_be_focused()
        await accessible(page, axe_script, f"care plan with errors ({size})")
        await screenshot(page, f"care-plan-{size}.png")
        assert await plan_edits(world, berg) == edits_before

        # Corrected, with a morning measurement and an OR rule.
        await temperature.fill("37,8")
        await page.get_by_label("Alarm når det ikke er bevegelse").fill("6")
        await page.get_by_role("button", name="Legg til måling").click()
        await page.get_by_label("Hva skal måles").select_option(label="Temperatur")
        await page.get_by_label("Frist").fill("11:00")
        await page.get_by_role("button", name="Legg til regel").click()
        await page.get_by_label("Når gir regelen alarm").select_option(
            label="Når minst ett vilkår er oppfylt (ELLER)"
        )
        await page.locator("#rule-0-cond-0-value").select_option(label="Temperatur")
        await page.locator("#rule-0-cond-0-comparison").select_option(label="over")
        await page.get_by_label("Grense (°C)").fill("39")
        await page.locator("#rule-0-cond-1-limit").fill("110")
        await accessible(page, axe_script, f"care plan being edited ({size})")
        await page.get_by_role("button", name="Lagre behandlingsplanen").click()
        await expect(page.locator("#care-plan-result")).to_contain_text("Lagret kl.")
        await expect(page.locator("#limit-temperature_high-hint")).to_have_text(
            "Gjelder nå: 37,8 °C"
        )
        await accessible(page, axe_script, f"care plan saved ({size})")

    async with world.store.session() as s:
        patient = await s.get(Patient, berg)
        assert patient is not None
        plan = json.loads(patient.care_plan)
    assert plan["thresholds"] == {
        "temperature_high": {"enabled": True, "limit": "37.8", "margin": None}
    }
    assert plan["inactivity_hours"] == 6
    assert [(m["codes"], m["deadline"]) for m in plan["schedule"]] == [
        (["MDC_TEMP_BODY"], "11:00:00")
    ]
    (rule,) = plan["combined"]
    assert rule["op"] == "or"
    assert [(c["code"], c["comparison"], c["limit"], c["unit"]) for c in rule["conditions"]] == [
        ("MDC_TEMP_BODY", ">", "39", "Cel"),
        ("MDC_PULS_RATE_NON_INV", ">", "110", "{beat}/min"),
    ]
    assert await plan_edits(world, berg) == edits_before + 1

    # At once: a temperature of 38.0 (under the default 38.5, over her 37.8) raises an alarm.
    result = await world.commit(
        gateway_of("Berg"), [(BERG_THERMOMETER, codes.BODY_TEMP.ref, "38.0", "Cel", now_here())]
    )
    assert [a.rule_id for a in result.alarms] == ["temperature_high"]
    await world.settle(result.alarms[0].id)
    # Back to normal, and to the default plan, for the next run.
    await world.commit(
        gateway_of("Berg"), [(BERG_THERMOMETER, codes.BODY_TEMP.ref, "36.8", "Cel", now_here())]
    )
    async with world.store.session() as s:
        patient = await s.get(Patient, berg)
        assert patient is not None
        patient.care_plan = "{}"


async def test_a_nurse_is_not_offered_the_care_plan(world: NurseWorld, browser: Browser) -> None:
    async with sized_page(browser, SIZES["tablet"]) as page:
        await page.goto(f"{world.url}/#/patients/{world.patients['Berg']}")
        await sign_in(page, NURSE)
        await expect(page.get_by_role("heading", level=1)).to_have_text("Berg, Ola")
        await expect(page.get_by_role("link", name="Behandlingsplan")).to_have_count(0)
