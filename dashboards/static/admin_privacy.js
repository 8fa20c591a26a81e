// The admin's privacy duties (issue 16): the municipality's retention (#/admin/retention), and on
// each patient of #/admin/patients her GP with the HL7 endpoint, the GDPR export ("innsyn") as a
// JSON file and the erasure of all her data, guarded by typing her number or name. On the
// registry API: GET /tenant, PUT /tenant/retention, PATCH /patients/{id},
// GET /patients/{id}/export, DELETE /patients/{id} (export and erasure are audited there).
//
// Each action shows pending on its button, then done in the notice line, or failed with the
// reason and the button offering to try again; the platform's refusals stand next to their field.

import * as api from "./api.js";
import { change, form, input, listed, load, loadingLine, page, pending, tell } from "./admin.js";
import { h } from "./dom.js";
import { addTexts, t } from "./i18n.js";

addTexts({
  nb: {
    "retention.intro": "Hvor lenge kommunen tar vare på dataene. Det som er eldre, slettes ved neste opprydding (hver time). Åpne alarmer slettes aldri; HL7-meldinger følger målingene.",
    "retention.now": "Nå: målinger {observations} dager · alarmer {alarms} dager · revisjonslogg {audit} dager.",
    "retention.form": "Endre lagringstiden",
    "retention.observations_days": "Målinger (dager)", "retention.alarms_days": "Lukkede alarmer (dager)",
    "retention.audit_days": "Revisjonslogg (dager)", "retention.hint": "Et helt antall dager, 1–36 500.",
    "retention.save": "Lagre lagringstiden", "retention.saved": "Lagringstiden er endret.",
    "privacy.pending": "Arbeider …", "privacy.retry": "Prøv igjen: {action}",
    "gp.name": "Fastlege", "gp.host": "Fastlegens HL7-mottak: vertsnavn",
    "gp.port": "Fastlegens HL7-mottak: port", "gp.port_hint": "1–65535, sammen med vertsnavnet.",
    "gp.line": "Fastlege: {name}", "gp.none": "Ingen fastlege registrert",
    "gp.hl7": "HL7 til {host}:{port}", "gp.no_hl7": "ingen HL7 til fastlegen",
    "invalid.gp_hl7_port.gp_host_missing": "Fyll også ut vertsnavnet: porten hører til det.",
    "invalid.gp_hl7_port.gp_port_missing": "Fyll ut porten (1–65535) som hører til vertsnavnet.",
    "export.button": "Eksporter data for {name}", "export.done": "Dataene om {name} er lastet ned som {file}.",
    "erase.button": "Slett alle data om {name}",
    "erase.title": "Slette alle data om {name}?",
    "erase.warning": "Målinger, alarmer, enheter og HL7- og FHIR-meldinger om pasienten slettes for godt, og hun fjernes fra registeret. Hjemmeenheten blir stående uten pasient. Revisjonsloggen beholdes.",
    "erase.confirm_label": "Skriv fødselsnummeret ({number}) eller navnet ({name}) for å bekrefte",
    "erase.confirm": "Slett alt om {name} nå", "erase.cancel": "Avbryt",
    "erase.done": "Alle data om {name} er slettet: {removed}.", "erase.nothing": "ingen data utenom registreringen",
    "removed.observations": "{count} målinger", "removed.alarms": "{count} alarmer", "removed.devices": "{count} enheter",
    "removed.hl7_messages": "{count} sendte HL7-meldinger", "removed.hl7_received": "{count} mottatte HL7-meldinger",
    "removed.fhir_messages": "{count} FHIR-dokumenter", "removed.timeseries_dead_letters": "{count} ventende tidsserieverdier",
  },
  en: {
    "retention.intro": "How long the municipality keeps the data. What is older is deleted at the next clean-up (every hour). Open alarms are never deleted; HL7 messages go with the measurements.",
    "retention.now": "Now: measurements {observations} days · alarms {alarms} days · audit log {audit} days.",
    "retention.form": "Change the retention",
    "retention.observations_days": "Measurements (days)", "retention.alarms_days": "Closed alarms (days)",
    "retention.audit_days": "Audit log (days)", "retention.hint": "A whole number of days, 1–36,500.",
    "retention.save": "Save the retention", "retention.saved": "The retention is changed.",
    "privacy.pending": "Working …", "privacy.retry": "Try again: {action}",
    "gp.name": "GP", "gp.host": "GP's HL7 receiver: host name",
    "gp.port": "GP's HL7 receiver: port", "gp.port_hint": "1–65535, together with the host name.",
    "gp.line": "GP: {name}", "gp.none": "No GP registered",
    "gp.hl7": "HL7 to {host}:{port}", "gp.no_hl7": "no HL7 to the GP",
    "invalid.gp_hl7_port.gp_host_missing": "Fill in the host name too: the port belongs to it.",
    "invalid.gp_hl7_port.gp_port_missing": "Fill in the port (1–65535) of the host name.",
    "export.button": "Export the data of {name}", "export.done": "The data of {name} is downloaded as {file}.",
    "erase.button": "Erase all data of {name}",
    "erase.title": "Erase all data of {name}?",
    "erase.warning": "Measurements, alarms, devices and HL7 and FHIR messages about the patient are deleted for good, and she is removed from the register. The home gateway stays, without a patient. The audit log is kept.",
    "erase.confirm_label": "Type the national identity number ({number}) or the name ({name}) to confirm",
    "erase.confirm": "Erase everything about {name} now", "erase.cancel": "Cancel",
    "erase.done": "All data of {name} is erased: {removed}.", "erase.nothing": "no data besides the registration",
    "removed.observations": "{count} measurements", "removed.alarms": "{count} alarms", "removed.devices": "{count} devices",
    "removed.hl7_messages": "{count} HL7 messages sent", "removed.hl7_received": "{count} HL7 messages received",
    "removed.fhir_messages": "{count} FHIR documents", "removed.timeseries_dead_letters": "{count} time-series values waiting",
  },
});

