// The admin's screens (#/admin/…): users, care teams, patients, home gateways, devices and the
// audit log, on the registry API (gateway/api/routes/registry.py), and the FHIR journaling
// queue on its admin API (gateway/fhir/admin_api.py); retention, a patient's GP and her GDPR
// export and erasure are in admin_privacy.js, on the building blocks exported here. An admin
// is municipality IT, not care: she has no patient list or live stream, and signs in to this
// home screen of her own.
//
// Lists and form values live in this module (a redraw shows them again); every change is
// answered by the platform, whose refusals are shown next to the field they name, and a
// password the platform shows once (a home gateway's broker password, a user's temporary
// password) stays on screen until she hides it.

import * as api from "./api.js";
import { h } from "./dom.js";
import { addTexts, clock, t } from "./i18n.js";
import { fieldErrors } from "./validation.js";
// admin_privacy.js uses this module's building blocks, at call time only (an import cycle that
// ES modules resolve).
import {
  forgetPrivacyState, gpBody, gpFields, gpLine, gpPrefill, patientPrivacy, retentionSection,
} from "./admin_privacy.js";

addTexts({
  nb: {
    "nav.admin": "Administrasjon",
    "admin.title": "Administrasjon",
    "admin.intro": "Brukere, team, pasienter, hjemmeenheter, enheter, journalføringen og revisjonsloggen for kommunen din.",
    "admin.sections": "Administrasjon",
    "admin.users": "Brukere", "admin.teams": "Team", "admin.patients": "Pasienter", "admin.gateways": "Hjemmeenheter",
    "admin.devices": "Enheter", "admin.fhir": "Journalføring", "admin.audit": "Revisjonslogg",
    "admin.retention": "Lagringstid",
    "admin.count": "{count} registrert",
    "admin.loading": "Henter …",
    "admin.failed": "Ikke utført: {detail}",
    "admin.invalid": "Ikke lagret: rett feltene som er merket.",
    "admin.none": "Ingen ennå.",
    "admin.hide_secret": "Jeg har tatt vare på det – skjul",
    "admin.shown_once": "Vises bare nå: det lagres ikke i klartekst og kan ikke hentes igjen.",
    "admin.confirm": "Bekreft: {what}",
    "role.nurse": "Sykepleier", "role.coordinator": "Koordinator", "role.admin": "Administrator",
    "role.integration": "Integrasjon",
    "user.new": "Ny bruker", "user.username": "Brukernavn", "user.display_name": "Fullt navn",
    "user.roles": "Roller", "user.teams": "Team", "user.password": "Startpassord (minst 12 tegn)",
    "user.create": "Opprett bruker", "user.created": "Brukeren {name} er opprettet.",
    "user.disabled": "Deaktivert", "user.active": "Aktiv",
    "user.edit": "Endre roller og team for {name}", "user.save": "Lagre endringer for {name}",
    "user.saved": "Endringene for {name} er lagret. Hun må logge inn igjen.",
    "user.disable": "Deaktiver {name}", "user.enable": "Aktiver {name}",
    "user.disabled_done": "{name} er deaktivert og logget ut overalt.", "user.enabled_done": "{name} er aktivert igjen.",
    "user.reset": "Nytt passord for {name}",
    "user.reset_done": "Midlertidig passord for {name}: ",
    "team.new": "Nytt team", "team.name": "Navn på teamet", "team.create": "Opprett team",
    "team.created": "Teamet {name} er opprettet.", "team.rename_label": "Navn på {name}",
    "team.rename": "Gi nytt navn", "team.renamed": "Teamet heter nå {name}.",
    "team.delete": "Slett {name}", "team.deleted": "Teamet {name} er slettet.",
    "patient.new": "Registrer en pasient", "patient.national_id": "Fødselsnummer, D-nummer eller FH-nummer",
    "patient.national_id_hint": "11 siffer. Nummeret kan ikke endres etterpå.",
    "patient.given_name": "Fornavn", "patient.family_name": "Etternavn", "patient.team": "Team",
    "patient.no_team": "Ikke noe team ennå",
    "patient.register": "Registrer pasienten", "patient.registered": "{name} er registrert.",
    "patient.exists": "En pasient med dette nummeret er allerede registrert.",
    "patient.team_of": "Team: {team}", "patient.without_team": "Ikke noe team: ingen sykepleier ser pasienten.",
    "patient.discharged": "Utskrevet {date}",
    "patient.edit": "Endre registreringen for {name}", "patient.save": "Lagre endringer for {name}",
    "patient.saved": "Endringene for {name} er lagret.",
    "gateway.new": "Ny hjemmeenhet", "gateway.id": "Id (også MQTT-brukernavn)",
    "gateway.id_hint": "2–63 små bokstaver, tall og bindestrek, f.eks. gw-oslo-0042.",
    "gateway.patient": "Pasient", "gateway.no_patient": "Ingen ennå",
    "gateway.provision": "Opprett hjemmeenhet",
    "gateway.password_for": "Passord for hjemmeenheten {id} (MQTT-bruker {id}): ",
    "gateway.put_in_edge": "Legg det i hjemmeenhetens edge.toml nå.",
    "gateway.online": "Tilkoblet", "gateway.offline": "Frakoblet", "gateway.unknown": "Ikke hørt fra ennå",
    "gateway.status_at": "siste status {time}", "gateway.outbox": "{count} målinger venter i utboksen",
    "gateway.outbox_unknown": "utboks ukjent",
    "gateway.rotate": "Nytt passord for {id}", "gateway.delete": "Fjern {id}",
    "gateway.deleted": "Hjemmeenheten {id} er fjernet.",
    "gateway.for": "Hos {name}",
    "device.new": "Par en enhet", "device.id": "Enhets-ID (BLE-adresse eller serienummer)",
    "device.kind": "Type", "device.patient": "Pasient", "device.gateway": "Hjemmeenhet",
    "device.pair": "Par enheten", "device.paired": "{id} er paret.",
    "device.unpair": "Fjern paring av {id}", "device.unpaired": "Paringen av {id} er fjernet.",
    "device.on": "{kind} · {patient} · {gateway}",
    "device.names": "Navn på enhetene i hjemmene",
    "device.names_intro": "Sykepleieren ser navnet foran rom og type, for eksempel «Ytterdør». Tomt felt: rom og type.",
    "device.name": "Navn på {id}",
    "device.save_name": "Lagre navnet",
    "device.named": "{id} heter nå «{name}».",
    "device.unnamed": "{id} har ikke lenger eget navn.",
    "kind.blood_pressure": "Blodtrykksmåler", "kind.pulse_oximeter": "Pulsoksymeter",
    "kind.thermometer": "Termometer", "kind.weight_scale": "Vekt", "kind.glucose_meter": "Blodsukkermåler",
    "audit.filters": "Filtrer", "audit.actor": "Hvem (f.eks. user:2)", "audit.action": "Handling (f.eks. edit_care_plan)",
    "audit.patient": "Pasient-ID", "audit.outcome": "Utfall", "audit.outcome.any": "Alle",
    "audit.outcome.allowed": "Tillatt", "audit.outcome.denied": "Avvist",
    "audit.since": "Fra", "audit.until": "Til", "audit.show": "Vis",
    "audit.entries": "{count} oppføringer (nyeste først)",
    "audit.patient_n": "pasient {id}",
    "fhir.intro": "Dokumentene om lukkede alarmer går til kommunens journal (Journalføringstjenesten eller VKP) og målingene til Pasientens måledata, som FHIR. Et dokument mottakeren avviser, venter her til du har rettet årsaken og sender det igjen.",
    "fhir.none": "Ingen mottakere har fått dokumenter ennå.",
    "fhir.kind.jft": "Journalføringstjenesten", "fhir.kind.vkp": "Velferdsteknologisk knutepunkt",
    "fhir.kind.pmd": "Pasientens måledata",
    "fhir.counts": "{pending} venter · {accepted} under behandling · {journaled} levert · {parked} avvist",
    "fhir.oldest": "Eldste ventende lagt i køen {time}", "fhir.last_success": "Sist levert {time}",
    "fhir.last_error": "Siste feil {time}: ",
    "fhir.parked": "Avviste dokumenter", "fhir.parked_none": "Ingen avviste dokumenter.",
    "fhir.waiting": "Venter på å bli sendt", "fhir.waiting_none": "Ingen dokumenter venter.",
    "fhir.alarm": "Alarm {id}", "fhir.measurements": "Målinger",
    "fhir.parked_at": "avvist {time}", "fhir.attempts": "{count} forsøk",
    "fhir.next": "neste forsøk {time}",
    "fhir.outcome": "Mottakerens svar", "fhir.no_outcome": "Årsak: ",
    "fhir.severity.fatal": "alvorlig feil", "fhir.severity.error": "feil",
    "fhir.severity.warning": "advarsel", "fhir.severity.information": "informasjon",
    "fhir.requeue": "Send {what} igjen", "fhir.requeued": "{what} er lagt i køen igjen.",
    "fhir.home_parked": "{count} avviste dokumenter venter på deg",
  },
  en: {
    "nav.admin": "Administration",
    "admin.title": "Administration",
    "admin.intro": "Users, teams, patients, home gateways, devices, record journaling and the audit log of your municipality.",
    "admin.sections": "Administration",
    "admin.users": "Users", "admin.teams": "Teams", "admin.patients": "Patients", "admin.gateways": "Home gateways",
    "admin.devices": "Devices", "admin.fhir": "Record journaling", "admin.audit": "Audit log",
    "admin.retention": "Retention",
    "admin.count": "{count} registered",
    "admin.loading": "Loading …",
    "admin.failed": "Not done: {detail}",
    "admin.invalid": "Not saved: correct the marked fields.",
    "admin.none": "None yet.",
    "admin.hide_secret": "I have kept it – hide",
    "admin.shown_once": "Shown only now: it is not stored in clear text and cannot be fetched again.",
    "admin.confirm": "Confirm: {what}",
    "role.nurse": "Nurse", "role.coordinator": "Coordinator", "role.admin": "Administrator",
    "role.integration": "Integration",
    "user.new": "New user", "user.username": "User name", "user.display_name": "Full name",
    "user.roles": "Roles", "user.teams": "Teams", "user.password": "Initial password (at least 12 characters)",
    "user.create": "Create user", "user.created": "The user {name} was created.",
    "user.disabled": "Disabled", "user.active": "Active",
    "user.edit": "Change roles and teams of {name}", "user.save": "Save changes for {name}",
    "user.saved": "The changes for {name} are saved. She must sign in again.",
    "user.disable": "Disable {name}", "user.enable": "Enable {name}",
    "user.disabled_done": "{name} is disabled and signed out everywhere.", "user.enabled_done": "{name} is enabled again.",
    "user.reset": "New password for {name}",
    "user.reset_done": "Temporary password for {name}: ",
    "team.new": "New team", "team.name": "Name of the team", "team.create": "Create team",
    "team.created": "The team {name} was created.", "team.rename_label": "Name of {name}",
    "team.rename": "Rename", "team.renamed": "The team is now called {name}.",
    "team.delete": "Delete {name}", "team.deleted": "The team {name} was deleted.",
    "patient.new": "Register a patient", "patient.national_id": "National identity number, D number or FH number",
    "patient.national_id_hint": "11 digits. The number cannot be changed afterwards.",
    "patient.given_name": "Given name", "patient.family_name": "Family name", "patient.team": "Team",
    "patient.no_team": "No team yet",
    "patient.register": "Register the patient", "patient.registered": "{name} is registered.",
    "patient.exists": "A patient with this number is already registered.",
    "patient.team_of": "Team: {team}", "patient.without_team": "No team: no nurse sees the patient.",
    "patient.discharged": "Discharged {date}",
    "patient.edit": "Change the registration of {name}", "patient.save": "Save changes for {name}",
    "patient.saved": "The changes for {name} are saved.",
    "gateway.new": "New home gateway", "gateway.id": "Id (also the MQTT user name)",
    "gateway.id_hint": "2–63 lower-case letters, digits and hyphens, e.g. gw-oslo-0042.",
    "gateway.patient": "Patient", "gateway.no_patient": "None yet",
    "gateway.provision": "Create home gateway",
    "gateway.password_for": "Password of the home gateway {id} (MQTT user {id}): ",
    "gateway.put_in_edge": "Put it in the home gateway's edge.toml now.",
    "gateway.online": "Online", "gateway.offline": "Offline", "gateway.unknown": "Not heard from yet",
    "gateway.status_at": "last status {time}", "gateway.outbox": "{count} readings waiting in the outbox",
    "gateway.outbox_unknown": "outbox unknown",
    "gateway.rotate": "New password for {id}", "gateway.delete": "Remove {id}",
    "gateway.deleted": "The home gateway {id} was removed.",
    "gateway.for": "At {name}",
    "device.new": "Pair a device", "device.id": "Device id (BLE address or serial)",
    "device.kind": "Kind", "device.patient": "Patient", "device.gateway": "Home gateway",
    "device.pair": "Pair the device", "device.paired": "{id} is paired.",
    "device.unpair": "Unpair {id}", "device.unpaired": "{id} is unpaired.",
    "device.on": "{kind} · {patient} · {gateway}",
    "device.names": "Names of the devices in the homes",
    "device.names_intro": "The nurse sees the name before the room and kind, e.g. “Front door”. Empty: room and kind.",
    "device.name": "Name of {id}",
    "device.save_name": "Save the name",
    "device.named": "{id} is now called “{name}”.",
    "device.unnamed": "{id} has no name of its own any more.",
    "kind.blood_pressure": "Blood pressure monitor", "kind.pulse_oximeter": "Pulse oximeter",
    "kind.thermometer": "Thermometer", "kind.weight_scale": "Scale", "kind.glucose_meter": "Glucose meter",
    "audit.filters": "Filter", "audit.actor": "Who (e.g. user:2)", "audit.action": "Action (e.g. edit_care_plan)",
    "audit.patient": "Patient id", "audit.outcome": "Outcome", "audit.outcome.any": "Any",
    "audit.outcome.allowed": "Allowed", "audit.outcome.denied": "Denied",
    "audit.since": "From", "audit.until": "To", "audit.show": "Show",
    "audit.entries": "{count} entries (newest first)",
    "audit.patient_n": "patient {id}",
    "fhir.intro": "The documents of closed alarms go to the municipality's record (Journalføringstjenesten or VKP) and the measurements to Pasientens måledata, as FHIR. A document the receiver refuses waits here until you have fixed the cause and send it again.",
    "fhir.none": "No receiver has been sent documents yet.",
    "fhir.kind.jft": "Journalføringstjenesten", "fhir.kind.vkp": "Velferdsteknologisk knutepunkt",
    "fhir.kind.pmd": "Pasientens måledata",
    "fhir.counts": "{pending} waiting · {accepted} being processed · {journaled} delivered · {parked} refused",
    "fhir.oldest": "Oldest waiting queued {time}", "fhir.last_success": "Last delivered {time}",
    "fhir.last_error": "Last error {time}: ",
    "fhir.parked": "Refused documents", "fhir.parked_none": "No refused documents.",
    "fhir.waiting": "Waiting to be sent", "fhir.waiting_none": "No documents waiting.",
    "fhir.alarm": "Alarm {id}", "fhir.measurements": "Measurements",
    "fhir.parked_at": "refused {time}", "fhir.attempts": "{count} attempts",
    "fhir.next": "next attempt {time}",
    "fhir.outcome": "The receiver's answer", "fhir.no_outcome": "Cause: ",
    "fhir.severity.fatal": "fatal error", "fhir.severity.error": "error",
    "fhir.severity.warning": "warning", "fhir.severity.information": "information",
    "fhir.requeue": "Send {what} again", "fhir.requeued": "{what} is queued again.",
    "fhir.home_parked": "{count} refused documents wait for you",
  },
});

