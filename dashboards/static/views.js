// The pages of the nurse app, built from the app's state. Each returns the content of <main>;
// app.js decides when to render (on navigation, on new data from the live stream).

import { carePlanLink } from "./careplan.js";
import { h, uid } from "./dom.js";
import { laneChart, lineChart } from "./chart.js";
import {
  LANGUAGES, ago, alarmName, clock, decimal, deviceDay, deviceTime, duration, language,
  severityWord, t,
} from "./i18n.js";
import {
  DIA, EVENT_KINDS, GROUPS, LANES, LOW_BATTERY, SYS, assess, assessmentText, deviceLabel, devicePlace,
  sampleText,
  eventText, latestOf, limitsFor, trim, unitText, valueText,
} from "./vitals.js";

export const SEVERITY_RANK = { critical: 3, high: 2, medium: 1, low: 0 };
const SEVERITY_ICON = { critical: "⚠", high: "▲", medium: "●", low: "○" };
const ACTIVE = new Set(["raised", "acknowledged", "in_progress"]);

export function patientName(patient) {
  return patient ? `${patient.family_name}, ${patient.given_name}` : "–";
}

// --- urgency ---------------------------------------------------------------------------------

/** The triage order (the app's help and the README say it in words): patients with open
 * alarms first, by their most severe alarm whether acknowledged or not (a fall being handled
 * still outranks a new low battery); at equal severity one nobody has acknowledged first, then
 * the newest (a brand-new critical alarm goes to the top); then patients with values outside
 * their own limits; then the rest by name. */
export function urgency(patient, thresholds) {
  const active = patient.open_alarms.filter((a) => ACTIVE.has(a.state));
  const severity = Math.max(-1, ...active.map((a) => SEVERITY_RANK[a.severity] ?? 0));
  const worst = active.filter((a) => (SEVERITY_RANK[a.severity] ?? 0) === severity);
  const unacknowledged = worst.some((a) => a.state === "raised");
  const newest = Math.max(-Infinity, ...worst.map((a) => Date.parse(a.raised_at)));
  const outOfRange = patient.latest.filter((o) => assess(o, thresholds).status !== "normal").length;
  return { severity, unacknowledged, newest, outOfRange, active };
}

export function byUrgency(patients, thresholdsOf) {
  const keyed = patients.map((p) => ({ p, u: urgency(p, thresholdsOf(p.id)) }));
  keyed.sort((a, b) => (b.u.severity - a.u.severity)
    || (Number(b.u.unacknowledged) - Number(a.u.unacknowledged))
    || (b.u.newest - a.u.newest)
    || (Number(b.u.outOfRange > 0) - Number(a.u.outOfRange > 0))
    || patientName(a.p).localeCompare(patientName(b.p), language()));
  return keyed;
}

/** Alarms being dealt with (new, acknowledged, taken) before those only waiting to be closed;
 * then by severity, acknowledged or not; then the newest first. Acknowledging an alarm does not
 * move it. */
export function byAlarmUrgency(alarms) {
  return [...alarms].sort((a, b) => (Number(!ACTIVE.has(a.state)) - Number(!ACTIVE.has(b.state)))
    || ((SEVERITY_RANK[b.severity] ?? 0) - (SEVERITY_RANK[a.severity] ?? 0))
    || (Date.parse(b.raised_at) - Date.parse(a.raised_at))
    || (b.id - a.id));
}

// --- shared pieces -----------------------------------------------------------------------------

function severityBadge(alarm) {
  return h("span", { class: `badge sev-${alarm.severity}` },
    h("span", { "aria-hidden": "true", class: "icon" }, SEVERITY_ICON[alarm.severity] ?? "●"),
    ` ${severityWord(alarm.severity)}`);
}

function stateBadge(alarm) {
  return h("span", { class: `state state-${alarm.state}` }, t(`alarm.state.${alarm.state}`));
}

function staleNotice(ctx) {
  return ctx.live ? null : h("p", { class: "stale-marker" },
    h("span", { "aria-hidden": "true" }, "⚠ "), t("stale_marker"));
}