const R = "api/v1/registry";
const DAYS = ["observations_days", "alarms_days", "audit_days"];

let busy = new Map(); // action key → "pending" | "failed"
let erasing = null; // { id, typed }: the erasure being confirmed

/** A new sign-in or another section: no action is under way and no erasure half-confirmed. */
export function forgetPrivacyState() {
  busy = new Map();
  erasing = null;
}

/** Run `work` (answering as `change` does) as the action `key`: its button says it is under
 * way, and after a failure offers to try again (refused fields are marked instead). */
async function act(ctx, key, work) {
  if (busy.get(key) === "pending") return;
  busy.set(key, "pending");
  ctx.render();
  if (await work() === "failed") busy.set(key, "failed");
  else busy.delete(key);
  ctx.render();
}

function actionButton(ctx, key, label, work, { danger = false, disabled = false } = {}) {
  const state = busy.get(key);
  return h("button", {
    type: "button", class: danger ? "danger" : null, "data-key": key,
    disabled: disabled || state === "pending", "aria-busy": state === "pending" ? "true" : null,
    onclick: () => act(ctx, key, work),
  }, state === "pending" ? t("privacy.pending") : state === "failed" ? t("privacy.retry", { action: label }) : label);
}

function submitButton(key, label) {
  const state = busy.get(key);
  return h("button", { type: "submit", class: "primary", "data-key": key, disabled: state === "pending" },
    state === "pending" ? t("privacy.pending") : state === "failed" ? t("privacy.retry", { action: label }) : label);
}

// --- retention ---------------------------------------------------------------------------------

export function retentionSection(ctx) {
  load(ctx, "tenant");
  if (pending("tenant")) return page(ctx, "retention", loadingLine());
  const tenant = listed("tenant");
  const f = form("retention");
  for (const field of DAYS) f[field] ??= String(tenant[`retention_${field}`]);
  const save = t("retention.save");
  return page(ctx, "retention",
    h("p", { class: "intro" }, t("retention.intro")),
    h("p", { "data-retention": "" }, t("retention.now", {
      observations: tenant.retention_observations_days, alarms: tenant.retention_alarms_days, audit: tenant.retention_audit_days,
    })),
    h("form", {
      class: "admin-form", novalidate: true,
      onsubmit: (e) => {
        e.preventDefault();
        // As typed: the platform says what is not a whole number of days, next to the field.
        const body = Object.fromEntries(DAYS.map((field) => [field, (f[field] ?? "").trim()]));
        act(ctx, "save-retention", () => change(ctx, {
          name: "retention", method: "PUT", path: `${R}/tenant/retention`, body, kinds: ["tenant"],
          done: t("retention.saved"), after: () => { delete f.observations_days; delete f.alarms_days; delete f.audit_days; },
        }));
      },
    },
    h("fieldset", { class: "plan-section" },
      h("legend", {}, h("h2", {}, t("retention.form"))),
      DAYS.map((field) => input("retention", field, t(`retention.${field}`), { hint: t("retention.hint"), inputmode: "numeric" })),
      submitButton("save-retention", save))));
}

// --- the GP ------------------------------------------------------------------------------------

/** The patient's GP and where her measurements go as HL7, for her row. */
export function gpLine(p) {
  const who = p.gp_name ? t("gp.line", { name: p.gp_name }) : t("gp.none");
  const where = p.gp_hl7_host ? t("gp.hl7", { host: p.gp_hl7_host, port: p.gp_hl7_port }) : t("gp.no_hl7");
  return `${who} · ${where}`;
}

export function gpPrefill(f, p) {
  f.gp_name ??= p.gp_name ?? "";
  f.gp_hl7_host ??= p.gp_hl7_host ?? "";
  f.gp_hl7_port ??= p.gp_hl7_port === null || p.gp_hl7_port === undefined ? "" : String(p.gp_hl7_port);
}

/** The GP fields of a registration change; empty is none. The port goes as typed: the platform
 * refuses what is not 1–65535, and a host without its port or a port without its host. */