const R = "api/v1/registry";
const F = "api/v1/fhir";
const SECTIONS = ["users", "teams", "patients", "gateways", "devices", "fhir", "audit", "retention"];
const COUNTED = ["users", "teams", "gateways", "devices"];
/** Where each list is read (by default the registry's list of that name). */
const PATHS = {
  teams: `${R}/care-teams`,
  tenant: `${R}/tenant`,
  fhir: `${F}/destinations`,
  parked: `${F}/messages?state=parked&limit=200`,
  waiting: `${F}/messages?state=pending&limit=200`,
};
const ROLES = ["nurse", "coordinator", "admin"];
const KINDS = { blood_pressure: 528391, pulse_oximeter: 528388, thermometer: 528392, weight_scale: 528399, glucose_meter: 528401 };

const lists = {}; // "users" | "teams" | "gateways" | "devices" | "patients" | "audit" → rows
const forms = {}; // form name → { field: value }
let errors = {}; // "form.field" → the platform's message
let notice = null; // { text, problem }
let secret = null; // { label, value, note }: a password shown once
let confirming = null; // the key of a destructive button pressed once
let loading = new Set();
// The opening of the screen she has open (docs/auth.md, "What the audit log records"): its
// loads, the reloads after a change included, are audited once per patient shown; opening
// another screen (or this one again) is a new opening.
let opening = null; // { screen, view }