/** A value's assessment in words, with its symbol for the eye only. */
function flag(symbol, text) {
  return h("span", { class: "assessment" }, h("span", { "aria-hidden": "true" }, ` ${symbol} `), text);
}

/** The app's help on the triage order, under the intro of the patients and alarms pages. */
function orderHelp(ctx) {
  return h("details", { class: "help", "data-details": "help-order", open: ctx.isOpen("help-order", false) },
    h("summary", { "data-key": "help-order" }, t("help.order.title")),
    h("p", {}, t("help.order.patients")),
    h("p", {}, t("help.order.alarms")));
}

function heading(text) {
  return h("h1", { tabindex: "-1", id: "view-title" }, text);
}

const ACTIONS = { raised: "acknowledge", acknowledged: "start", resolved: "close" };

/** One alarm with what can be done next: acknowledge → take it → resolve (note) → close. */
export function alarmCard(ctx, alarm, { showPatient = true, headingLevel = "h2" } = {}) {
  const titleId = `alarm-${alarm.id}-title`;
  const patient = ctx.patient(alarm.patient_id);
  const me = ctx.subject();
  const lines = [h("span", {}, t("alarm.raised", { time: `${clock(alarm.raised_at)} (${ago(alarm.raised_at)})` }))];
  // An event (a fall, the panic button) is "1" of unit "1": no value worth reading out.
  if (alarm.trigger_value != null && alarm.trigger_unit !== "1") {
    lines.push(h("span", {}, t("alarm.measured", { value: valueText(alarm.trigger_value, alarm.trigger_unit ?? "") })));
  }
  if (alarm.device_id) {
    // "Ytterdør (Gang – dør)", "Bad – bevegelse" or "Blodtrykksmåler" when the platform knows
    // the device; its id only when it does not.
    const place = alarm.device_kind
      ? devicePlace({ sensor_kind: alarm.device_kind, room: alarm.device_room })
      : alarm.device_id;
    const known = alarm.device_name ? `${alarm.device_name} (${place})` : place;
    lines.push(h("span", { class: "alarm-device" }, t("alarm.device", { device: known })));
  }
  // People by name, never by id ("user:2"): "Kvittert av Kari", "Tatt av deg".
  const person = (subject, name) => (subject === me ? t("alarm.you") : name ?? t("alarm.someone"));
  if (alarm.acknowledged_by && alarm.acknowledged_at) {
    const who = person(alarm.acknowledged_by, alarm.acknowledged_by_name);
    lines.push(h("span", {}, t("alarm.acknowledged_by", { who, time: clock(alarm.acknowledged_at) })));
  }
  const takenByOther = alarm.state === "in_progress" && alarm.taken_by && alarm.taken_by !== me;
  if (alarm.taken_by && alarm.state === "in_progress") {
    lines.push(h("span", { class: "taken-by" }, t("alarm.taken_by", { who: person(alarm.taken_by, alarm.taken_by_name) })));
  }
  // Level 0 is her own team; past it the alarm has gone to someone else: say to whom.
  if (alarm.escalated_to && alarm.escalation_level && alarm.state === "raised") {
    lines.push(h("span", { class: "escalated" }, t("alarm.escalated", { to: t(`escalation.${alarm.escalated_to}`) })));
  }
  const actions = h("div", { class: "actions" });
  const action = ACTIONS[alarm.state];
  const step = ctx.pending.get(alarm.id);
  const statusId = `alarm-${alarm.id}-status`;
  // Pending → done or failed, said on the card itself; the button stays focusable (not disabled).
  const busy = step?.status === "pending";
  const stepLabel = (name) => {
    if (step?.action !== name) return t(`alarm.${name}`);
    return busy ? t(`alarm.pending.${name}`) : t("alarm.retry", { action: t(`alarm.${name}`) });
  };
  const stepButton = (name, attributes) => h("button", {
    class: `primary action-${name}`, "data-key": `alarm-${alarm.id}-${name}`,
    "aria-describedby": `${titleId} ${statusId}`,
    "aria-disabled": busy && step.action === name ? "true" : null, ...attributes,
  }, stepLabel(name));
  if (action) {
    actions.append(stepButton(action, { type: "button", onclick: () => ctx.act(alarm, action) }));
  } else if (takenByOther) {
    // A colleague has it: she may take it over, not resolve it behind the colleague's back.
    actions.append(stepButton("take_over", { type: "button", onclick: () => ctx.act(alarm, "take_over") }));
  } else if (alarm.state === "in_progress") {
    const noteId = `alarm-${alarm.id}-note`;
    const problemId = `alarm-${alarm.id}-problem`;
    const note = h("textarea", {
      id: noteId, name: "note", rows: 3, required: true, maxlength: 4000,
      "data-key": noteId, "aria-describedby": problemId,
      oninput: (e) => ctx.drafts.set(alarm.id, e.target.value),
    });
    note.value = ctx.drafts.get(alarm.id) ?? "";
    actions.append(h("form", {
      class: "resolve", novalidate: true,
      onsubmit: (e) => {
        e.preventDefault();
        const text = note.value.trim();
        const problem = document.getElementById(problemId);
        const step = ctx.pending.get(alarm.id);
        if (step?.status === "pending" && step.action === "resolve") return;
        if (!text) {
          problem.textContent = t("alarm.note_missing");
          note.setAttribute("aria-invalid", "true");
          note.focus();
          return;
        }
        ctx.act(alarm, "resolve", text);
      },
    },
    h("label", { for: noteId }, t("alarm.note_label")),
    note,
    h("p", { id: problemId, class: "problem" }),
    stepButton("resolve", { type: "submit" })));
  }
  actions.append(h("p", { id: statusId, class: `step-status${step?.status === "failed" ? " problem" : ""}`, role: "status" },
    step ? (busy ? t(`alarm.pending.${step.action}`) : step.reason) : ""));
  const Heading = headingLevel;
  return h("li", {
    class: `alarm-card sev-${alarm.severity} alarm-${alarm.state}`,
    "data-alarm-id": alarm.id,
  },
  h("article", { "aria-labelledby": titleId, tabindex: "-1", "data-key": `alarm-${alarm.id}-card` },
    h(Heading, { id: titleId, class: "alarm-title" },
      h("span", { "aria-hidden": "true", class: "icon" }, SEVERITY_ICON[alarm.severity] ?? "●"),
      " ", alarmName(alarm),
      showPatient ? [" – ", h("a", {
        href: `#/patients/${alarm.patient_id}`, "data-key": `alarm-${alarm.id}-patient`,
      }, patientName(patient))] : null),
    h("p", { class: "alarm-meta" }, severityBadge(alarm), " ", stateBadge(alarm), " ",
      lines.map((line, i) => [i ? " · " : "", line])),
    alarm.resolution_note ? h("p", { class: "note" }, t("alarm.note", { note: alarm.resolution_note })) : null,
    actions));
}

