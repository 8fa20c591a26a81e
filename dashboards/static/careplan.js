// The coordinator's screen for a patient's care plan (#/patients/{id}/care-plan): personal
// limits with their units, the measurement schedule, and combined AND/OR rules, edited here and
// saved with PUT /api/v1/patients/{id}/care-plan (gateway/careplan.py validates, the platform
// audits, and the alarm engine uses the new plan from the next reading on). The platform's
// validation errors are shown next to the field they name.
//
// The form's state lives in this module, not in the DOM, because the app redraws the page on
// every live event: each input writes to it as she types, and a redraw shows it again (focus is
// kept by the app).

import * as api from "./api.js";
import { h } from "./dom.js";
import { addTexts, clock, t } from "./i18n.js";
import { fieldErrors } from "./validation.js";
import { unitText } from "./vitals.js";

addTexts({
  nb: {
    "careplan.title": "Behandlingsplan",
    "careplan.open": "Behandlingsplan: personlige grenser, måleplan og regler",
    "careplan.heading": "Behandlingsplan – {name}",
    "careplan.back": "Tilbake til pasienten",
    "careplan.loading": "Henter behandlingsplanen …",
    "careplan.limits": "Personlige grenser",
    "careplan.limits_intro": "Tomt felt: standardgrensen gjelder. En grense gjelder fra neste måling etter at planen er lagret.",
    "careplan.in_effect": "Gjelder nå: {limit} {unit}",
    "careplan.off": "Slå av denne alarmen",
    "careplan.inactivity": "Ingen bevegelse",
    "careplan.inactivity_label": "Alarm når det ikke er bevegelse i hjemmet på dagtid i (timer)",
    "careplan.inactivity_hint": "Tomt felt: 4 timer.",
    "careplan.schedule": "Måleplan",
    "careplan.schedule_intro": "En måling som ikke er tatt innen fristen, gir alarmen «Måling ikke tatt».",
    "careplan.schedule_item": "Måling {n}",
    "careplan.measure": "Hva skal måles",
    "careplan.from": "Fra",
    "careplan.deadline": "Frist",
    "careplan.days": "Dager",
    "careplan.add_measurement": "Legg til måling",
    "careplan.remove_measurement": "Fjern måling {n}",
    "careplan.combined": "Kombinerte regler",
    "careplan.combined_intro": "Én alarm når vilkårene er oppfylt sammen (OG) eller når ett av dem er det (ELLER).",
    "careplan.rule": "Regel {n}",
    "careplan.op": "Når gir regelen alarm",
    "careplan.op.and": "Når alle vilkårene er oppfylt (OG)",
    "careplan.op.or": "Når minst ett vilkår er oppfylt (ELLER)",
    "careplan.severity": "Alvorlighet",
    "careplan.condition": "Vilkår {n}",
    "careplan.value": "Måling",
    "careplan.comparison": "Sammenligning",
    "careplan.comparison.<": "under",
    "careplan.comparison.>": "over",
    "careplan.limit": "Grense",
    "careplan.add_condition": "Legg til vilkår",
    "careplan.remove_condition": "Fjern vilkår {n}",
    "careplan.add_rule": "Legg til regel",
    "careplan.remove_rule": "Fjern regel {n}",
    "careplan.save": "Lagre behandlingsplanen",
    "careplan.saving": "Lagrer …",
    "careplan.saved": "Lagret kl. {time}. Planen gjelder fra neste måling.",
    "careplan.invalid": "Planen er ikke lagret: rett feltene som er merket.",
    "careplan.failed": "Planen er ikke lagret: {detail}",
    "careplan.none": "Ingen.",
    "rule.spo2_low": "Oksygenmetning under",
    "rule.systolic_high": "Systolisk blodtrykk over",
    "rule.systolic_low": "Systolisk blodtrykk under",
    "rule.pulse_high": "Puls over",
    "rule.pulse_low": "Puls under",
    "rule.temperature_high": "Temperatur over",
    "rule.glucose_low": "Blodsukker under",
    "rule.glucose_high": "Blodsukker over",
    "measure.bp": "Blodtrykk",
    "measure.sys": "Systolisk blodtrykk",
    "measure.dia": "Diastolisk blodtrykk",
    "measure.pulse": "Puls",
    "measure.spo2": "Oksygenmetning",
    "measure.temp": "Temperatur",
    "measure.weight": "Vekt",
    "measure.glucose": "Blodsukker",
    "day.0": "man", "day.1": "tir", "day.2": "ons", "day.3": "tor", "day.4": "fre", "day.5": "lør", "day.6": "søn",
  },
  en: {
    "careplan.title": "Care plan",
    "careplan.open": "Care plan: personal limits, measurement schedule and rules",
    "careplan.heading": "Care plan – {name}",
    "careplan.back": "Back to the patient",
    "careplan.loading": "Loading the care plan …",
    "careplan.limits": "Personal limits",
    "careplan.limits_intro": "Empty: the default limit applies. A limit applies from the next reading after the plan is saved.",
    "careplan.in_effect": "In effect now: {limit} {unit}",
    "careplan.off": "Switch this alarm off",
    "careplan.inactivity": "No movement",
    "careplan.inactivity_label": "Alarm when there is no movement in the home in the daytime for (hours)",
    "careplan.inactivity_hint": "Empty: 4 hours.",
    "careplan.schedule": "Measurement schedule",
    "careplan.schedule_intro": "A measurement not taken by its deadline raises “Measurement missed”.",
    "careplan.schedule_item": "Measurement {n}",
    "careplan.measure": "What to measure",
    "careplan.from": "From",
    "careplan.deadline": "Deadline",
    "careplan.days": "Days",
    "careplan.add_measurement": "Add a measurement",
    "careplan.remove_measurement": "Remove measurement {n}",
    "careplan.combined": "Combined rules",
    "careplan.combined_intro": "One alarm when the conditions hold together (AND) or when one of them does (OR).",
    "careplan.rule": "Rule {n}",
    "careplan.op": "When the rule raises an alarm",
    "careplan.op.and": "When all conditions hold (AND)",
    "careplan.op.or": "When at least one condition holds (OR)",
    "careplan.severity": "Severity",
    "careplan.condition": "Condition {n}",
    "careplan.value": "Measurement",
    "careplan.comparison": "Comparison",
    "careplan.comparison.<": "below",
    "careplan.comparison.>": "above",
    "careplan.limit": "Limit",
    "careplan.add_condition": "Add a condition",
    "careplan.remove_condition": "Remove condition {n}",
    "careplan.add_rule": "Add a rule",
    "careplan.remove_rule": "Remove rule {n}",
    "careplan.save": "Save the care plan",
    "careplan.saving": "Saving …",
    "careplan.saved": "Saved at {time}. The plan applies from the next reading.",
    "careplan.invalid": "The plan was not saved: correct the marked fields.",
    "careplan.failed": "The plan was not saved: {detail}",
    "careplan.none": "None.",
    "rule.spo2_low": "Oxygen saturation below",
    "rule.systolic_high": "Systolic pressure above",
    "rule.systolic_low": "Systolic pressure below",
    "rule.pulse_high": "Pulse above",
    "rule.pulse_low": "Pulse below",
    "rule.temperature_high": "Temperature above",
    "rule.glucose_low": "Blood glucose below",
    "rule.glucose_high": "Blood glucose above",
    "measure.bp": "Blood pressure",
    "measure.sys": "Systolic pressure",
    "measure.dia": "Diastolic pressure",
    "measure.pulse": "Pulse",
    "measure.spo2": "Oxygen saturation",
    "measure.temp": "Temperature",
    "measure.weight": "Weight",
    "measure.glucose": "Blood glucose",
    "day.0": "Mon", "day.1": "Tue", "day.2": "Wed", "day.3": "Thu", "day.4": "Fri", "day.5": "Sat", "day.6": "Sun",
  },
});