// Roles of the signed-in user; after her session ended (no token), those she had, so that the
// last screen stays what it was under the notice.
let knownRoles = [];
const roles = () => {
  const current = api.claims()?.roles;
  if (current) knownRoles = current;
  return knownRoles;
};
export const isAdmin = () => roles().includes("admin");
export const caresForPatients = () => roles().some((r) => r === "nurse" || r === "coordinator");

/** Show the menu entries this user can use (the care ones to nurses and coordinators). */
export function showNavFor(signedIn) {
  for (const item of document.querySelectorAll("#nav [data-route]")) {
    const route = item.dataset.route;
    const allowed = route === "admin" ? isAdmin() : route === "settings" || caresForPatients();
    item.closest("li").hidden = !signedIn || !allowed;
  }
}

export const form = (name) => (forms[name] ??= {});
const errorOf = (key) => errors[key] ?? null;
const patientName = (id) => {
  const p = (lists.patients ?? []).find((x) => x.id === id);
  return p ? `${p.family_name}, ${p.given_name}` : id === null || id === undefined ? "–" : `#${id}`;
};
const teamName = (id) => (lists.teams ?? []).find((x) => x.id === id)?.name ?? `#${id}`;

/** The view opening of the screen in `ctx` (admin_users, admin_patients, …; `admin` for home). */
function viewOf(ctx) {
  const screen = ctx.route.section ? `admin_${ctx.route.section}` : "admin";
  if (opening?.screen !== screen) opening = { screen, view: api.openView(screen) };
  return opening.view;
}

export function load(ctx, kind, query = "") {
  // Signed out (the session ended): the lists she had stay as they were.
  if (lists[kind] !== undefined || loading.has(kind) || !api.token()) return;
  loading.add(kind);
  const path = kind === "audit" ? `${R}/audit?limit=200${query}` : PATHS[kind] ?? `${R}/${kind}`;
  api.get(path, { view: viewOf(ctx) }).then((rows) => { lists[kind] = rows; }, (error) => {
    if (error instanceof api.SignedOut) { ctx.failed(error); return; }
    lists[kind] = [];
    notice = { text: t("admin.failed", { detail: error.message }), problem: true };
  }).finally(() => { loading.delete(kind); ctx.render(); });
}