// --- sign in -----------------------------------------------------------------------------------

export function loginView(ctx) {
  const problemId = "login-problem";
  return [
    heading(t("login.title")),
    h("p", {}, t("login.intro")),
    h("form", {
      id: "login", class: "login", "aria-describedby": problemId, onsubmit: (e) => {
        e.preventDefault();
        const form = e.target;
        ctx.signIn(form.username.value, form.password.value, form);
      },
    },
    h("p", { id: problemId, class: "problem", role: "alert" }, ctx.loginProblem ?? ""),
    h("label", { for: "username" }, t("login.username")),
    // What she typed survives a redraw of the page (a live event, the end of a sign-out).
    h("input", { id: "username", name: "username", autocomplete: "username", required: true,
      autocapitalize: "none", spellcheck: "false", "data-key": "username",
      value: ctx.typed.username, oninput: (e) => { ctx.typed.username = e.target.value; } }),
    h("label", { for: "password" }, t("login.password")),
    h("input", { id: "password", name: "password", type: "password", required: true,
      autocomplete: "current-password", "data-key": "password",
      value: ctx.typed.password, oninput: (e) => { ctx.typed.password = e.target.value; } }),
    h("button", { type: "submit", class: "primary", "data-key": "sign-in" }, t("login.submit"))),
  ];
}

// --- my patients -------------------------------------------------------------------------------