// What a schedule can ask for (any of the codes counts) and what a condition can test.
const SCHEDULED = {
  bp: ["MDC_PRESS_BLD_NONINV_SYS", "MDC_PRESS_BLD_NONINV_DIA"],
  weight: ["MDC_MASS_BODY_ACTUAL"],
  spo2: ["MDC_PULS_OXIM_SAT_O2"],
  temp: ["MDC_TEMP_BODY"],
  glucose: ["MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD", "MDC_CONC_GLU_CAPILLARY_PLASMA"],
};
const CONDITION_CODES = {
  sys: ["MDC_PRESS_BLD_NONINV_SYS", "mm[Hg]"],
  dia: ["MDC_PRESS_BLD_NONINV_DIA", "mm[Hg]"],
  pulse: ["MDC_PULS_RATE_NON_INV", "{beat}/min"],
  spo2: ["MDC_PULS_OXIM_SAT_O2", "%"],
  temp: ["MDC_TEMP_BODY", "Cel"],
  weight: ["MDC_MASS_BODY_ACTUAL", "kg"],
  glucose: ["MDC_CONC_GLU_CAPILLARY_PLASMA", "mmol/L"],
};
const SEVERITIES = ["critical", "high", "medium", "low"];

let plan = null; // the plan being edited: { id, loaded, defaults, limits, inactivity, schedule, combined, errors, … }