function reload(ctx, ...kinds) {
  for (const kind of kinds) delete lists[kind];
  for (const kind of kinds) load(ctx, kind, kind === "audit" ? auditQuery() : "");
}

/** Do one change at the platform; on success say `done`, reload `kinds` and run `after`. A
 * refusal is shown next to the fields it names; `conflict` ({ field, text }): the field a 409
 * (already exists) is about. Answers "done", "invalid" (refused fields, marked) or "failed". */
export async function change(ctx, { name, method, path, body, done, kinds = [], after, conflict }) {
  notice = null;
  let outcome = "failed";
  try {
    const { data } = await api.request(path, { method, body });
    errors = Object.fromEntries(Object.entries(errors).filter(([key]) => !key.startsWith(`${name}.`)));
    notice = { text: typeof done === "function" ? done(data) : done, problem: false };
    after?.(data);
    reload(ctx, ...kinds);
    outcome = "done";
  } catch (error) {
    if (error instanceof api.SignedOut) { ctx.failed(error); return; }
    const found = error.status === 422 ? fieldErrors(error.problem)
      : error.status === 409 && conflict ? { [conflict.field]: conflict.text } : {};
    errors = Object.fromEntries(Object.entries(found).map(([key, message]) => [`${name}.${key}`, message]));
    if (Object.keys(found).length) outcome = "invalid";
    notice = { text: outcome === "invalid" ? t("admin.invalid") : t("admin.failed", { detail: error.message }), problem: true };
  }
  confirming = null;
  ctx.render();
  const invalid = document.querySelector("main [aria-invalid=true]");
  (invalid ?? document.getElementById("admin-notice"))?.focus();
  return outcome;
}

/** Say `text` in the notice line (a problem: as an alert). */
export function tell(text, { problem = false } = {}) {
  notice = { text, problem };
}

// --- building blocks ---------------------------------------------------------------------------

export function input(name, field, label, { type = "text", hint = null, autocomplete = "off", required = false, inputmode = null } = {}) {
  const id = `${name}-${field}`;
  const key = `${name}.${field}`;
  const described = [hint ? `${id}-hint` : null, `${id}-problem`].filter(Boolean).join(" ");
  return h("div", { class: "field" },
    h("label", { for: id }, label),
    h("input", {
      id, type, autocomplete, required, inputmode, "data-key": id, value: form(name)[field] ?? "",
      "aria-invalid": errorOf(key) ? "true" : null, "aria-describedby": described,
      oninput: (e) => { form(name)[field] = e.target.value; },
    }),
    hint ? h("p", { id: `${id}-hint`, class: "hint" }, hint) : null,
    h("p", { id: `${id}-problem`, class: "problem field-problem" }, errorOf(key) ?? ""));
}

function choice(name, field, label, options) {
  const id = `${name}-${field}`;
  const key = `${name}.${field}`;
  const current = form(name)[field] ?? options[0]?.[0] ?? "";
  form(name)[field] = current;
  return h("div", { class: "field" },
    h("label", { for: id }, label),
    h("select", {
      id, "data-key": id, "aria-invalid": errorOf(key) ? "true" : null, "aria-describedby": `${id}-problem`,
      onchange: (e) => { form(name)[field] = e.target.value; },
    }, options.map(([value, text]) => {
      const option = h("option", { value }, text);
      option.selected = value === current;
      return option;
    })),
    h("p", { id: `${id}-problem`, class: "problem field-problem" }, errorOf(key) ?? ""));
}

function checks(name, field, legend, options, initial = []) {
  const chosen = (form(name)[field] ??= new Set(initial));
  const key = `${name}.${field}`;
  return h("fieldset", { class: "days", "aria-describedby": `${name}-${field}-problem` },
    h("legend", {}, legend),
    options.map(([value, text]) => h("label", { class: "check" },
      h("input", {
        type: "checkbox", "data-key": `${name}-${field}-${value}`, checked: chosen.has(value),
        onchange: (e) => { if (e.target.checked) chosen.add(value); else chosen.delete(value); },
      }), " ", text)),
    h("p", { id: `${name}-${field}-problem`, class: "problem field-problem" }, errorOf(key) ?? ""));
}

/** A button that asks once more before it removes something. */
function removeButton(ctx, key, label, run) {
  const armed = confirming === key;
  return h("button", {
    type: "button", class: armed ? "danger" : "quiet", "data-key": key,
    onclick: () => {
      if (!armed) { confirming = key; ctx.render(); return; }
      run();
    },
  }, armed ? t("admin.confirm", { what: label }) : label);
}

function noticeLine() {
  return h("p", {
    id: "admin-notice", "data-key": "admin-notice", tabindex: "-1", class: notice?.problem ? "problem" : "saved",
    role: notice?.problem ? "alert" : "status",
  }, notice?.text ?? "");
}

function secretBox(ctx) {
  if (!secret) return null;
  return h("div", { class: "secret", role: "status" },
    h("p", {}, secret.label, h("code", { "data-secret": "" }, secret.value)),
    h("p", {}, [secret.note, t("admin.shown_once")].filter(Boolean).join(" ")),
    h("button", {
      type: "button", "data-key": "hide-secret",
      onclick: () => { secret = null; ctx.render(); document.getElementById("view-title")?.focus(); },
    }, t("admin.hide_secret")));
}

function sectionNav(current) {
  return h("nav", { class: "admin-sections", "aria-label": t("admin.sections") },
    h("ul", {}, SECTIONS.map((s) => h("li", {},
      h("a", { href: `#/admin/${s}`, "aria-current": s === current ? "page" : null, "data-key": `section-${s}` },
        t(`admin.${s}`))))));
}

export function page(ctx, section, ...content) {
  return [
    h("h1", { tabindex: "-1", id: "view-title" }, section ? t(`admin.${section}`) : t("admin.title")),
    sectionNav(section),
    noticeLine(),
    secretBox(ctx),
    ...content,
  ];
}

export const pending = (...kinds) => kinds.some((k) => lists[k] === undefined);
export const loadingLine = () => h("p", { role: "status" }, t("admin.loading"));
export const listed = (kind) => lists[kind];

// --- the sections ------------------------------------------------------------------------------