function vitalCell(group, latest, thresholds) {
  const found = latestOf(group, latest);
  const label = t(`vital.${group.id}`);
  if (!found) return null;
  const assessed = found.parts.map((o) => assess(o, thresholds));
  const worst = assessed.find((a) => a.status !== "normal");
  const unit = unitText(found.parts[0].unit);
  const value = found.parts.map((o) => decimal(o.value)).join("/");
  const flags = [...new Set(found.parts.flatMap((o) => o.flags).filter((f) => !f.startsWith("device_user")))];
  const sample = sampleText(found.parts[0].code);
  return h("div", { class: `vital ${worst ? `out ${worst.status}` : "ok"}`, "data-vital": group.id },
    h("dt", {}, label),
    h("dd", {},
      h("span", { class: "value" }, value), " ", h("span", { class: "unit" }, unit),
      sample ? h("span", { class: "sample" }, ` (${sample})`) : null,
      worst ? flag(worst.status === "high" ? "▲" : "▼",
        assessmentText(worst, found.parts[assessed.indexOf(worst)].unit)) : null,
      flags.length ? h("span", { class: "flags" }, ` (${flags.join(", ").replaceAll("_", " ")})`) : null,
      h("span", { class: "when" }, deviceTime(found.time))));
}

export function patientsView(ctx) {
  const sorted = byUrgency(ctx.state.patients, (id) => ctx.state.thresholds.get(id));
  const withAlarms = sorted.filter(({ u }) => u.active.length).length;
  const list = h("ol", { class: "patient-list", "aria-label": t("patients.list_label") },
    sorted.map(({ p, u }) => {
      const thresholds = ctx.state.thresholds.get(p.id);
      const titleId = `patient-${p.id}-name`;
      const top = byAlarmUrgency(u.active);
      const vitals = GROUPS.map((g) => vitalCell(g, p.latest, thresholds)).filter(Boolean);
      const level = u.severity >= 0 ? Object.keys(SEVERITY_RANK).find((k) => SEVERITY_RANK[k] === u.severity) : "none";
      return h("li", { class: `patient-card urgency-${level}`, "data-patient-id": p.id },
        h("article", { "aria-labelledby": titleId },
          h("h2", { id: titleId }, h("a", { href: `#/patients/${p.id}`, "data-key": `patient-${p.id}` }, patientName(p))),
          top.length ? h("ul", { class: "alarm-badges" }, top.slice(0, 2).map((a) => h("li", {},
            h("span", { class: `badge sev-${a.severity}` },
              h("span", { "aria-hidden": "true", class: "icon" }, SEVERITY_ICON[a.severity]),
              ` ${t("alarm.badge", { severity: severityWord(a.severity), alarm: alarmName(a) })}`),
            " ", stateBadge(a))),
          top.length > 2 ? h("li", {}, t("patients.more_alarms", { count: top.length - 2 })) : null) : null,
          vitals.length ? h("dl", { class: "vitals" }, vitals) : h("p", { class: "no-values" }, t("patients.no_values"))));
    }));
  return [
    heading(t("patients.title")),
    staleNotice(ctx),
    h("p", { class: "intro" }, t("patients.summary", { count: sorted.length, alarms: withAlarms })),
    orderHelp(ctx),
    sorted.length ? list : h("p", {}, t("patients.empty")),
  ];
}

// --- alarm inbox -------------------------------------------------------------------------------

export function alarmsView(ctx) {
  const show = ctx.route.show;
  const alarms = byAlarmUrgency(show === "all" ? ctx.state.allAlarms : ctx.state.alarms);
  const filterName = uid("show");
  return [
    heading(t("alarms.title")),
    staleNotice(ctx),
    h("p", { class: "intro" }, t("alarms.intro")),
    orderHelp(ctx),
    h("fieldset", { class: "segmented" },
      h("legend", {}, t("alarms.show")),
      ["open", "all"].map((value) => {
        const id = `show-${value}`;
        return h("span", { class: "choice" },
          h("input", {
            type: "radio", id, name: filterName, value, checked: show === value, "data-key": id,
            onchange: () => ctx.navigate(value === "all" ? "#/alarms?show=all" : "#/alarms", { keepFocus: true }),
          }),
          h("label", { for: id }, t(`alarms.show_${value}`)));
      })),
    alarms.length
      ? h("ol", { class: "alarm-list", "aria-label": t("alarms.list_label") }, alarms.map((a) => alarmCard(ctx, a)))
      : h("p", { class: "empty" }, t(show === "all" ? "alarms.empty_all" : "alarms.empty")),
  ];
}