/** Whether the signed-in user may edit care plans (the platform decides; this shows the link). */
export function editsCarePlans() {
  return (api.claims()?.roles ?? []).includes("coordinator");
}

/** The link from a patient's page to her care plan (coordinators only). */
export function carePlanLink(id) {
  if (!editsCarePlans()) return null;
  return h("p", { class: "care-plan-link" },
    h("a", { href: `#/patients/${id}/care-plan`, "data-key": "care-plan" }, t("careplan.open")));
}

const text = (value) => (value === null || value === undefined ? "" : String(value));
const decimalIn = (value) => value.trim().replace(",", ".");
const kindOf = (table, codes) => Object.entries(table).find(([, c]) => c[0] === codes[0])?.[0];

function fromPlan(id, stored, defaults) {
  const limits = {};
  for (const d of defaults) {
    const change = stored.thresholds?.[d.rule_id];
    limits[d.rule_id] = { limit: text(change?.limit), enabled: change?.enabled ?? true };
  }
  return {
    id, loaded: true, defaults, limits,
    inactivity: text(stored.inactivity_hours),
    schedule: (stored.schedule ?? []).map((s) => ({
      rule_id: s.rule_id, kind: kindOf(SCHEDULED, s.codes) ?? "bp", codes: s.codes,
      window_start: s.window_start.slice(0, 5), deadline: s.deadline.slice(0, 5), weekdays: new Set(s.weekdays),
    })),
    combined: (stored.combined ?? []).map((c) => ({
      rule_id: c.rule_id, op: c.op, severity: c.severity,
      conditions: c.conditions.map((k) => ({
        kind: Object.entries(CONDITION_CODES).find(([, [code]]) => code === k.code)?.[0] ?? "spo2",
        comparison: k.comparison, limit: text(k.limit),
      })),
    })),
    errors: {}, problem: null, saved: null, saving: false,
  };
}

function toPlan(edit) {
  const thresholds = {};
  for (const [ruleId, change] of Object.entries(edit.limits)) {
    if (!change.enabled) thresholds[ruleId] = { enabled: false };
    else if (change.limit.trim()) thresholds[ruleId] = { limit: decimalIn(change.limit) };
  }
  return {
    thresholds,
    inactivity_hours: edit.inactivity.trim() ? decimalIn(edit.inactivity) : null,
    schedule: edit.schedule.map((s) => ({
      rule_id: s.rule_id, codes: SCHEDULED[s.kind] ?? s.codes, window_start: s.window_start,
      deadline: s.deadline, weekdays: [...s.weekdays].sort(),
    })),
    combined: edit.combined.map((c) => ({
      rule_id: c.rule_id, op: c.op, severity: c.severity,
      conditions: c.conditions.map((k) => ({
        code: CONDITION_CODES[k.kind][0], unit: CONDITION_CODES[k.kind][1],
        comparison: k.comparison, limit: decimalIn(k.limit),
      })),
    })),
  };
}

/** A rule id no other rule of the plan has (the alarm engine needs them unique). */
function freshId(prefix, edit) {
  const taken = new Set([...edit.schedule, ...edit.combined].map((r) => r.rule_id));
  let n = 1;
  while (taken.has(`${prefix}_${n}`)) n += 1;
  return `${prefix}_${n}`;
}

async function load(ctx, id) {
  const owner = api.claims()?.sub;
  const view = api.openView("care_plan");
  plan = { id, owner, view, loaded: false };
  try {
    const [stored, defaults] = await Promise.all([
      api.get(`api/v1/patients/${id}/care-plan`, { view }), api.get(`api/v1/patients/${id}/thresholds`, { view }),
    ]);
    if (plan.id === id) plan = { ...fromPlan(id, stored, defaults), owner, view };
  } catch (error) {
    if (error instanceof api.SignedOut) { plan = null; ctx.failed(error); return; }
    plan = { id, owner, loaded: true, failed: error };
  }
  ctx.render();
}