function home(ctx) {
  for (const kind of [...COUNTED, "fhir"]) load(ctx, kind);
  const parked = (lists.fhir ?? []).reduce((sum, d) => sum + d.parked, 0);
  const summary = (s) => {
    if (s === "fhir") return parked ? h("p", { class: "problem" }, t("fhir.home_parked", { count: parked })) : null;
    return COUNTED.includes(s) && lists[s] ? h("p", {}, t("admin.count", { count: lists[s].length })) : null;
  };
  return page(ctx, null,
    h("p", { class: "intro" }, t("admin.intro")),
    h("ul", { class: "admin-cards" }, SECTIONS.map((s) => h("li", {},
      h("a", { href: `#/admin/${s}` }, h("strong", {}, t(`admin.${s}`))), summary(s)))));
}

function usersSection(ctx) {
  load(ctx, "users");
  load(ctx, "teams");
  if (pending("users", "teams")) return page(ctx, "users", loadingLine());
  const roleOptions = ROLES.map((r) => [r, t(`role.${r}`)]);
  const teamOptions = lists.teams.map((team) => [team.id, team.name]);
  const create = h("form", {
    class: "admin-form", novalidate: true,
    onsubmit: (e) => {
      e.preventDefault();
      const f = form("new-user");
      change(ctx, {
        name: "new-user", method: "POST", path: `${R}/users`, kinds: ["users"],
        body: {
          username: (f.username ?? "").trim(), display_name: (f.display_name ?? "").trim(),
          roles: [...(f.roles ?? [])], care_team_ids: [...(f.care_team_ids ?? [])], password: f.password ?? "",
        },
        done: (made) => t("user.created", { name: made.display_name }),
        after: () => { forms["new-user"] = {}; },
      });
    },
  },
  h("fieldset", { class: "plan-section" },
    h("legend", {}, h("h2", {}, t("user.new"))),
    input("new-user", "username", t("user.username")),
    input("new-user", "display_name", t("user.display_name")),
    checks("new-user", "roles", t("user.roles"), roleOptions, ["nurse"]),
    checks("new-user", "care_team_ids", t("user.teams"), teamOptions),
    input("new-user", "password", t("user.password"), { type: "password", autocomplete: "new-password" }),
    h("button", { type: "submit", class: "primary", "data-key": "create-user" }, t("user.create"))));
  const items = lists.users.map((u) => {
    const name = u.display_name;
    const edit = `user-${u.id}`;
    return h("li", { class: "admin-item", "data-user": u.username },
      h("h2", {}, name),
      h("p", {}, [u.username, u.roles.map((r) => t(`role.${r}`)).join(", "),
        u.care_team_ids.map(teamName).join(", ") || null, t(u.disabled ? "user.disabled" : "user.active")]
        .filter(Boolean).join(" · ")),
      h("details", { "data-details": edit },
        h("summary", {}, t("user.edit", { name })),
        h("form", {
          class: "admin-form", novalidate: true,
          onsubmit: (e) => {
            e.preventDefault();
            const f = form(edit);
            change(ctx, {
              name: edit, method: "PATCH", path: `${R}/users/${u.id}`, kinds: ["users"],
              body: { roles: [...f.roles], care_team_ids: [...f.care_team_ids] },
              done: t("user.saved", { name }),
            });
          },
        },
        checks(edit, "roles", t("user.roles"), roleOptions, u.roles),
        checks(edit, "care_team_ids", t("user.teams"), teamOptions, u.care_team_ids),
        h("button", { type: "submit", "data-key": `${edit}-save` }, t("user.save", { name })))),
      h("p", { class: "actions" },
        h("button", {
          type: "button", "data-key": `${edit}-toggle`,
          onclick: () => change(ctx, {
            name: edit, method: "PATCH", path: `${R}/users/${u.id}`, body: { disabled: !u.disabled }, kinds: ["users"],
            done: t(u.disabled ? "user.enabled_done" : "user.disabled_done", { name }),
          }),
        }, t(u.disabled ? "user.enable" : "user.disable", { name })),
        h("button", {
          type: "button", "data-key": `${edit}-reset`,
          onclick: () => change(ctx, {
            name: edit, method: "POST", path: `${R}/users/${u.id}/password`,
            done: t("user.reset", { name }),
            after: (answer) => { secret = { label: t("user.reset_done", { name }), value: answer.password }; },
          }),
        }, t("user.reset", { name }))));
  });
  return page(ctx, "users", create, items.length ? h("ul", { class: "admin-list" }, items) : h("p", {}, t("admin.none")));
}

function teamsSection(ctx) {
  load(ctx, "teams");
  if (pending("teams")) return page(ctx, "teams", loadingLine());
  const create = h("form", {
    class: "admin-form", novalidate: true,
    onsubmit: (e) => {
      e.preventDefault();
      const name = (form("new-team").name ?? "").trim();
      change(ctx, {
        name: "new-team", method: "POST", path: `${R}/care-teams`, body: { name }, kinds: ["teams"],
        done: t("team.created", { name }), after: () => { forms["new-team"] = {}; },
      });
    },
  },
  h("fieldset", { class: "plan-section" },
    h("legend", {}, h("h2", {}, t("team.new"))),
    input("new-team", "name", t("team.name")),
    h("button", { type: "submit", class: "primary", "data-key": "create-team" }, t("team.create"))));
  const items = lists.teams.map((team) => {
    const name = `team-${team.id}`;
    form(name).name ??= team.name;
    return h("li", { class: "admin-item" },
      h("form", {
        class: "inline-form", novalidate: true,
        onsubmit: (e) => {
          e.preventDefault();
          const renamed = (form(name).name ?? "").trim();
          change(ctx, {
            name, method: "PUT", path: `${R}/care-teams/${team.id}`, body: { name: renamed }, kinds: ["teams"],
            done: t("team.renamed", { name: renamed }),
          });
        },
      },
      input(name, "name", t("team.rename_label", { name: team.name })),
      h("button", { type: "submit", "data-key": `${name}-rename` }, t("team.rename"))),
      removeButton(ctx, `${name}-delete`, t("team.delete", { name: team.name }), () => change(ctx, {
        name, method: "DELETE", path: `${R}/care-teams/${team.id}`, kinds: ["teams", "users"],
        done: t("team.deleted", { name: team.name }), after: () => { delete forms[name]; },
      })));
  });
  return page(ctx, "teams", create, items.length ? h("ul", { class: "admin-list" }, items) : h("p", {}, t("admin.none")));
}

const fullName = (p) => `${p.family_name}, ${p.given_name}`;