// --- one patient -------------------------------------------------------------------------------

export const RANGES = { "1d": 1, "7d": 7, "30d": 30, "90d": 90 };

function chartFor(ctx, group, data, thresholds, from, to) {
  const rows = data.observations.filter((o) => group.codes.includes(o.code));
  if (!rows.length) return null;
  const unit = rows[0].unit;
  const title = `${t(`vital.${group.id}`)} (${unitText(unit)})`;
  const point = (o) => ({ at: Date.parse(o.time), value: Number(o.value), status: assess(o, thresholds).status, o });
  let series;
  let tableRows;
  if (group.id === "bp") {
    const sys = rows.filter((o) => o.code === SYS).map(point);
    const dia = rows.filter((o) => o.code === DIA).map(point);
    series = [
      { label: t("vital.systolic"), line: "solid", marker: "circle", points: sys },
      { label: t("vital.diastolic"), line: "dashed", marker: "square", points: dia },
    ];
    const diaAt = new Map(dia.map((p) => [p.o.time, p]));
    tableRows = sys.map((p) => {
      const d = diaAt.get(p.o.time);
      const worst = [p, d].find((x) => x && x.status !== "normal");
      return [deviceTime(p.o.time), `${decimal(p.o.value)}/${d ? decimal(d.o.value) : "–"} ${unitText(unit)}`,
        assessmentText(worst ? assess(worst.o, thresholds) : { status: "normal" }, unit)];
    });
  } else {
    const points = rows.filter((o) => o.unit === unit).map(point);
    series = [{ label: t(`vital.${group.id}`), line: "solid", marker: "circle", points }];
    tableRows = points.map((p) => [
      deviceTime(p.o.time), valueText(p.o.value, unit), assessmentText(assess(p.o, thresholds), unit),
    ]);
  }
  const limits = [];
  const seen = new Set();
  for (const code of group.codes) {
    for (const rule of limitsFor(thresholds, code, unit)) {
      if (seen.has(rule.rule_id)) continue;
      seen.add(rule.rule_id);
      const limit = trim(rule.at);
      const text = t(rule.comparison === ">" ? "chart.limit_above" : "chart.limit_below", { limit: decimal(limit) });
      const which = rule.codes.includes(DIA) ? "vital.diastolic" : "vital.systolic";
      const notes = [
        group.id === "bp" ? t(which).toLocaleLowerCase(language()) : null,
        rule.personal ? t("chart.personal") : null,
      ].filter(Boolean);
      limits.push({ value: rule.at, label: text, note: notes.join(", "),
        series: group.id === "bp" ? t(which) : null,
        text: notes.length ? `${text} (${notes.join(", ")})` : text });
    }
  }
  const all = series.flatMap((se) => se.points);
  const values = all.map((p) => p.value);
  const newest = rows.reduce((a, o) => (Date.parse(o.time) > Date.parse(a.time) ? o : a));
  const latestText = group.id === "bp"
    ? `${tableRows.length ? tableRows.at(0)[1] : valueText(newest.value, unit)}, ${deviceTime(newest.time)}`
    : `${valueText(newest.value, unit)}, ${deviceTime(newest.time)}`;
  const span = (points) => {
    const vs = points.map((p) => p.value);
    return vs.length ? `${decimal(trim(Math.min(...vs)))}–${valueText(trim(Math.max(...vs)), unit)}` : "–";
  };
  const common = {
    count: group.id === "bp" ? series[0].points.length : all.length,
    from: deviceTime(rows.at(-1).time), to: deviceTime(rows[0].time), last: latestText,
  };
  const summary = [
    group.id === "bp"
      ? t("chart.summary_bp", { ...common, sys: span(series[0].points), dia: span(series[1].points) })
      : t("chart.summary", {
        ...common,
        min: valueText(trim(Math.min(...values)), unit),
        max: valueText(trim(Math.max(...values)), unit),
      }),
    limits.length ? t("chart.thresholds", { list: limits.map((l) => l.text).join(", ") }) : t("chart.no_thresholds"),
  ].join(" ");
  return lineChart({
    group: group.id, title, summary, series, limits, from, to,
    table: { columns: [t("chart.col.time"), t("chart.col.value"), t("chart.col.status")], rows: tableRows },
    open: ctx.isOpen(`table-${group.id}`, false),
  });
}