async function save(ctx) {
  const edit = plan;
  edit.saving = true;
  edit.problem = null;
  edit.saved = null;
  ctx.render();
  try {
    await api.request(`api/v1/patients/${edit.id}/care-plan`, { method: "PUT", body: toPlan(edit) });
    edit.errors = {};
    edit.saved = new Date();
    edit.defaults = await api.get(`api/v1/patients/${edit.id}/thresholds`, { view: edit.view });
  } catch (error) {
    edit.saving = false;
    // Her changes stay on the screen: she saves them after signing in again.
    if (error instanceof api.SignedOut) { ctx.failed(error); return; }
    edit.errors = error.status === 422 ? fieldErrors(error.problem) : {};
    edit.problem = error.status === 422 ? t("careplan.invalid") : t("careplan.failed", { detail: error.message });
  }
  edit.saving = false;
  ctx.render();
  const invalid = document.querySelector("#care-plan [aria-invalid=true]");
  (invalid ?? document.getElementById("care-plan-result"))?.focus();
}

// --- the form --------------------------------------------------------------------------------

/** The error the platform gave for this field (or the nearest enclosing one shown nowhere else). */
function problemOf(key) {
  return plan.errors[key] ?? null;
}

function problemLine(id, key) {
  const message = problemOf(key);
  return h("p", { id, class: "problem field-problem" }, message ?? "");
}

function textField({ id, key, label, value, oninput, hint, unit, inputmode = "decimal", type = "text" }) {
  const problemId = `${id}-problem`;
  const hintId = hint ? `${id}-hint` : null;
  return h("div", { class: "field" },
    h("label", { for: id }, label),
    h("span", { class: "with-unit" },
      h("input", {
        id, type, inputmode: type === "text" ? inputmode : null, value, "data-key": id, "data-field": key,
        "aria-invalid": problemOf(key) ? "true" : null,
        "aria-describedby": [hintId, problemId].filter(Boolean).join(" "),
        autocomplete: "off",
        oninput: (e) => oninput(e.target.value),
      }),
      unit ? h("span", { class: "unit", "aria-hidden": "true" }, unit) : null),
    hint ? h("p", { id: hintId, class: "hint" }, hint) : null,
    problemLine(problemId, key));
}

function select({ id, label, value, options, onchange, key }) {
  return h("div", { class: "field" },
    h("label", { for: id }, label),
    h("select", {
      id, "data-key": id, "data-field": key, onchange: (e) => onchange(e.target.value),
      "aria-invalid": key && problemOf(key) ? "true" : null,
    }, options.map(([v, label]) => {
      const option = h("option", { value: v }, label);
      option.selected = v === value;
      return option;
    })));
}

function limitsSection() {
  return h("fieldset", { class: "plan-section" },
    h("legend", {}, h("h2", {}, t("careplan.limits"))),
    h("p", { class: "intro" }, t("careplan.limits_intro")),
    h("div", { class: "limit-grid" }, plan.defaults.map((d) => {
      const change = plan.limits[d.rule_id];
      const id = `limit-${d.rule_id}`;
      const unit = unitText(d.unit);
      return h("div", { class: "limit-row", "data-rule": d.rule_id },
        textField({
          id, key: `thresholds.${d.rule_id}.limit`,
          label: `${t(`rule.${d.rule_id}`)} (${unit})`, value: change.limit, unit,
          hint: t("careplan.in_effect", { limit: d.limit.replace(".", ","), unit }),
          oninput: (v) => { change.limit = v; },
        }),
        h("label", { class: "check" },
          h("input", {
            type: "checkbox", "data-key": `${id}-off`, checked: !change.enabled,
            onchange: (e) => { change.enabled = !e.target.checked; },
          }), " ", t("careplan.off")));
    })),
    problemLine("thresholds-problem", "thresholds"));
}

function inactivitySection() {
  return h("fieldset", { class: "plan-section" },
    h("legend", {}, h("h2", {}, t("careplan.inactivity"))),
    textField({
      id: "inactivity-hours", key: "inactivity_hours", label: t("careplan.inactivity_label"),
      value: plan.inactivity, hint: t("careplan.inactivity_hint"), oninput: (v) => { plan.inactivity = v; },
    }));
}