function patientsSection(ctx) {
  load(ctx, "patients");
  load(ctx, "teams");
  if (pending("patients", "teams")) return page(ctx, "patients", loadingLine());
  const teams = [["", t("patient.no_team")], ...lists.teams.map((team) => [String(team.id), team.name])];
  const teamOf = (f) => (f.care_team_id ? Number(f.care_team_id) : null);
  const names = (f) => ({ family_name: (f.family_name ?? "").trim(), given_name: (f.given_name ?? "").trim() });
  const create = h("form", {
    class: "admin-form", novalidate: true,
    onsubmit: (e) => {
      e.preventDefault();
      const f = form("new-patient");
      change(ctx, {
        name: "new-patient", method: "POST", path: `${R}/patients`, kinds: ["patients"],
        // "010190 12345" as written on a card is the same number.
        body: { national_id: (f.national_id ?? "").replace(/\s/g, ""), ...names(f), care_team_id: teamOf(f) },
        conflict: { field: "national_id", text: t("patient.exists") },
        done: (made) => t("patient.registered", { name: fullName(made) }),
        after: () => { forms["new-patient"] = {}; },
      });
    },
  },
  h("fieldset", { class: "plan-section" },
    h("legend", {}, h("h2", {}, t("patient.new"))),
    input("new-patient", "national_id", t("patient.national_id"), { hint: t("patient.national_id_hint") }),
    input("new-patient", "given_name", t("patient.given_name")),
    input("new-patient", "family_name", t("patient.family_name")),
    choice("new-patient", "care_team_id", t("patient.team"), teams),
    h("button", { type: "submit", class: "primary", "data-key": "register-patient" }, t("patient.register"))));
  const items = lists.patients.map((p) => {
    const name = fullName(p);
    const edit = `patient-${p.id}`;
    const f = form(edit);
    f.given_name ??= p.given_name;
    f.family_name ??= p.family_name;
    f.care_team_id ??= p.care_team_id === null ? "" : String(p.care_team_id);
    gpPrefill(f, p);
    return h("li", { class: "admin-item", "data-patient": p.id },
      h("h2", {}, name),
      h("p", {}, [p.national_id,
        p.care_team_id === null ? t("patient.without_team") : t("patient.team_of", { team: teamName(p.care_team_id) }),
        p.discharged_at ? t("patient.discharged", { date: clock(p.discharged_at, { date: true }) }) : null,
      ].filter(Boolean).join(" · ")),
      h("p", {}, gpLine(p)),
      h("details", { "data-details": edit, open: ctx.isOpen(edit, false) },
        h("summary", {}, t("patient.edit", { name })),
        h("form", {
          class: "admin-form", novalidate: true,
          onsubmit: (e) => {
            e.preventDefault();
            const changed = { ...names(f), care_team_id: teamOf(f), ...gpBody(f) };
            change(ctx, {
              name: edit, method: "PATCH", path: `${R}/patients/${p.id}`, body: changed, kinds: ["patients"],
              done: t("patient.saved", { name: `${changed.family_name}, ${changed.given_name}` }),
              after: () => { delete forms[edit]; },
            });
          },
        },
        input(edit, "given_name", t("patient.given_name")),
        input(edit, "family_name", t("patient.family_name")),
        choice(edit, "care_team_id", t("patient.team"), teams),
        gpFields(edit),
        h("button", { type: "submit", "data-key": `${edit}-save` }, t("patient.save", { name })))),
      patientPrivacy(ctx, p));
  });
  return page(ctx, "patients", create, items.length ? h("ul", { class: "admin-list" }, items) : h("p", {}, t("admin.none")));
}

function gatewayPassword(answer) {
  secret = { label: t("gateway.password_for", { id: answer.broker_username }), value: answer.broker_password, note: t("gateway.put_in_edge") };
}

function gatewaysSection(ctx) {
  load(ctx, "gateways");
  load(ctx, "patients");
  if (pending("gateways", "patients")) return page(ctx, "gateways", loadingLine());
  const patients = [["", t("gateway.no_patient")], ...lists.patients.map((p) => [String(p.id), `${p.family_name}, ${p.given_name}`])];
  const create = h("form", {
    class: "admin-form", novalidate: true,
    onsubmit: (e) => {
      e.preventDefault();
      const f = form("new-gateway");
      change(ctx, {
        name: "new-gateway", method: "POST", path: `${R}/gateways`, kinds: ["gateways"],
        body: { id: (f.id ?? "").trim(), patient_id: f.patient_id ? Number(f.patient_id) : null },
        done: (answer) => t("gateway.password_for", { id: answer.id }).replace(/: $/, "."),
        after: (answer) => { gatewayPassword(answer); forms["new-gateway"] = {}; },
      });
    },
  },
  h("fieldset", { class: "plan-section" },
    h("legend", {}, h("h2", {}, t("gateway.new"))),
    input("new-gateway", "id", t("gateway.id"), { hint: t("gateway.id_hint") }),
    choice("new-gateway", "patient_id", t("gateway.patient"), patients),
    h("button", { type: "submit", class: "primary", "data-key": "create-gateway" }, t("gateway.provision"))));
  const items = lists.gateways.map((g) => {
    const state = g.online === null || g.online === undefined ? "unknown" : g.online ? "online" : "offline";
    return h("li", { class: `admin-item gateway-${state}`, "data-gateway": g.id },
      h("h2", {}, g.id),
      h("p", {}, [
        h("strong", {}, t(`gateway.${state}`)),
        g.status_at ? ` · ${t("gateway.status_at", { time: clock(g.status_at, { date: true }) })}` : "",
        ` · ${g.outbox_depth === null || g.outbox_depth === undefined ? t("gateway.outbox_unknown") : t("gateway.outbox", { count: g.outbox_depth })}`,
      ]),
      h("p", {}, t("gateway.for", { name: patientName(g.patient_id) })),
      h("p", { class: "actions" },
        h("button", {
          type: "button", "data-key": `gateway-${g.id}-rotate`,
          onclick: () => change(ctx, {
            name: `gateway-${g.id}`, method: "POST", path: `${R}/gateways/${g.id}/password`,
            done: t("gateway.rotate", { id: g.id }), after: gatewayPassword,
          }),
        }, t("gateway.rotate", { id: g.id })),
        removeButton(ctx, `gateway-${g.id}-delete`, t("gateway.delete", { id: g.id }), () => change(ctx, {
          name: `gateway-${g.id}`, method: "DELETE", path: `${R}/gateways/${g.id}`, kinds: ["gateways"],
          done: t("gateway.deleted", { id: g.id }),
        }))));
  });
  return page(ctx, "gateways", create, items.length ? h("ul", { class: "admin-list" }, items) : h("p", {}, t("admin.none")));
}