function eventsSection(ctx, data, from, to) {
  const events = data.events.filter((o) => EVENT_KINDS[o.code]);
  const lines = [];
  for (const o of events) { // newest first; motion within 15 min folds into one line
    const text = eventText(o);
    if (!text) continue;
    const kind = EVENT_KINDS[o.code];
    const last = lines.at(-1);
    if (kind.id === "motion" && last?.kind === "motion" && Date.parse(last.first.time) - Date.parse(o.time) < 15 * 60_000) {
      last.count += 1;
      last.first = o;
      continue;
    }
    lines.push({ kind: kind.id, urgent: kind.urgent && Number(o.value) !== 0, o, first: o, count: 1, text });
  }
  const lanes = LANES.map((lane) => ({
    label: t(`events.lane.${lane}`),
    events: events
      .filter((o) => EVENT_KINDS[o.code].lane === lane && (lane !== "motion" || Number(o.value) !== 0))
      .map((o) => {
        const on = Number(o.value) !== 0;
        return { at: Date.parse(o.time), on, urgent: Boolean(EVENT_KINDS[o.code].urgent) && on };
      }),
  }));
  const summary = t("events.overview", {
    summary: lanes.map((l) => t("events.count", { label: l.label, count: l.events.length })).join(", "),
  });
  const days = [];
  for (const line of lines) {
    const day = deviceDay(line.o.time);
    if (days.at(-1)?.key !== day.key) days.push({ ...day, lines: [] });
    days.at(-1).lines.push(line);
  }
  const titleId = "events-title";
  return h("section", { "aria-labelledby": titleId, class: "events" },
    h("h2", { id: titleId }, t("events.title")),
    h("p", {}, t("events.intro")),
    lines.length ? [
      laneChart({ lanes, from, to, summary }),
      h("ol", { class: "timeline" }, days.map((day, i) => h("li", {},
        h("details", { "data-details": `day-${day.key}`, open: ctx.isOpen(`day-${day.key}`, i === 0) },
          h("summary", { "data-key": `day-${day.key}` },
            h("span", { class: "day" }, day.label), h("span", {}, `– ${t("events.day_count", { count: day.lines.length })}`)),
          h("ol", {}, day.lines.map((line) => h("li", { class: `event event-${line.kind}${line.urgent ? " urgent" : ""}` },
            h("time", { datetime: line.o.time }, line.count > 1
              ? `${deviceTime(line.first.time, { date: false })}–${deviceTime(line.o.time, { date: false })}`
              : deviceTime(line.o.time, { date: false })),
            " ",
            h("span", { class: "event-icon", "aria-hidden": "true" }, line.urgent ? "⚠" : "•"),
            " ",
            line.count > 1 ? t("events.motion.n", { count: line.count }) : line.text))))))),
    ] : h("p", { class: "empty" }, t("events.none")));
}

/** A device's self-check in words: "Control solution 5,9 mmol/L, 06.12. 08:15". */
function checkText(check) {
  const what = check.code === "TRY_DEV_GLUCOSE_CONTROL_CHECK"
    ? t("devices.check.control", { value: valueText(check.value, check.unit) })
    : t("devices.check.alarm_test");
  return `${what}, ${deviceTime(check.time)}`;
}