function scheduleSection(ctx) {
  return h("fieldset", { class: "plan-section" },
    h("legend", {}, h("h2", {}, t("careplan.schedule"))),
    h("p", { class: "intro" }, t("careplan.schedule_intro")),
    plan.schedule.length ? h("ol", { class: "plan-items" }, plan.schedule.map((s, i) => {
      const n = i + 1;
      const key = `schedule.${i}`;
      return h("li", {},
        h("fieldset", { class: "plan-item" },
          h("legend", {}, t("careplan.schedule_item", { n })),
          select({
            id: `schedule-${i}-measure`, label: t("careplan.measure"), value: s.kind, key: `${key}.codes`,
            options: Object.keys(SCHEDULED).map((k) => [k, t(`measure.${k}`)]),
            onchange: (v) => { s.kind = v; },
          }),
          textField({
            id: `schedule-${i}-from`, key: `${key}.window_start`, label: t("careplan.from"), type: "time",
            value: s.window_start, oninput: (v) => { s.window_start = v; },
          }),
          textField({
            id: `schedule-${i}-deadline`, key: `${key}.deadline`, label: t("careplan.deadline"), type: "time",
            value: s.deadline, oninput: (v) => { s.deadline = v; },
          }),
          h("fieldset", { class: "days", "aria-describedby": `schedule-${i}-days-problem` },
            h("legend", {}, t("careplan.days")),
            [0, 1, 2, 3, 4, 5, 6].map((day) => h("label", { class: "check" },
              h("input", {
                type: "checkbox", "data-key": `schedule-${i}-day-${day}`, checked: s.weekdays.has(day),
                onchange: (e) => { if (e.target.checked) s.weekdays.add(day); else s.weekdays.delete(day); },
              }), " ", t(`day.${day}`)))),
          problemLine(`schedule-${i}-days-problem`, `${key}.weekdays`),
          problemLine(`schedule-${i}-problem`, key),
          h("button", {
            type: "button", class: "quiet", "data-key": `schedule-${i}-remove`,
            onclick: () => { plan.schedule.splice(i, 1); ctx.render(); document.querySelector('[data-key="add-measurement"]')?.focus(); },
          }, t("careplan.remove_measurement", { n }))));
    })) : h("p", {}, t("careplan.none")),
    h("button", {
      type: "button", "data-key": "add-measurement",
      onclick: () => {
        plan.schedule.push({
          rule_id: freshId("maaling", plan), kind: "bp", window_start: "08:00", deadline: "10:00",
          weekdays: new Set([0, 1, 2, 3, 4, 5, 6]),
        });
        ctx.render();
        document.getElementById(`schedule-${plan.schedule.length - 1}-measure`)?.focus();
      },
    }, t("careplan.add_measurement")));
}

function conditionRow(ctx, rule, r, k, c) {
  const n = k + 1;
  const key = `combined.${r}.conditions.${k}`;
  const [, unit] = CONDITION_CODES[c.kind];
  return h("li", {},
    h("fieldset", { class: "plan-item condition" },
      h("legend", {}, t("careplan.condition", { n })),
      select({
        id: `rule-${r}-cond-${k}-value`, label: t("careplan.value"), value: c.kind, key: `${key}.code`,
        options: Object.keys(CONDITION_CODES).map((v) => [v, t(`measure.${v}`)]),
        onchange: (v) => { c.kind = v; ctx.render(); },
      }),
      select({
        id: `rule-${r}-cond-${k}-comparison`, label: t("careplan.comparison"), value: c.comparison,
        options: ["<", ">"].map((v) => [v, t(`careplan.comparison.${v}`)]), key: `${key}.comparison`,
        onchange: (v) => { c.comparison = v; },
      }),
      textField({
        id: `rule-${r}-cond-${k}-limit`, key: `${key}.limit`, label: `${t("careplan.limit")} (${unitText(unit)})`,
        value: c.limit, unit: unitText(unit), oninput: (v) => { c.limit = v; },
      }),
      rule.conditions.length > 2 ? h("button", {
        type: "button", class: "quiet", "data-key": `rule-${r}-cond-${k}-remove`,
        onclick: () => { rule.conditions.splice(k, 1); ctx.render(); document.querySelector(`[data-key="rule-${r}-add-condition"]`)?.focus(); },
      }, t("careplan.remove_condition", { n })) : null));
}