function devicesSection(ctx) {
  for (const kind of ["devices", "patients", "gateways", "home-devices"]) load(ctx, kind);
  if (pending("devices", "patients", "gateways", "home-devices")) return page(ctx, "devices", loadingLine());
  const kindName = (profile) => {
    const kind = Object.entries(KINDS).find(([, code]) => code === profile)?.[0];
    return kind ? t(`kind.${kind}`) : String(profile);
  };
  const create = h("form", {
    class: "admin-form", novalidate: true,
    onsubmit: (e) => {
      e.preventDefault();
      const f = form("new-device");
      const id = (f.device_id ?? "").trim();
      change(ctx, {
        name: "new-device", method: "POST", path: `${R}/devices`, kinds: ["devices"],
        body: { device_id: id, kind: f.kind, patient_id: Number(f.patient_id), gateway_id: f.gateway_id },
        done: t("device.paired", { id: id.toUpperCase() }), after: () => { forms["new-device"] = {}; },
      });
    },
  },
  h("fieldset", { class: "plan-section" },
    h("legend", {}, h("h2", {}, t("device.new"))),
    input("new-device", "device_id", t("device.id")),
    choice("new-device", "kind", t("device.kind"), Object.keys(KINDS).map((k) => [k, t(`kind.${k}`)])),
    choice("new-device", "patient_id", t("device.patient"), lists.patients.map((p) => [String(p.id), `${p.family_name}, ${p.given_name}`])),
    choice("new-device", "gateway_id", t("device.gateway"), lists.gateways.map((g) => [g.id, g.id])),
    h("button", { type: "submit", class: "primary", "data-key": "pair-device" }, t("device.pair"))));
  const items = lists.devices.map((d) => h("li", { class: "admin-item", "data-device": d.device_id },
    h("h2", {}, d.device_id),
    h("p", {}, t("device.on", { kind: kindName(d.profile), patient: patientName(d.patient_id), gateway: d.gateway_id })),
    removeButton(ctx, `device-${d.device_id}-unpair`, t("device.unpair", { id: d.device_id }), () => change(ctx, {
      name: "device", method: "DELETE", path: `${R}/devices/${encodeURIComponent(d.device_id)}`, kinds: ["devices"],
      done: t("device.unpaired", { id: d.device_id }),
    }))));
  return page(ctx, "devices", create, items.length ? h("ul", { class: "admin-list" }, items) : h("p", {}, t("admin.none")),
    deviceNames(ctx, kindName));
}

/** Each device of the homes with a field for its name ("Ytterdør"), as the nurse will see it. */
function deviceNames(ctx, kindName) {
  const items = lists["home-devices"].map((d) => {
    const name = `name-${d.gateway_id}-${d.device_id}`.replace(/[^\w-]/g, "_");
    form(name).name ??= d.name ?? "";
    const place = d.sensor_kind
      ? [d.room, t(`place.${d.sensor_kind}`)].filter(Boolean).join(" – ")
      : kindName(Number(d.profile));
    const path = `${R}/gateways/${encodeURIComponent(d.gateway_id)}/devices/${encodeURIComponent(d.device_id)}/name`;
    return h("li", { class: "admin-item", "data-home-device": d.device_id },
      h("h3", {}, d.name || place),
      h("p", {}, t("device.on", { kind: place, patient: patientName(d.patient_id), gateway: d.gateway_id }), " · ",
        h("span", { class: "device-id" }, d.device_id)),
      h("form", {
        class: "admin-form", novalidate: true,
        onsubmit: (e) => {
          e.preventDefault();
          const value = (form(name).name ?? "").trim();
          change(ctx, {
            name, method: "PUT", path, body: { name: value || null }, kinds: ["home-devices"],
            done: value ? t("device.named", { id: d.device_id, name: value }) : t("device.unnamed", { id: d.device_id }),
            after: () => { delete forms[name]; },
          });
        },
      },
      input(name, "name", t("device.name", { id: d.device_id })),
      h("button", { type: "submit", "data-key": `${name}-save` }, t("device.save_name"))));
  });
  return h("section", { "aria-labelledby": "device-names-title" },
    h("h2", { id: "device-names-title" }, t("device.names")),
    h("p", {}, t("device.names_intro")),
    items.length ? h("ul", { class: "admin-list" }, items) : h("p", {}, t("admin.none")));
}

function auditQuery() {
  const f = form("audit");
  const query = new URLSearchParams();
  for (const field of ["actor", "action", "patient_id", "outcome"]) {
    const value = (f[field] ?? "").trim();
    if (value) query.set(field, value);
  }
  for (const field of ["since", "until"]) {
    if (f[field]) query.set(field, new Date(f[field]).toISOString());
  }
  const text = query.toString();
  return text ? `&${text}` : "";
}

function auditSection(ctx) {
  load(ctx, "users");
  load(ctx, "audit", auditQuery());
  const filters = h("form", {
    class: "admin-form audit-filters", novalidate: true,
    onsubmit: (e) => {
      e.preventDefault();
      notice = null;
      errors = {};
      delete lists.audit;
      api.get(`${R}/audit?limit=200${auditQuery()}`, { view: viewOf(ctx) }).then((rows) => { lists.audit = rows; }, (error) => {
        lists.audit = [];
        if (error instanceof api.SignedOut) { ctx.failed(error); return; }
        errors = Object.fromEntries(Object.entries(error.status === 422 ? fieldErrors(error.problem) : {})
          .map(([key, message]) => [`audit.${key.replace(/^query\./, "")}`, message]));
        notice = { text: t("admin.failed", { detail: error.message }), problem: true };
      }).finally(() => ctx.render());
      ctx.render();
    },
  },
  h("fieldset", { class: "plan-section" },
    h("legend", {}, h("h2", {}, t("audit.filters"))),
    h("div", { class: "filter-grid" },
      input("audit", "actor", t("audit.actor")),
      input("audit", "action", t("audit.action")),
      input("audit", "patient_id", t("audit.patient"), { type: "text" }),
      choice("audit", "outcome", t("audit.outcome"), [["", t("audit.outcome.any")], ["allowed", t("audit.outcome.allowed")], ["denied", t("audit.outcome.denied")]]),
      input("audit", "since", t("audit.since"), { type: "datetime-local" }),
      input("audit", "until", t("audit.until"), { type: "datetime-local" })),
    h("button", { type: "submit", class: "primary", "data-key": "audit-show" }, t("audit.show"))));
  if (pending("audit")) return page(ctx, "audit", filters, loadingLine());
  const who = (actor) => {
    const user = (lists.users ?? []).find((u) => `user:${u.id}` === actor);
    return user ? `${user.display_name} (${actor})` : actor;
  };
  return page(ctx, "audit", filters,
    h("h2", { id: "audit-count" }, t("audit.entries", { count: lists.audit.length })),
    h("ol", { class: "audit-list", "aria-labelledby": "audit-count" }, lists.audit.map((e) => h("li", { class: `audit-${e.outcome}` },
      h("span", { class: "when" }, clock(e.at, { date: true, seconds: true })), " · ",
      h("span", {}, who(e.actor)), " · ",
      h("code", {}, e.action),
      e.patient_id ? ` · ${t("audit.patient_n", { id: e.patient_id })}` : "",
      ` · ${t(`audit.outcome.${e.outcome}`)}`))));
}