function devicesSection(data, now) {
  const titleId = "devices-title";
  const row = (d) => {
    // a percentage below the limit, or the sensor's own "battery low" when it has no percentage
    const low = d.battery_percent !== null
      ? Number(d.battery_percent) < LOW_BATTERY : d.battery_low === true;
    const silentFor = d.last_seen ? now - Date.parse(d.last_seen) : null;
    const silent = silentFor !== null && silentFor > 36 * 3_600_000;
    const gateway = d.gateway_online === null
      ? t("devices.gateway_unknown", { id: d.gateway_id })
      : t(d.gateway_online ? "devices.gateway_online" : "devices.gateway_offline", { id: d.gateway_id });
    return h("tr", { "data-device-id": d.device_id },
      h("th", { scope: "row" }, h("span", { class: "device-kind" }, deviceLabel(d)), h("br"),
        d.name ? [h("span", { class: "device-place" }, devicePlace(d)), h("br")] : null,
        h("span", { class: "device-id" }, d.device_id),
        d.last_check ? [h("br"), h("span", { class: "device-check" }, checkText(d.last_check))] : null),
      h("td", { class: low ? "out low" : "", "data-label": t("devices.col.battery") }, [
        d.battery_percent === null ? (low ? null : t("devices.unknown")) : `${decimal(d.battery_percent)} %`,
        low ? flag("▼", t("devices.battery_low")) : null]),
      h("td", { class: silent ? "out" : "", "data-label": t("devices.col.last_seen") }, d.last_seen ? [
        deviceTime(d.last_seen), h("br"), h("span", { class: "when" }, ago(d.last_seen, now)),
        silent ? flag("⚠", t("devices.silent", { duration: duration(silentFor) })) : null,
      ] : t("devices.never")),
      h("td", { class: d.gateway_online === false ? "out" : "", "data-label": t("devices.col.gateway") },
        d.gateway_online === false ? h("span", { "aria-hidden": "true" }, "⚠ ") : null, gateway));
  };
  // Grouped by room (the home gateway's sensor map), rooms by name; devices without one last.
  const rooms = new Map();
  for (const d of [...data.devices].sort((a, b) => deviceLabel(a).localeCompare(deviceLabel(b), language()))) {
    const room = d.room ?? "";
    if (!rooms.has(room)) rooms.set(room, []);
    rooms.get(room).push(d);
  }
  const order = [...rooms.keys()].sort((a, b) => (!a - !b) || a.localeCompare(b, language()));
  const grouped = rooms.size > 1 || !rooms.has("");
  const rows = order.map((room) => h("tbody", { "data-room": room },
    grouped ? h("tr", { class: "room-row" },
      h("th", { scope: "colgroup", colspan: 4 }, room || t("devices.no_room"))) : null,
    rooms.get(room).map(row)));
  return h("section", { "aria-labelledby": titleId, class: "devices" },
    h("h2", { id: titleId }, t("devices.title")),
    rows.length ? h("div", { class: "table-scroll" }, h("table", {},
      h("caption", { class: "visually-hidden" }, t("devices.title")),
      h("thead", {}, h("tr", {},
        ["device", "battery", "last_seen", "gateway"].map((c) => h("th", { scope: "col" }, t(`devices.col.${c}`))))),
      rows)) : h("p", {}, t("devices.none")));
}