function combinedSection(ctx) {
  return h("fieldset", { class: "plan-section" },
    h("legend", {}, h("h2", {}, t("careplan.combined"))),
    h("p", { class: "intro" }, t("careplan.combined_intro")),
    plan.combined.length ? h("ol", { class: "plan-items" }, plan.combined.map((rule, r) => {
      const n = r + 1;
      return h("li", {},
        h("fieldset", { class: "plan-item" },
          h("legend", {}, t("careplan.rule", { n })),
          select({
            id: `rule-${r}-op`, label: t("careplan.op"), value: rule.op, key: `combined.${r}.op`,
            options: ["and", "or"].map((v) => [v, t(`careplan.op.${v}`)]), onchange: (v) => { rule.op = v; },
          }),
          select({
            id: `rule-${r}-severity`, label: t("careplan.severity"), value: rule.severity, key: `combined.${r}.severity`,
            options: SEVERITIES.map((v) => [v, t(`severity.${v}`)]), onchange: (v) => { rule.severity = v; },
          }),
          h("ol", { class: "conditions" }, rule.conditions.map((c, k) => conditionRow(ctx, rule, r, k, c))),
          problemLine(`rule-${r}-conditions-problem`, `combined.${r}.conditions`),
          problemLine(`rule-${r}-problem`, `combined.${r}`),
          h("button", {
            type: "button", "data-key": `rule-${r}-add-condition`,
            onclick: () => {
              rule.conditions.push({ kind: "pulse", comparison: ">", limit: "" });
              ctx.render();
              document.getElementById(`rule-${r}-cond-${rule.conditions.length - 1}-value`)?.focus();
            },
          }, t("careplan.add_condition")),
          h("button", {
            type: "button", class: "quiet", "data-key": `rule-${r}-remove`,
            onclick: () => { plan.combined.splice(r, 1); ctx.render(); document.querySelector('[data-key="add-rule"]')?.focus(); },
          }, t("careplan.remove_rule", { n }))));
    })) : h("p", {}, t("careplan.none")),
    h("button", {
      type: "button", "data-key": "add-rule",
      onclick: () => {
        plan.combined.push({
          rule_id: freshId("regel", plan), op: "and", severity: "high",
          conditions: [{ kind: "spo2", comparison: "<", limit: "" }, { kind: "pulse", comparison: ">", limit: "" }],
        });
        ctx.render();
        document.getElementById(`rule-${plan.combined.length - 1}-op`)?.focus();
      },
    }, t("careplan.add_rule")));
}

/** Errors the platform gave for no field on the screen: said above the save button. */
function otherProblems() {
  const shown = new Set([...document.querySelectorAll("#care-plan [data-field]")].map((e) => e.dataset.field));
  return Object.entries(plan.errors)
    .filter(([key]) => !shown.has(key) && !/^(thresholds|schedule\.\d+(\.weekdays)?|combined\.\d+(\.conditions)?)$/.test(key))
    .map(([key, message]) => `${key || "plan"}: ${message}`);
}

export function carePlanView(ctx) {
  const id = ctx.route.id;
  const patient = ctx.patient(id);
  const name = patient ? `${patient.family_name}, ${patient.given_name}` : `#${id}`;
  const head = [
    h("p", { class: "back" }, h("a", { href: `#/patients/${id}`, "data-key": "back" },
      h("span", { "aria-hidden": "true", class: "arrow" }, "←"), t("careplan.back"))),
    h("h1", { tabindex: "-1", id: "view-title" }, t("careplan.heading", { name })),
  ];
  // Another user signed in (on a shared tablet): not her plan being edited.
  const subject = api.claims()?.sub;
  if (plan && subject && plan.owner !== subject) plan = null;
  if (plan?.id !== id && api.token()) load(ctx, id);
  if (!plan?.loaded) return [...head, h("p", { role: "status" }, t("careplan.loading"))];
  if (plan.failed) return [...head, h("p", { class: "problem", role: "alert" }, t("careplan.failed", { detail: plan.failed.message }))];
  const form = h("form", {
    id: "care-plan", class: "care-plan", novalidate: true,
    onsubmit: (e) => { e.preventDefault(); if (!plan.saving) save(ctx); },
  },
  limitsSection(), inactivitySection(), scheduleSection(ctx), combinedSection(ctx),
  h("div", { class: "plan-save" },
    h("p", { id: "care-plan-result", tabindex: "-1", class: plan.problem ? "problem" : "saved", role: plan.problem ? "alert" : "status" },
      plan.problem ?? (plan.saved ? t("careplan.saved", { time: clock(plan.saved) }) : "")),
    h("ul", { class: "problem other-problems", hidden: true }),
    h("button", { type: "submit", class: "primary", "data-key": "save-plan", disabled: plan.saving },
      t(plan.saving ? "careplan.saving" : "careplan.save"))));
  // Errors for fields this screen does not show go under the result (known only once built).
  queueMicrotask(() => {
    const list = document.querySelector("#care-plan .other-problems");
    if (!list) return;
    const problems = otherProblems();
    list.hidden = !problems.length;
    list.replaceChildren(...problems.map((p) => h("li", {}, p)));
  });
  return [...head, form];
}