/** "jft:default" → "Journalføringstjenesten (default)". */
function destinationName(destination) {
  const [kind, tenant] = destination.split(/:(.*)/s);
  const name = t(`fhir.kind.${kind}`);
  return name === `fhir.kind.${kind}` ? destination : `${name} (${tenant})`;
}

/** What a queued document is about, for a heading and a button: the alarm, or (PMD) a batch. */
const documentName = (m) => m.destination.startsWith("pmd:") ? t("fhir.measurements") : t("fhir.alarm", { id: m.alarm_id });

/** The receiver's OperationOutcome, an issue a line; else the queue's own reason. */
function outcomeOf(m) {
  const issues = (m.outcome?.issue ?? []).filter((i) => i && typeof i === "object");
  if (!issues.length) return m.last_error ? h("p", {}, t("fhir.no_outcome"), h("span", { class: "problem" }, m.last_error)) : null;
  return h("div", { class: "fhir-outcome" },
    h("p", {}, h("strong", {}, t("fhir.outcome")), m.http_status ? ` (HTTP ${m.http_status})` : ""),
    h("ul", {}, issues.map((i) => h("li", {},
      h("span", { class: i.severity === "error" || i.severity === "fatal" ? "problem" : null },
        t(`fhir.severity.${i.severity}`) === `fhir.severity.${i.severity}` ? String(i.severity ?? "?") : t(`fhir.severity.${i.severity}`)),
      ": ", String(i.diagnostics ?? i.details?.text ?? i.code ?? "?")))));
}

function fhirSection(ctx) {
  for (const kind of ["fhir", "parked", "waiting", "patients"]) load(ctx, kind);
  if (pending("fhir", "parked", "waiting", "patients")) return page(ctx, "fhir", loadingLine());
  const destinations = lists.fhir.map((d) => h("li", { class: "admin-item", "data-destination": d.destination },
    h("h2", {}, destinationName(d.destination)),
    h("p", {}, t("fhir.counts", d)),
    d.oldest_pending_at ? h("p", {}, t("fhir.oldest", { time: clock(d.oldest_pending_at, { date: true }) })) : null,
    d.last_success_at ? h("p", {}, t("fhir.last_success", { time: clock(d.last_success_at, { date: true }) })) : null,
    d.last_error ? h("p", {}, t("fhir.last_error", { time: clock(d.last_error_at, { date: true }) }),
      h("span", { class: "problem" }, d.last_error)) : null));
  const about = (m) => `${documentName(m)} · ${patientName(m.patient_id)}`;
  const parked = lists.parked.map((m) => h("li", { class: "admin-item", "data-message": m.id },
    h("h3", {}, about(m)),
    h("p", {}, [destinationName(m.destination), m.settled_at ? t("fhir.parked_at", { time: clock(m.settled_at, { date: true }) }) : null,
      t("fhir.attempts", { count: m.attempts })].filter(Boolean).join(" · ")),
    outcomeOf(m),
    h("p", { class: "actions" }, h("button", {
      type: "button", "data-key": `fhir-${m.id}-requeue`,
      onclick: () => change(ctx, {
        name: `fhir-${m.id}`, method: "POST", path: `${F}/messages/${m.id}/requeue`, kinds: ["fhir", "parked", "waiting"],
        done: t("fhir.requeued", { what: about(m) }),
      }),
    }, t("fhir.requeue", { what: about(m) })))));
  const waiting = lists.waiting.map((m) => h("li", { class: "admin-item", "data-message": m.id },
    h("h3", {}, about(m)),
    h("p", {}, [destinationName(m.destination), t("fhir.attempts", { count: m.attempts }),
      m.attempts && m.next_attempt_at ? t("fhir.next", { time: clock(m.next_attempt_at, { date: true }) }) : null].filter(Boolean).join(" · ")),
    m.last_error ? h("p", {}, t("fhir.no_outcome"), h("span", { class: "problem" }, m.last_error)) : null));
  return page(ctx, "fhir",
    h("p", { class: "intro" }, t("fhir.intro")),
    destinations.length ? h("ul", { class: "admin-list" }, destinations) : h("p", {}, t("fhir.none")),
    h("h2", { id: "fhir-parked" }, t("fhir.parked")),
    parked.length ? h("ul", { class: "admin-list", "aria-labelledby": "fhir-parked" }, parked) : h("p", {}, t("fhir.parked_none")),
    h("h2", { id: "fhir-waiting" }, t("fhir.waiting")),
    waiting.length ? h("ul", { class: "admin-list", "aria-labelledby": "fhir-waiting" }, waiting) : h("p", {}, t("fhir.waiting_none")));
}

const VIEWS = {
  users: usersSection, teams: teamsSection, patients: patientsSection, gateways: gatewaysSection, devices: devicesSection,
  fhir: fhirSection, audit: auditSection, retention: retentionSection,
};

export function adminView(ctx) {
  const view = VIEWS[ctx.route.section];
  return view ? view(ctx) : home(ctx);
}

let owner = null; // the subject whose forms these are

/** A new sign-in: the lists are fetched afresh; what she was typing stays if it is her again
 * (her session had ended), and is forgotten for anyone else. */
export function forgetAdminState() {
  for (const key of Object.keys(lists)) delete lists[key];
  const subject = api.claims()?.sub ?? null;
  if (subject !== owner) {
    for (const key of Object.keys(forms)) delete forms[key];
    owner = subject;
  }
  errors = {};
  notice = null;
  secret = null;
  confirming = null;
  loading = new Set();
  opening = null;
  forgetPrivacyState();
}

/** Another section: its message and a half-pressed "remove" are no longer about what she sees,
 * and its lists are fetched afresh (a home gateway's status changes by itself). */
export function leftSection() {
  notice = null;
  confirming = null;
  opening = null;
  forgetPrivacyState();
  for (const key of Object.keys(lists)) delete lists[key];
}