export function patientView(ctx) {
  const id = ctx.route.id;
  const patient = ctx.patient(id);
  const data = ctx.state.detail?.id === id ? ctx.state.detail : null;
  if (!patient && ctx.state.loaded) {
    return [heading(t("patient.not_found")), h("p", {}, h("a", { href: "#/patients" }, t("patient.back")))];
  }
  const head = [
    h("p", { class: "back" }, h("a", { href: "#/patients", "data-key": "back" },
      h("span", { "aria-hidden": "true", class: "arrow" }, "←"), t("patient.back"))),
    heading(patientName(patient)),
    staleNotice(ctx),
    patient?.gp_name ? h("p", { class: "intro" }, t("patient.gp", { name: patient.gp_name })) : null,
    carePlanLink(id),
  ];
  if (!data || !data.loaded) return [...head, h("p", { role: "status" }, t("patient.loading"))];

  const open = byAlarmUrgency(data.alarms.filter((a) => a.state !== "closed"));
  const earlier = data.alarms.filter((a) => a.state === "closed").slice(0, 5);
  const rangeName = uid("range");
  const to = data.to;
  const from = data.from;
  const thresholds = data.thresholds;
  const charts = GROUPS.map((g) => chartFor(ctx, g, data, thresholds, from, to)).filter(Boolean);
  return [
    ...head,
    h("section", { "aria-labelledby": "alarms-title", class: "patient-alarms" },
      h("h2", { id: "alarms-title" }, t("patient.alarms")),
      open.length
        ? h("ol", { class: "alarm-list" }, open.map((a) => alarmCard(ctx, a, { showPatient: false, headingLevel: "h3" })))
        : h("p", {}, t("patient.no_open_alarms")),
      earlier.length ? h("details", {
        class: "earlier", "data-details": "earlier-alarms", open: ctx.isOpen("earlier-alarms", false),
      },
        h("summary", { "data-key": "earlier-alarms" }, t("patient.recent_alarms")),
        h("ul", {}, earlier.map((a) => h("li", {},
          `${clock(a.raised_at, { date: true })} – ${alarmName(a)} (${severityWord(a.severity, { lower: true })})`,
          a.resolution_note ? ` – ${t("alarm.note", { note: a.resolution_note })}` : "")))) : null),
    h("section", { "aria-labelledby": "trends-title", class: "trends" },
      h("h2", { id: "trends-title" }, t("patient.trends")),
      h("fieldset", { class: "segmented" },
        h("legend", {}, t("patient.range")),
        Object.keys(RANGES).map((range) => {
          const rid = `range-${range}`;
          return h("span", { class: "choice" },
            h("input", { type: "radio", id: rid, name: rangeName, value: range, checked: ctx.route.range === range,
              "data-key": rid, onchange: () => ctx.navigate(`#/patients/${id}?range=${range}`, { keepFocus: true }) }),
            h("label", { for: rid }, t(`patient.range.${range}`)));
        })),
      data.truncated ? h("p", {}, t("patient.truncated", { count: data.observations.length })) : null,
      charts.length ? h("div", { class: "charts" }, charts) : h("p", { class: "empty" }, t("patient.no_measurements"))),
    eventsSection(ctx, data, from, to),
    devicesSection(data, Date.now()),
  ];
}

// --- settings ----------------------------------------------------------------------------------

export function settingsView(ctx) {
  const settings = ctx.settings;
  const name = ctx.userName();
  return [
    heading(t("settings.title")),
    name ? h("p", { class: "intro" }, t("signed_in_as", { name })) : null,
    h("form", { class: "settings", onsubmit: (e) => e.preventDefault() },
      h("fieldset", {},
        h("legend", {}, t("settings.language")),
        LANGUAGES.map((lang) => h("span", { class: "choice" },
          h("input", { type: "radio", id: `lang-${lang.code}`, name: "lang", value: lang.code,
            checked: settings.lang === lang.code, "data-key": `lang-${lang.code}`,
            onchange: () => ctx.updateSettings({ lang: lang.code }) }),
          h("label", { for: `lang-${lang.code}`, lang: lang.code }, lang.name)))),
      h("fieldset", {},
        h("legend", {}, t("settings.alerting")),
        h("p", { class: "hint", id: "alerting-hint" }, t("settings.alerting_intro")),
        h("span", { class: "choice" },
          h("input", { type: "checkbox", id: "sound", checked: settings.sound, "data-key": "sound",
            "aria-describedby": "alerting-hint",
            onchange: (e) => ctx.updateSettings({ sound: e.target.checked }) }),
          h("label", { for: "sound" }, t("settings.sound"))),
        h("label", { for: "level", class: "block" }, t("settings.level")),
        h("select", { id: "level", "data-key": "level", onchange: (e) => ctx.updateSettings({ level: e.target.value }) },
          ["critical", "high", "all"].map((level) => h("option", { value: level, selected: settings.level === level },
            t(`settings.level.${level}`)))),
        h("p", {},
          h("button", { type: "button", "data-key": "test-sound", onclick: () => ctx.testSound() }, t("settings.test_sound")),
          " ", h("span", { role: "status", id: "sound-state" }, ctx.soundNote ?? "")))),
  ];
}
