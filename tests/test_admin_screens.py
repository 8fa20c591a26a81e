"""The admin's screens (issue 16, admin screens) in headless Chromium at tablet and phone size,
against a real platform: an admin signs in to a home screen of her own (never "no access to
the patients"), creates a care team and a user (the platform's refusal shown next to the
field), gives the user a temporary password and disables her, provisions a home gateway (its
broker password shown once), rotates that password, sees its status and outbox depth, pairs
and unpairs a device, reads the audit log with a filter, and sees the FHIR documents the
record refused and sends one again. axe-core finds nothing in each state."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio
from axe_core import install
from care_screens import SIZES, accessible, no_sideways_scrolling, sign_in, sized_page
from jft_peer import operation_outcome
from nurse_world import ADMIN, TEAM, NurseWorld, running_world
from playwright.async_api import Browser, Page, expect
from sqlalchemy import delete, func, select, update
from test_nurse_app import audit_rows, audited_exactly, screenshot

from gateway.fhir.pmd import CONSENT_WITHDRAWN
from gateway.records.models import (
    DEFAULT_TENANT,
    AuditEntry,
    CareTeam,
    FhirDestination,
    FhirMessage,
    HomeGateway,
    Patient,
    User,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def axe_script() -> str:
    return install().read_text(encoding="utf-8")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[NurseWorld]:
    async with running_world(tmp_path_factory.mktemp("admin")) as running:
        yield running


async def section(page: Page, name: str) -> None:
    sections = page.get_by_role("navigation", name="Administrasjon")
    await sections.get_by_role("link", name=name, exact=True).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(name)


async def check(page: Page, axe_script: str, what: str) -> None:
    await no_sideways_scrolling(page)
    await accessible(page, axe_script, what)


@pytest.mark.parametrize("size", ["tablet", "phone"])
async def test_an_admin_runs_the_municipality_from_the_app(
    world: NurseWorld, browser: Browser, axe_script: str, size: str
) -> None:
    notice = "#admin-notice"
    async with sized_page(browser, SIZES[size]) as page:
        await page.goto(world.url)
        await sign_in(page, ADMIN)
        await expect(page.get_by_role("heading", level=1)).to_have_text("Administrasjon")
        await expect(page.locator("#login-problem")).to_have_count(0)
        await expect(page.locator("#nav").get_by_role("link", name="Pasienter")).to_be_hidden()
        await check(page, axe_script, f"admin home ({size})")

        # A care team.
        team = f"Sone 9 {size}"
        await section(page, "Team")
        await page.get_by_label("Navn på teamet").fill(team)
        await page.get_by_role("button", name="Opprett team").click()
        await expect(page.locator(notice)).to_have_text(f"Teamet {team} er opprettet.")
        await expect(page.get_by_label(f"Navn på {team}")).to_have_value(team)
        await check(page, axe_script, f"teams ({size})")

        # A user: the platform refuses a short password, next to the field.
        username = f"nina.{size}"
        await section(page, "Brukere")
        await page.get_by_label("Brukernavn").fill(username)
        await page.get_by_label("Fullt navn").fill(f"Nina {size.title()}")
        await page.get_by_role("group", name="Team").get_by_label(team).check()
        await page.get_by_label("Startpassord").fill("kort")
        await page.get_by_role("button", name="Opprett bruker").click()
        await expect(page.locator(notice)).to_have_text("Ikke lagret: rett feltene som er merket.")
        password = page.get_by_label("Startpassord")
        await expect(password).to_have_attribute("aria-invalid", "true")
        await expect(page.locator("#new-user-password-problem")).to_have_text("For kort: minst 12.")
        await expect(password).to_be_focused()
        await check(page, axe_script, f"a user refused ({size})")
        await password.fill("et langt startpassord")
        await page.get_by_role("button", name="Opprett bruker").click()
        await expect(page.locator(notice)).to_have_text(
            f"Brukeren Nina {size.title()} er opprettet."
        )
        nina = page.locator(f'li[data-user="{username}"]')
        await expect(nina).to_contain_text(f"Sykepleier · {team} · Aktiv")
        await screenshot(page, f"admin-users-{size}.png")

        # She forgot her password: a temporary one, shown once, that signs her in.
        await nina.get_by_role("button", name=re.compile("^Nytt passord")).click()
        secret = page.locator(".secret code")
        await expect(secret).to_have_count(1)
        temporary = await secret.inner_text()
        async with httpx.AsyncClient(base_url=world.url) as client:
            signed = await client.post(
                "/api/v1/auth/token", data={"username": username, "password": temporary}
            )
        assert signed.status_code == 200, signed.text
        await check(page, axe_script, f"a temporary password ({size})")
        await page.get_by_role("button", name="Jeg har tatt vare på det – skjul").click()
        await expect(secret).to_have_count(0)
        # She leaves: disabled, and signed out everywhere.
        await nina.get_by_role("button", name=re.compile("^Deaktiver")).click()
        await expect(nina).to_contain_text("Deaktivert")

        # A home gateway for Berg: the broker password once; then a new one.
        gateway = f"gw-admin-{size}"
        await section(page, "Hjemmeenheter")
        await page.get_by_label("Id (også MQTT-brukernavn)").fill(gateway)
        await page.get_by_label("Pasient").select_option(label="Berg, Ola")
        await page.get_by_role("button", name="Opprett hjemmeenhet").click()
        await expect(page.locator(".secret")).to_contain_text(
            f"Passord for hjemmeenheten {gateway}"
        )
        first = await secret.inner_text()
        assert len(first) >= 40
        item = page.locator(f'li[data-gateway="{gateway}"]')
        await expect(item).to_contain_text("Ikke hørt fra ennå")
        await expect(item).to_contain_text("Hos Berg, Ola")
        await check(page, axe_script, f"a gateway provisioned ({size})")
        await item.get_by_role("button", name=f"Nytt passord for {gateway}").click()
        await expect(secret).not_to_have_text(first)
        await page.get_by_role("button", name="Jeg har tatt vare på det – skjul").click()
        # It comes online with a backlog: seen when she opens the list again.
        async with world.store.session() as s:
            await s.execute(
                update(HomeGateway)
                .where(HomeGateway.id == gateway)
                .values(online=True, outbox_depth=17)
            )
        await section(page, "Enheter")
        await section(page, "Hjemmeenheter")
        await expect(item).to_contain_text("Tilkoblet")
        await expect(item).to_contain_text("17 målinger venter i utboksen")

        # A thermometer paired with Berg, then unpaired (asked twice).
        device = "C0:99:00:00:00:01" if size == "tablet" else "C0:99:00:00:00:02"
        await section(page, "Enheter")
        await page.get_by_label("Enhets-ID").fill(device.lower())
        await page.get_by_label("Type").select_option(label="Termometer")
        await page.get_by_label("Pasient").select_option(label="Berg, Ola")
        await page.get_by_label("Hjemmeenhet").select_option(gateway)
        await page.get_by_role("button", name="Par enheten").click()
        await expect(page.locator(notice)).to_have_text(f"{device} er paret.")
        paired = page.locator(f'li[data-device="{device}"]')
        await expect(paired).to_contain_text(f"Termometer · Berg, Ola · {gateway}")
        await check(page, axe_script, f"devices ({size})")
        await paired.get_by_role("button", name=f"Fjern paring av {device}").click()
        await paired.get_by_role("button", name=f"Bekreft: Fjern paring av {device}").click()
        await expect(page.locator(notice)).to_have_text(f"Paringen av {device} er fjernet.")
        await expect(paired).to_have_count(0)

        # The audit log, narrowed to pairings.
        await section(page, "Revisjonslogg")
        await page.get_by_label("Handling").fill("pair_device")
        await page.get_by_role("button", name="Vis").click()
        entries = page.locator(".audit-list > li")
        await expect(entries.first).to_contain_text("pair_device")
        # The first entry of the list shown before the filter may be a pairing too: wait for the
        # filtered list to replace it.
        await expect(entries.filter(has_not_text="pair_device")).to_have_count(0)
        for text in await entries.all_inner_texts():
            assert "pair_device" in text and "Tillatt" in text, text
        await check(page, axe_script, f"audit log ({size})")

        # "Sign out everywhere" for her account: her next action finds the session ended; the
        # screen stays, under the notice, and nothing keeps asking the platform.
        async with world.store.session() as s:
            await s.execute(
                update(User)
                .where(User.username == ADMIN)
                .values(token_version=User.token_version + 1)
            )
        # A change made in the database by hand counts within auth.session_check_cache_s.
        await page.wait_for_timeout(1500)
        await page.get_by_role("button", name="Vis").click()
        await expect(page.locator("#session-ended").get_by_role("alert")).to_contain_text(
            "Du er logget ut"
        )
        await expect(page.get_by_role("heading", level=1)).to_have_text("Revisjonslogg")
        # Once she is told, nothing asks the platform again until she signs in (counted from
        # the notice: how many requests led up to it depends on which background refresh was
        # due, and under load one more may be).
        asked: list[str] = []
        page.on("request", lambda r: asked.append(r.url) if "/api/" in r.url else None)
        await page.wait_for_timeout(2500)
        assert asked == [], asked
        await check(page, axe_script, f"admin's session ended ({size})")
        await page.get_by_role("button", name="Logg inn igjen").click()
        await sign_in(page, ADMIN)
        await expect(page.locator("#session-ended")).to_be_hidden()
        # Her filter is still set, and the list is fetched again with it.
        await expect(page.get_by_label("Handling")).to_have_value("pair_device")
        await expect(entries.first).to_contain_text("pair_device")
        await expect(entries.filter(has_not_text="pair_device")).to_have_count(0)
        for text in await entries.all_inner_texts():
            assert "pair_device" in text, text


@pytest.mark.parametrize("size", ["tablet", "phone"])
async def test_an_admin_registers_a_patient_and_edits_the_registration(
    world: NurseWorld, browser: Browser, axe_script: str, size: str
) -> None:
    """Patients in the admin's app, on the registry API: she registers a patient (national
    identity number, names, care team); a malformed number, an empty name and a number already
    registered are refused next to their fields, in Norwegian; she sees the list and changes a
    name and the care team."""
    notice = "#admin-notice"
    number = "01019012345" if size == "tablet" else "41019012345"  # a fødselsnummer, a D-nummer
    given, family = f"Astrid {size.title()}", "Lund"
    other_team = "Hjemmesykepleien sone 2"
    async with sized_page(browser, SIZES[size]) as page:
        await page.goto(world.url)
        await sign_in(page, ADMIN)
        await section(page, "Pasienter")
        await expect(page.locator("li[data-patient]", has_text="Berg, Ola")).to_contain_text(
            f"Team: {TEAM}"
        )
        await check(page, axe_script, f"patients ({size})")

        new = page.get_by_role("group", name="Registrer en pasient")
        national_id = new.get_by_label("Fødselsnummer, D-nummer eller FH-nummer")
        await national_id.fill("0101 90")
        await new.get_by_label("Fornavn").fill(given)
        await new.get_by_role("button", name="Registrer pasienten").click()
        await expect(page.locator(notice)).to_have_text("Ikke lagret: rett feltene som er merket.")
        await expect(page.locator("#new-patient-national_id-problem")).to_have_text(
            "Skriv de 11 sifrene i fødselsnummeret, D-nummeret eller FH-nummeret."
        )
        await expect(page.locator("#new-patient-family_name-problem")).to_have_text("Må fylles ut.")
        await expect(national_id).to_have_attribute("aria-invalid", "true")
        await expect(national_id).to_be_focused()
        await check(page, axe_script, f"a patient refused ({size})")

        # Written as on a card, with a space: the same 11 digits.
        await national_id.fill(f"{number[:6]} {number[6:]}")
        await new.get_by_label("Etternavn").fill(family)
        await new.get_by_label("Team").select_option(label=TEAM)
        await new.get_by_role("button", name="Registrer pasienten").click()
        await expect(page.locator(notice)).to_have_text(f"{family}, {given} er registrert.")
        registered = page.locator("li[data-patient]", has_text=f"{family}, {given}")
        await expect(registered).to_contain_text(f"{number} · Team: {TEAM}")
        await expect(national_id).to_have_value("")

        # The same number again: refused next to the field.
        await national_id.fill(number)
        await new.get_by_label("Fornavn").fill("Noen")
        await new.get_by_label("Etternavn").fill("Annen")
        await new.get_by_role("button", name="Registrer pasienten").click()
        await expect(page.locator("#new-patient-national_id-problem")).to_have_text(
            "En pasient med dette nummeret er allerede registrert."
        )
        await expect(national_id).to_be_focused()
        await national_id.fill("")
        await new.get_by_label("Fornavn").fill("")
        await new.get_by_label("Etternavn").fill("")

        # A new family name and another team; an empty given name is refused first.
        patient_id = int(await registered.get_attribute("data-patient") or 0)
        edit = f"#patient-{patient_id}"
        await registered.get_by_text(f"Endre registreringen for {family}, {given}").click()
        await registered.get_by_label("Fornavn").fill(" ")
        await registered.get_by_label("Etternavn").fill("Lund-Berg")
        await registered.get_by_label("Team").select_option(label=other_team)
        await registered.get_by_role("button", name=re.compile("^Lagre endringer")).click()
        await expect(page.locator(f"{edit}-given_name-problem")).to_have_text("Må fylles ut.")
        await expect(page.locator(f"{edit}-given_name")).to_be_focused()
        await check(page, axe_script, f"a registration change refused ({size})")
        await page.locator(f"{edit}-given_name").fill(given)
        await registered.get_by_role("button", name=re.compile("^Lagre endringer")).click()
        await expect(page.locator(notice)).to_have_text(
            f"Endringene for Lund-Berg, {given} er lagret."
        )
        changed = page.locator(f'li[data-patient="{patient_id}"]')
        await expect(changed.get_by_role("heading")).to_have_text(f"Lund-Berg, {given}")
        await expect(changed).to_contain_text(f"{number} · Team: {other_team}")
        await check(page, axe_script, f"a registration changed ({size})")
        await screenshot(page, f"admin-patients-{size}.png", full_page=True)
    async with world.store.session() as s:
        patient = await s.get(Patient, patient_id)
        assert patient is not None
        assert (patient.national_id, patient.family_name, patient.given_name) == (
            number,
            "Lund-Berg",
            given,
        )
        team = await s.scalar(select(CareTeam.id).where(CareTeam.name == other_team))
        assert patient.care_team_id == team


async def queue_of_documents(world: NurseWorld) -> dict[str, int]:
    """The FHIR queue as the sender leaves it after a refusal and an outage (what each row
    holds is what gateway.fhir.outbound records): to JFT one document refused with the
    receiver's OperationOutcome, one waiting after two 503s and one journaled; to PMD a batch
    parked because its patient withdrew her consent. Message ids by name."""
    now = datetime.now(UTC)
    berg, andersen = world.patients["Berg"], world.patients["Andersen"]
    refusal = operation_outcome(
        [
            (
                "error",
                "invalid",
                "fhir.resources: entry.0.resource.status: Input should be 'preliminary', "
                "'final', 'amended' or 'entered-in-error'",
            )
        ]
    )
    rows = {
        "refused": FhirMessage(
            destination="jft:default",
            alarm_id=41,
            patient_id=berg,
            state="parked",
            attempts=1,
            http_status=400,
            outcome=json.dumps(refusal),
            settled_at=now,
            last_error="HTTP 400: fhir.resources: entry.0.resource.status: ...",
        ),
        "waiting": FhirMessage(
            destination="jft:default",
            alarm_id=42,
            patient_id=andersen,
            state="pending",
            attempts=2,
            http_status=503,
            next_attempt_at=now + timedelta(minutes=2),
            last_error="HTTP 503: try again later",
        ),
        "journaled": FhirMessage(
            destination="jft:default",
            alarm_id=40,
            patient_id=berg,
            state="journaled",
            attempts=1,
            polls=2,
            settled_at=now,
        ),
        "withdrawn": FhirMessage(
            destination="pmd:default",
            alarm_id=7,
            patient_id=berg,
            state="parked",
            settled_at=now,
            last_error=CONSENT_WITHDRAWN,
        ),
    }
    async with world.store.session() as s:
        await s.execute(delete(FhirMessage))
        await s.execute(delete(FhirDestination))
        for row in rows.values():
            row.tenant_id, row.created_at = "default", now - timedelta(hours=1)
            row.polls = row.polls or 0
        s.add_all(rows.values())
        s.add(
            FhirDestination(
                destination="jft:default",
                last_success_at=now - timedelta(minutes=30),
                last_error="alarm 42: HTTP 503: try again later",
                last_error_at=now,
            )
        )
        await s.flush()
        return {name: row.id for name, row in rows.items()}


@pytest.mark.parametrize("size", ["tablet", "phone"])
async def test_an_admin_sees_refused_fhir_documents_and_sends_one_again(
    world: NurseWorld, browser: Browser, axe_script: str, size: str
) -> None:
    """Issue 17: a document the record refused (400 + OperationOutcome) waits for a person.
    The admin sees it on her home screen, reads each destination's state and the receiver's
    own words, and sends it again once the cause is fixed; it is then waiting, in order."""
    ids = await queue_of_documents(world)
    async with sized_page(browser, SIZES[size]) as page:
        await page.goto(world.url)
        await sign_in(page, ADMIN)
        card = page.locator(".admin-cards li", has=page.get_by_role("link", name="Journalføring"))
        await expect(card).to_contain_text("2 avviste dokumenter venter på deg")

        await section(page, "Journalføring")
        jft = page.locator('li[data-destination="jft:default"]')
        await expect(jft.get_by_role("heading")).to_have_text("Journalføringstjenesten (default)")
        await expect(jft).to_contain_text("1 venter · 0 under behandling · 1 levert · 1 avvist")
        await expect(jft).to_contain_text("alarm 42: HTTP 503: try again later")
        pmd = page.locator('li[data-destination="pmd:default"]')
        await expect(pmd).to_contain_text("Pasientens måledata (default)")
        await expect(pmd).to_contain_text("0 venter · 0 under behandling · 0 levert · 1 avvist")

        parked = page.get_by_role("list", name="Avviste dokumenter")
        refused = parked.locator(f'li[data-message="{ids["refused"]}"]')
        await expect(refused.get_by_role("heading")).to_have_text("Alarm 41 · Berg, Ola")
        await expect(refused).to_contain_text("Mottakerens svar (HTTP 400)")
        await expect(refused).to_contain_text(
            "feil: fhir.resources: entry.0.resource.status: Input should be 'preliminary'"
        )
        withdrawn = parked.locator(f'li[data-message="{ids["withdrawn"]}"]')
        await expect(withdrawn).to_contain_text("Målinger · Berg, Ola")
        await expect(withdrawn).to_contain_text(f"Årsak: {CONSENT_WITHDRAWN}")
        waiting = page.get_by_role("list", name="Venter på å bli sendt")
        await expect(waiting.locator("li")).to_have_count(1)
        await expect(waiting).to_contain_text("Alarm 42 · Andersen")
        await expect(waiting).to_contain_text("2 forsøk")
        await expect(waiting).to_contain_text("HTTP 503: try again later")
        await check(page, axe_script, f"FHIR queue ({size})")
        await screenshot(page, f"admin-fhir-{size}.png")

        await refused.get_by_role("button", name="Send Alarm 41 · Berg, Ola igjen").click()
        await expect(page.locator("#admin-notice")).to_have_text(
            "Alarm 41 · Berg, Ola er lagt i køen igjen."
        )
        await expect(refused).to_have_count(0)
        await expect(waiting.locator(f'li[data-message="{ids["refused"]}"]')).to_contain_text(
            "Alarm 41 · Berg, Ola"
        )
        await expect(jft).to_contain_text("2 venter · 0 under behandling · 1 levert · 0 avvist")
        await check(page, axe_script, f"FHIR document requeued ({size})")
    async with world.store.session() as s:
        row = await s.get(FhirMessage, ids["refused"])
        assert row is not None and row.state == "pending" and row.next_attempt_at is not None


async def seen_by_screen(world: NurseWorld, screen: str) -> Counter[tuple[str, str]]:
    """One ``view:<screen>`` row per patient of the tenant (every admin screen with a patient
    list shows them all), named as :func:`audit_rows` names them."""
    async with world.store.session() as s:
        ids = (await s.scalars(select(Patient.id).where(Patient.tenant_id == DEFAULT_TENANT))).all()
    names = {patient_id: family for family, patient_id in world.patients.items()}
    return Counter({(f"view:{screen}", names.get(i, f"#{i}")): 1 for i in ids})


async def test_the_audit_log_has_one_row_per_patient_an_admin_saw(
    world: NurseWorld, browser: Browser
) -> None:
    """The admin's screens send their view opening like the nurse app (docs/auth.md, "What the
    audit log records"): one row per patient per screen opened, however many lists it loads
    and reloads after a change; opening a screen again, or a reload of the page, is a new
    opening; what she does is audited every time."""
    await queue_of_documents(world)
    async with world.store.session() as s:
        before = await s.scalar(select(func.max(AuditEntry.id))) or 0
    expected: Counter[tuple[str, str]] = Counter()
    admin = world.admin_subject

    async with sized_page(browser, SIZES["tablet"]) as page:
        await page.goto(world.url)
        await sign_in(page, ADMIN)
        await expect(page.get_by_role("heading", level=1)).to_have_text("Administrasjon")
        await expect(page.locator(".admin-cards")).to_contain_text("registrert")
        await audited_exactly(world, before, expected, admin)

        # The FHIR queue shows the patient list and two lists of documents: one row each.
        await section(page, "Journalføring")
        refused = page.get_by_role("button", name="Send Alarm 41 · Berg, Ola igjen")
        await expect(refused).to_be_visible()
        expected += await seen_by_screen(world, "admin_fhir")
        await audited_exactly(world, before, expected, admin)

        # A step is audited; the three lists it reloads are not.
        await refused.click()
        await expect(page.locator("#admin-notice")).to_have_text(
            "Alarm 41 · Berg, Ola er lagt i køen igjen."
        )
        expected[("requeue_fhir_message", "Berg")] += 1
        await audited_exactly(world, before, expected, admin)

        # Registering a patient reloads the register: a row for the registration and one for
        # the patient the screen now shows, none for those it showed already.
        await section(page, "Pasienter")
        new = page.get_by_role("group", name="Registrer en pasient")
        await expect(page.locator("li[data-patient]").first).to_be_visible()
        expected += await seen_by_screen(world, "admin_patients")
        await audited_exactly(world, before, expected, admin)
        number = "81019012345"  # an FH-nummer
        await new.get_by_label("Fødselsnummer, D-nummer eller FH-nummer").fill(number)
        await new.get_by_label("Fornavn").fill("Audun")
        await new.get_by_label("Etternavn").fill("Revisor")
        await new.get_by_role("button", name="Registrer pasienten").click()
        await expect(page.locator("#admin-notice")).to_have_text("Revisor, Audun er registrert.")
        await expect(page.locator("li[data-patient]", has_text="Revisor, Audun")).to_be_visible()
        async with world.store.session() as s:
            registered = await s.scalar(select(Patient.id).where(Patient.national_id == number))
        expected[("register_patient", f"#{registered}")] += 1
        expected[("view:admin_patients", f"#{registered}")] += 1
        await audited_exactly(world, before, expected, admin)

        # Another screen, then this one again, then a reload of the page: three openings.
        await section(page, "Hjemmeenheter")
        await expect(page.get_by_role("button", name="Opprett hjemmeenhet")).to_be_visible()
        expected += await seen_by_screen(world, "admin_gateways")
        await section(page, "Journalføring")
        await expect(page.get_by_role("list", name="Venter på å bli sendt")).to_be_visible()
        expected += await seen_by_screen(world, "admin_fhir")
        await page.reload()
        await expect(page.get_by_role("list", name="Venter på å bli sendt")).to_be_visible()
        expected += await seen_by_screen(world, "admin_fhir")
        await audited_exactly(world, before, expected, admin)
    assert await audit_rows(world, before, admin) == expected