export function gpBody(f) {
  const value = (field) => (f[field] ?? "").trim() || null;
  return { gp_name: value("gp_name"), gp_hl7_host: value("gp_hl7_host"), gp_hl7_port: value("gp_hl7_port") };
}

export function gpFields(name) {
  return [
    input(name, "gp_name", t("gp.name")),
    input(name, "gp_hl7_host", t("gp.host")),
    input(name, "gp_hl7_port", t("gp.port"), { hint: t("gp.port_hint"), inputmode: "numeric" }),
  ];
}

// --- GDPR export and erasure -------------------------------------------------------------------

const fullName = (p) => `${p.family_name}, ${p.given_name}`;
const squeezed = (text) => text.trim().replace(/\s+/g, " ").toLocaleLowerCase("nb");

/** What she typed names this patient: her number (spaces as on a card), or her name as shown
 * ("Berg, Ola") or as said ("Ola Berg"). */
function confirms(p, typed) {
  const text = squeezed(typed ?? "");
  if (!text) return false;
  return text.replace(/\s/g, "") === p.national_id
    || [fullName(p), `${p.given_name} ${p.family_name}`].some((name) => squeezed(name) === text);
}

async function exportData(ctx, p) {
  const file = `pasient-${p.id}-innsyn.json`;
  try {
    const data = await api.get(`${R}/patients/${p.id}/export`);
    const url = URL.createObjectURL(new Blob([JSON.stringify(data, null, 2)], { type: "application/json" }));
    const link = h("a", { href: url, download: file, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    tell(t("export.done", { name: fullName(p), file }));
    return "done";
  } catch (error) {
    if (error instanceof api.SignedOut) { ctx.failed(error); return "failed"; }
    tell(t("admin.failed", { detail: error.message }), { problem: true });
    return "failed";
  } finally {
    ctx.render();
    document.getElementById("admin-notice")?.focus();
  }
}

function removedText(removed) {
  const parts = Object.entries(removed ?? {}).filter(([, count]) => count > 0)
    .map(([what, count]) => {
      const text = t(`removed.${what}`, { count });
      return text === `removed.${what}` ? `${count} ${what}` : text;
    });
  return parts.length ? parts.join(", ") : t("erase.nothing");
}

function eraseConfirmation(ctx, p) {
  const id = `erase-${p.id}`;
  const name = fullName(p);
  const confirmKey = `${id}-confirm`;
  const cancel = () => {
    erasing = null;
    ctx.render();
    document.querySelector(`[data-key="${id}"]`)?.focus();
  };
  return h("div", {
    class: "erase-confirm", role: "group", "aria-labelledby": `${id}-title`,
    onkeydown: (e) => { if (e.key === "Escape") cancel(); },
  },
  h("h3", { id: `${id}-title` }, t("erase.title", { name })),
  h("p", { id: `${id}-warning` }, t("erase.warning")),
  h("div", { class: "field" },
    h("label", { for: `${id}-typed` }, t("erase.confirm_label", { number: p.national_id, name })),
    h("input", {
      id: `${id}-typed`, type: "text", autocomplete: "off", "data-key": `${id}-typed`, value: erasing.typed,
      "aria-describedby": `${id}-warning`,
      oninput: (e) => {
        erasing.typed = e.target.value;
        // Only the button changes: no redraw under her typing.
        const button = document.querySelector(`[data-key="${confirmKey}"]`);
        if (button && busy.get(confirmKey) !== "pending") button.disabled = !confirms(p, erasing.typed);
      },
    })),
  h("p", { class: "actions" },
    actionButton(ctx, confirmKey, t("erase.confirm", { name }), () => change(ctx, {
      name: id, method: "DELETE", path: `${R}/patients/${p.id}`, kinds: ["patients"],
      done: (removed) => t("erase.done", { name, removed: removedText(removed) }),
      after: () => { erasing = null; },
    }), { danger: true, disabled: !confirms(p, erasing.typed) }),
    h("button", { type: "button", class: "quiet", "data-key": `${id}-cancel`, onclick: cancel }, t("erase.cancel"))));
}

/** The export and erasure of one patient, for her row in the admin's patient list. */
export function patientPrivacy(ctx, p) {
  const name = fullName(p);
  const id = `erase-${p.id}`;
  return [
    h("p", { class: "actions" },
      actionButton(ctx, `export-${p.id}`, t("export.button", { name }), () => exportData(ctx, p)),
      h("button", {
        type: "button", class: "quiet", "data-key": id, "aria-expanded": erasing?.id === p.id ? "true" : "false",
        onclick: () => {
          erasing = erasing?.id === p.id ? null : { id: p.id, typed: "" };
          ctx.render();
          document.querySelector(`[data-key="${erasing ? `${id}-typed` : id}"]`)?.focus();
        },
      }, t("erase.button", { name }))),
    erasing?.id === p.id ? eraseConfirmation(ctx, p) : null,
  ];
}
