// The nurse app: sign in, my patients by urgency, one patient's trends, events and devices,
// the alarm inbox, settings. Plain ES modules, no build step; pages are hash routes:
// #/patients, #/patients/{id}?range=7d, #/alarms, #/settings.

import * as api from "./api.js";
import { h, keepingFocus } from "./dom.js";
import { playAlarmSound, soundState, unlockSound, watchSound } from "./alerting.js";
import { alarmName, clock, setLanguage, severityWord, t } from "./i18n.js";
import { PlatformWatch } from "./platform.js";
import { Drafts, SessionKeeper, renderSessionEnded, renderSessionEnding } from "./session.js";
import { carePlanView } from "./careplan.js";
import { adminView, caresForPatients, forgetAdminState, isAdmin, leftSection, showNavFor } from "./admin.js";
import { LiveStream, STALE_AFTER_MS } from "./stream.js";
import { EVENT_CODES, VITAL_CODES } from "./vitals.js";
import {
  RANGES, SEVERITY_RANK, alarmsView, byUrgency, loginView, patientName, patientView,
  patientsView, settingsView,
} from "./views.js";

const SETTINGS_KEY = "tryggheim.settings";
const BATTERY_CODE = "TRY_EVT_DEVICE_BATTERY";
const LEVELS = { critical: 3, high: 2, all: 0 };
const DAY = 86_400_000;

// --- settings (this tablet) ----------------------------------------------------------------

function loadSettings() {
  const defaults = { lang: "nb", sound: true, level: "high" };
  try {
    return { ...defaults, ...JSON.parse(localStorage.getItem(SETTINGS_KEY) ?? "{}") };
  } catch {
    return defaults;
  }
}

const settings = loadSettings();
setLanguage(settings.lang);

// --- state -----------------------------------------------------------------------------------

const state = {
  patients: [],
  thresholds: new Map(), // patient id → thresholds in effect
  alarms: [], // open alarms (not closed)
  allAlarms: [], // the newest, any state (#/alarms?show=all)
  loaded: false,
  detail: null, // the open patient's data
  known: null, // alarm ids seen since sign-in (null before the first load)
  banner: [], // new alarms announced and not yet acknowledged or hidden
  connection: "connecting",
  lastLive: null,
  updatedAt: null,
  top: null, // the patient at the top of the list
  platform: null, // the platform's own problems (coordinators); null: not asked or not allowed
};
const drafts = new Drafts(); // alarm id → resolution note being written (kept in this tab)
const pending = new Map(); // alarm id → { action, status: "pending" | "failed", reason } of the nurse's step
const openDetails = new Map(); // <details data-details> the nurse opened (true) or closed
let route = parseRoute();
let stream = null;
// The view openings her loads are audited by (one row per patient per opening, docs/auth.md):
// the overview (patients, alarms: every page shows them) and the live session from sign-in or
// a reconnection, a patient's page from when it is opened.
const views = { overview: null, live: null, patient: null };
const platformWatch = new PlatformWatch((problems) => { state.platform = problems; render(); });
let loginProblem = null;
let lastSubject = null; // who signed in last (the screen kept after her session ended is hers)
let sessionEnded = null; // { at }: the session ended; its last screen is kept, marked stale
let sessionEnding = null; // Date: the session's maximum is near; she is asked to sign in again
let soundNote = null;
let focusView = false;

const ctx = {
  state, drafts, pending, settings,
  isOpen: (key, otherwise) => openDetails.get(key) ?? otherwise,
  get route() { return route; },
  get live() { return state.connection === "live"; },
  get loginProblem() { return loginProblem; },
  get soundNote() { return soundNote; },
  patient: (id) => state.patients.find((p) => p.id === id),
  // After the session ended the screen she keeps is still hers: her alarms keep their forms.
  typed: { username: "", password: "" }, // the sign-in form's fields, kept across redraws
  subject: () => (lastSubject = api.claims()?.sub ?? lastSubject),
  userName: () => api.claims()?.name,
  act, signIn, navigate, updateSettings, testSound,
  render: () => render(),
  failed: (error) => failed(error),
};

// --- routing ---------------------------------------------------------------------------------

function parseRoute() {
  const [path, query = ""] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query);
  const plan = path.match(/^\/patients\/(\d+)\/care-plan$/);
  if (plan) return { name: "careplan", id: Number(plan[1]) };
  const patient = path.match(/^\/patients\/(\d+)$/);
  if (patient) {
    const range = RANGES[params.get("range")] ? params.get("range") : "7d";
    return { name: "patient", id: Number(patient[1]), range };
  }
  if (path === "/alarms") return { name: "alarms", show: params.get("show") === "all" ? "all" : "open" };
  if (path === "/settings") return { name: "settings" };
  const admin = path.match(/^\/admin(?:\/(\w+))?$/);
  if (admin) return { name: "admin", section: admin[1] ?? null };
  return { name: "patients" };
}

function navigate(hash, { keepFocus = false } = {}) {
  focusView = !keepFocus;
  if (location.hash === hash) onRoute();
  else location.hash = hash;
}

function onRoute() {
  const before = route;
  route = parseRoute();
  if (before.name !== route.name || before.section !== route.section) leftSection();
  if (!api.token() || !caresForPatients()) { render({ focus: true }); return; }
  if (route.name === "patient" && (state.detail?.id !== route.id || state.detail?.range !== route.range)) {
    if (state.detail?.id !== route.id) state.detail = null;
    refreshNow({ detail: true });
  }
  if (route.name === "alarms" && route.show === "all" && before.show !== "all") refreshNow({ overview: true });
  render({ focus: focusView || before.name !== route.name || before.id !== route.id });
  focusView = false;
}

// --- rendering -------------------------------------------------------------------------------

const VIEWS = {
  patients: patientsView, patient: patientView, alarms: alarmsView, settings: settingsView, careplan: carePlanView,
  admin: adminView,
};

/** The view to show: an admin without a care role has her own home, never the patients. */
function viewName(signedIn) {
  if (signedIn && !caresForPatients() && route.name !== "settings") return "admin";
  if (route.name === "admin" && !isAdmin()) return "patients";
  return route.name;
}

function viewTitle(signedIn) {
  if (!signedIn) return t("login.title");
  if (route.name === "patient") return patientName(ctx.patient(route.id));
  return t(`${viewName(signedIn)}.title`);
}

function render({ focus = false } = {}) {
  // After the session ended, the last screen stays (not live) under the notice.
  const signedIn = Boolean(api.token()) || sessionEnded !== null;
  renderSessionEnded(document.getElementById("session-ended"), sessionEnded, () => showLogin(null, { keepDrafts: true }));
  renderSessionEnding(document.getElementById("session-ending"), api.token() && !sessionEnded ? sessionEnding : null,
    () => showLogin(null, { keepDrafts: true }));
  renderShell(signedIn);
  const main = document.getElementById("main");
  const view = signedIn ? VIEWS[viewName(signedIn)] : loginView;
  // The cards around the alarm she has focused, as they are before this redraw.
  const focusedAlarm = document.activeElement?.closest?.(".alarm-list > li[data-alarm-id]")?.dataset.alarmId;
  const around = focusedAlarm ? neighbours({ id: focusedAlarm }) : [];
  keepingFocus(() => main.replaceChildren(...[view(ctx)].flat(Infinity).filter(Boolean)), (key) => focusInstead(key, around));
  main.classList.toggle("not-live", signedIn && state.connection !== null && state.connection !== "live");
  document.title = sessionEnded ? `${t("connection.ended")} – Tryggheim` : tabTitle(signedIn);
  // Scrolling to what has focus leaves room for the alerts fixed at the top of the viewport.
  document.documentElement.style.scrollPaddingTop = `${document.getElementById("alerts").offsetHeight + 8}px`;
  if (focus) document.getElementById("view-title")?.focus();
}

/** The tab says what the banner says: the count of unacknowledged alarms and, while the banner
 * shows one, that alarm first (a nurse in another tab sees the same alarm as on the page). */
function tabTitle(signedIn) {
  if (!signedIn) return `${viewTitle(false)} – Tryggheim`;
  const unacknowledged = state.alarms.filter((a) => a.state === "raised").length;
  const count = unacknowledged ? `(${unacknowledged}) ` : "";
  const [lead] = bannerAlarms(signedIn);
  return lead ? `${count}⚠ ${bannerText(lead)} – Tryggheim` : `${count}${viewTitle(true)} – Tryggheim`;
}

function bannerAlarms(signedIn) {
  if (!signedIn) return [];
  const alarms = state.banner.map((id) => state.alarms.find((a) => a.id === id)).filter(Boolean);
  return alarms.sort((a, b) => (SEVERITY_RANK[b.severity] ?? 0) - (SEVERITY_RANK[a.severity] ?? 0)
    || Date.parse(b.raised_at) - Date.parse(a.raised_at));
}

function bannerText(alarm) {
  return t("new_alarms.item", {
    severity: severityWord(alarm.severity), alarm: alarmName(alarm), patient: patientName(ctx.patient(alarm.patient_id)),
  });
}

/** Where focus goes when what had it is gone. A button of an alarm that changed (a colleague
 * acknowledged it, say) leaves focus on that alarm's card, never on the next step's button:
 * Enter must not act on what she did not choose. An alarm that left the list hands focus to
 * the nearest card still shown (`around`, nearest first), not to the top of the page. */
function focusInstead(key, around = []) {
  const cardOf = (id) => document.querySelector(`[data-key="alarm-${id}-card"]`);
  const alarm = key?.match(/^alarm-(\d+)-/)?.[1];
  return (alarm ? cardOf(alarm) : null) ?? around.map(cardOf).find(Boolean)
    ?? document.getElementById("view-title");
}

function renderShell(signedIn) {
  for (const element of document.querySelectorAll("[data-i18n]")) {
    element.textContent = t(element.dataset.i18n);
  }
  for (const element of document.querySelectorAll("[data-i18n-label]")) {
    element.setAttribute("aria-label", t(element.dataset.i18nLabel));
  }
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("sign-out").hidden = !signedIn;
  showNavFor(signedIn);
  for (const link of document.querySelectorAll("#nav a")) {
    const current = signedIn && (link.dataset.route === route.name
      || (link.dataset.route === "patients" && route.name === "patient"));
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const count = state.alarms.filter((a) => a.state === "raised").length;
  const badge = document.getElementById("alarm-count");
  badge.hidden = !count;
  // A phone shows the number only; a screen reader hears the words.
  badge.replaceChildren(...(count ? [h("span", { class: "count-full" }, t("nav.open_alarms", { count })),
    h("span", { class: "count-short", "aria-hidden": "true" }, String(count))] : []));
  const name = api.claims()?.name;
  document.getElementById("user").textContent = signedIn && name ? t("signed_in_as", { name }) : "";
  const language = document.getElementById("language");
  language.textContent = t("language.switch");
  language.lang = settings.lang === "nb" ? "en" : "nb";
  renderConnection(signedIn);
  renderPlatform(signedIn);
  renderSound(signedIn);
  renderBanner(signedIn);
}

/** The alarm sound's state is always in the header; when the browser blocks it (after a reload,
 * until the first touch) a banner says so, and one tap arms it. */
function renderSound(signedIn) {
  const sound = !settings.sound ? "off" : soundState();
  const status = document.getElementById("sound-status");
  status.hidden = !signedIn;
  status.dataset.state = sound;
  status.textContent = t(`sound.status.${sound}`);
  status.title = t(`sound.status_hint.${sound}`);
  status.setAttribute("aria-label", `${t(`sound.status.${sound}`)}. ${t(`sound.status_hint.${sound}`)}`);
  const blocked = signedIn && sound === "blocked";
  document.getElementById("sound-banner").hidden = !blocked;
  const text = blocked ? t("sound.blocked") : "";
  const alert = document.getElementById("sound-alert");
  if (alert.textContent !== text) alert.textContent = text;
}

function armSound() {
  unlockSound();
  render();
}

function onSoundStatus() {
  const sound = !settings.sound ? "off" : soundState();
  if (sound === "off") updateSettings({ sound: true });
  if (sound === "running") testSound();
  else armSound();
}

function renderPlatform(signedIn) {
  const problems = signedIn ? state.platform ?? [] : [];
  const text = problems.length
    ? t("platform.degraded", { problems: problems.map((p) => t(`platform.${p}`)).join("; ") })
    : "";
  const alert = document.getElementById("platform-alert");
  if (alert.textContent !== text) alert.textContent = text;
  document.getElementById("platform-banner").hidden = !problems.length;
}

function renderConnection(signedIn) {
  const status = document.getElementById("connection");
  const alert = document.getElementById("connection-alert");
  const banner = document.getElementById("connection-banner");
  const retry = document.getElementById("reconnect");
  const st = signedIn ? state.connection : null;
  const statusText = st ? t(`connection.${st}`) : "";
  if (status.dataset.state !== (st ?? "") || status.dataset.lang !== settings.lang) {
    status.dataset.state = st ?? "";
    status.dataset.lang = settings.lang;
    const dot = { live: "●", connecting: "○" }[st] ?? "⚠";
    status.replaceChildren(...(st ? [h("span", { class: "dot", "aria-hidden": "true" }, dot), ` ${statusText}`] : []));
  }
  document.getElementById("updated").textContent = signedIn && state.updatedAt
    ? t("connection.updated", { time: clock(state.updatedAt, { seconds: true }) }) : "";
  const down = st === "stale" || st === "lost";
  const text = down ? [
    t(st === "stale" ? "connection.stale_title" : "connection.lost_title", { seconds: Math.round(STALE_AFTER_MS / 1000) }),
    state.lastLive ? t("connection.since", { time: clock(state.lastLive, { seconds: true }) }) : t("connection.never"),
  ].join(" ") : "";
  if (alert.textContent !== text) alert.textContent = text;
  banner.classList.toggle("down", down);
  retry.hidden = !down;
}

function renderBanner(signedIn) {
  const section = document.getElementById("new-alarms");
  const alarms = bannerAlarms(signedIn);
  section.hidden = !alarms.length;
  if (!alarms.length) { section.replaceChildren(); return; }
  const flashing = section.classList.contains("flash");
  section.className = `new-alarms sev-${alarms[0].severity}${flashing ? " flash" : ""}`;
  keepingFocus(() => section.replaceChildren(...[
    h("h2", { id: "new-alarms-title" }, h("span", { "aria-hidden": "true" }, "⚠ "), t("new_alarms.title")),
    h("ul", {}, alarms.map((a) => {
      const patient = patientName(ctx.patient(a.patient_id));
      const step = pending.get(a.id)?.action === "acknowledge" ? pending.get(a.id) : null;
      return h("li", { class: `sev-${a.severity}`, "data-alarm-id": a.id },
        h("p", {},
          h("strong", {}, bannerText(a)),
          ` · ${clock(a.raised_at)}`),
        h("button", {
          type: "button", class: "primary", "data-key": `banner-${a.id}`, onclick: () => act(a, "acknowledge"),
          "aria-disabled": step?.status === "pending" ? "true" : null,
        }, !step ? t("alarm.acknowledge")
          : step.status === "pending" ? t("alarm.pending.acknowledge")
            : t("alarm.retry", { action: t("alarm.acknowledge") }),
        h("span", { class: "visually-hidden" }, `: ${alarmName(a)}, ${patient}`)),
        // The same pending → failed (with the reason) as on the alarm's card.
        step?.status === "failed" ? h("p", { class: "problem", role: "status" }, step.reason) : null);
    })),
    h("p", { class: "banner-actions" },
      h("a", { href: "#/alarms", "data-key": "banner-open" }, t("new_alarms.open")),
      h("button", {
        type: "button", class: "quiet", "data-key": "banner-dismiss",
        onclick: () => { state.banner = []; render(); },
      }, t("new_alarms.dismiss"))),
  ].filter(Boolean)));
}

const announcing = new Map();
function announce(text, { urgent = false } = {}) {
  const id = urgent ? "announce-alert" : "announce-polite";
  const region = document.getElementById(id);
  region.textContent = "";
  clearTimeout(announcing.get(id));
  // A fresh text node after a moment, so that the same words twice are announced twice.
  announcing.set(id, setTimeout(() => { region.textContent = text; }, 50));
}

// --- data ------------------------------------------------------------------------------------

let wanted = { overview: false, detail: false };
let timer = null;
let running = null;

/** Reload soon (a cuff reading brings four values at once: one reload for all of them). */
function refreshSoon(parts) {
  wanted = { overview: wanted.overview || Boolean(parts.overview), detail: wanted.detail || Boolean(parts.detail) };
  if (!timer && !running) timer = setTimeout(runRefresh, 250);
}

/** Everything shown loaded again at once: the list, and her page if one is open. */
function reloadShown() {
  refreshNow({ overview: true, detail: route.name === "patient" });
}

function refreshNow(parts) {
  clearTimeout(timer);
  timer = null;
  wanted = { overview: wanted.overview || Boolean(parts.overview), detail: wanted.detail || Boolean(parts.detail) };
  if (!running) runRefresh();
}

async function runRefresh() {
  timer = null;
  const parts = wanted;
  wanted = { overview: false, detail: false };
  running = (async () => {
    try {
      if (parts.overview || !state.loaded) await loadOverview();
      if (parts.detail && route.name === "patient") await loadDetail(route.id, route.range);
      render();
    } catch (error) {
      failed(error);
    }
  })();
  await running;
  running = null;
  if (wanted.overview || wanted.detail) timer = setTimeout(runRefresh, 250);
}

async function loadOverview() {
  const issued = performance.now();
  const [patients, alarms, thresholds, all] = await Promise.all([
    api.get("api/v1/patients", { view: views.overview }),
    api.get("api/v1/alarms?state=open&limit=1000", { view: views.overview }),
    api.get("api/v1/thresholds", { view: views.overview }),
    route.name === "alarms" && route.show === "all"
      ? api.get("api/v1/alarms?state=all&limit=100", { view: views.overview }) : null,
  ]);
  for (const patient of patients) patient.open_alarms = freshest(patient.open_alarms, { open: true });
  // An alarm the live stream brought while this load was under way, raised after its answer
  // was made: kept (and, before the first load, announced as new), not dropped from the list.
  const raisedSince = state.alarms.filter((a) => (liveSince.get(a.id) ?? -1) > issued
    && a.state !== "closed" && !alarms.some((b) => b.id === a.id));
  state.patients = patients;
  state.alarms = [...raisedSince, ...freshest(alarms, { open: true })];
  if (all) state.allAlarms = freshest(all);
  state.thresholds = new Map(thresholds.map((p) => [p.patient_id, p.thresholds]));
  state.loaded = true;
  state.updatedAt = new Date();
  noticeNewAlarms([...raisedSince, ...alarms]);
  noticeReorder();
}

async function loadDetail(id, range) {
  const to = Date.now();
  const from = to - RANGES[range] * DAY;
  const since = encodeURIComponent(new Date(from).toISOString());
  const base = `api/v1/patients/${id}`;
  const codes = (list) => list.map((c) => `code=${encodeURIComponent(c)}`).join("&");
  if (views.patient?.id !== id) views.patient = { id, view: api.openView("patient") };
  const { view } = views.patient;
  const [thresholds, observations, events, devices, alarms] = await Promise.all([
    api.get(`${base}/thresholds`, { view }),
    api.request(`${base}/observations?since=${since}&limit=10000&${codes(VITAL_CODES)}`, { view }),
    api.get(`${base}/observations?since=${since}&limit=2000&${codes(EVENT_CODES)}`, { view }),
    api.get(`${base}/devices`, { view }),
    api.get(`api/v1/alarms?patient_id=${id}&state=all&limit=50`, { view }),
  ]);
  if (route.name !== "patient" || route.id !== id || route.range !== range) return; // moved on
  state.detail = {
    id, range, from, to, thresholds, events, devices, alarms: freshest(alarms), loaded: true,
    observations: observations.data,
    truncated: observations.response.headers.has("X-Next-Cursor"),
  };
}

/** New alarms since the last load (live, or missed while disconnected): shown at the top of
 * every page, read out, and with the sound if the nurse wants it. */
function noticeNewAlarms(alarms) {
  if (state.known === null) {
    // What the first load finds is known already, except an alarm the live stream brought
    // before that load answered: it is new. (One the stream brings after it: applyAlarm.)
    state.known = new Set(alarms.filter((a) => !arrivedLive.has(a.id)).map((a) => a.id));
    firstFound = new Set(state.known);
    arrivedLive.clear();
  }
  const fresh = [];
  for (const alarm of alarms) {
    if (state.known.has(alarm.id)) continue;
    state.known.add(alarm.id);
    if (alarm.state !== "raised") continue;
    if ((SEVERITY_RANK[alarm.severity] ?? 0) < LEVELS[settings.level]) continue;
    fresh.push(alarm);
  }
  state.banner = state.banner.filter((id) => alarms.some((a) => a.id === id && a.state === "raised"));
  if (!fresh.length) return;
  state.banner.push(...fresh.map((a) => a.id));
  announce(fresh.map((a) => t("new_alarms.announce", {
    severity: severityWord(a.severity, { lower: true }), alarm: alarmName(a), patient: patientName(ctx.patient(a.patient_id)),
  })).join(" "), { urgent: true });
  const banner = document.getElementById("new-alarms");
  banner.classList.remove("flash");
  requestAnimationFrame(() => banner.classList.add("flash"));
  if (settings.sound) {
    playAlarmSound().then(() => render());
  }
}

function noticeReorder() {
  const [first] = byUrgency(state.patients, (id) => state.thresholds.get(id));
  const top = first?.p.id ?? null;
  if (state.top !== null && top !== null && top !== state.top && route.name === "patients") {
    announce(t("patients.new_top", { name: patientName(first.p) }));
  }
  state.top = top;
}

/** The newest state seen of each alarm (by how many steps its history has): a list fetched
 * before a step of hers answered must not put the alarm back as it was (focus on its next
 * step would be lost, and a closed alarm would come back until the next refresh). */
const newestAlarms = new Map();

function newest(alarm) {
  const known = newestAlarms.get(alarm.id);
  if (known && (known.history?.length ?? 0) > (alarm.history?.length ?? 0)) return known;
  newestAlarms.set(alarm.id, alarm);
  return alarm;
}

/** A fetched list of alarms with each one as new as already seen (`open`: only those still open). */
function freshest(alarms, { open = false } = {}) {
  const fresh = alarms.map(newest);
  return open ? fresh.filter((a) => a.state !== "closed") : fresh;
}

function replaceAlarm(updated) {
  newest(updated);
  const swap = (list) => list.map((a) => (a.id === updated.id ? updated : a));
  state.alarms = swap(state.alarms).filter((a) => a.state !== "closed");
  state.allAlarms = swap(state.allAlarms);
  if (state.detail) state.detail.alarms = swap(state.detail.alarms);
  for (const patient of state.patients) {
    if (patient.id === updated.patient_id) {
      patient.open_alarms = swap(patient.open_alarms).filter((a) => a.state !== "closed");
    }
  }
  if (updated.state !== "raised") state.banner = state.banner.filter((id) => id !== updated.id);
}

/** The alarm cards around `alarm`, nearest first in page order: those after it in its list,
 * then on into the next lists, then those before it (to move focus to a neighbour when it
 * leaves its list; the last card of a list hands focus to the next list, not to the top). */
function neighbours(alarm) {
  const ids = [...document.querySelectorAll(".alarm-list > li[data-alarm-id]")].map((li) => li.dataset.alarmId);
  const at = ids.indexOf(String(alarm.id));
  return at < 0 ? [] : [...ids.slice(at + 1), ...ids.slice(0, at).reverse()];
}

/** Focus stays with the alarm she acted on: its next step (the note after "take it"), scrolled
 * into view; an alarm that has left the list hands focus to the nearest alarm's card, or the
 * list. */
function focusAfter(alarm, action, around) {
  let target = action === "start" || action === "take_over"
    ? document.getElementById(`alarm-${alarm.id}-note`)
    : document.querySelector(`[data-alarm-id="${alarm.id}"] .actions button`)
      ?? document.querySelector(`[data-key="alarm-${alarm.id}-card"]`);
  if (!target) {
    target = around.map((id) => document.querySelector(`[data-key="alarm-${id}-card"]`)).find(Boolean)
      ?? document.querySelector(".alarm-list") ?? document.getElementById("view-title");
  }
  target?.focus({ preventScroll: true });
  target?.scrollIntoView({ block: "nearest" });
}

/** Why a step failed, in words a nurse can act on. */
function reasonOf(error) {
  if (error instanceof api.HttpError) return t("alarm.failed_http", { detail: error.message });
  if (error?.name === "TimeoutError") return t("alarm.failed_timeout");
  return t("alarm.failed_offline");
}

/** One step of an alarm: pending on its card until the platform answers, then done (focus
 * stays with the alarm) or failed with the reason and a retry on the same card. */
async function act(alarm, action, note) {
  // The same step twice while the first is under way is one step; another step is its own.
  const before = pending.get(alarm.id);
  if (before?.status === "pending" && before.action === action) return;
  const around = neighbours(alarm);
  const hadFocus = document.activeElement?.closest?.(`[data-alarm-id="${alarm.id}"]`);
  pending.set(alarm.id, { action, status: "pending" });
  render();
  try {
    const updated = await api.post(`api/v1/alarms/${alarm.id}/${action}`, action === "resolve" ? { note } : undefined);
    pending.delete(alarm.id);
    replaceAlarm(updated);
    if (action === "resolve") drafts.delete(alarm.id);
    render();
    noticeReorder();
    if (hadFocus || !document.activeElement || document.activeElement === document.body) {
      focusAfter(updated, action, around);
    }
    announce(t(`alarm.done.${action}`, { alarm: alarmName(updated), patient: patientName(ctx.patient(updated.patient_id)) }));
    refreshSoon({ overview: true, detail: route.name === "patient" });
  } catch (error) {
    if (error instanceof api.SignedOut) {
      pending.delete(alarm.id);
      failed(error);
    } else if (error instanceof api.HttpError && error.status === 409) {
      pending.delete(alarm.id);
      announce(t("alarm.conflict"));
      reloadShown();
    } else {
      const reason = reasonOf(error);
      pending.set(alarm.id, { action, status: "failed", reason });
      render();
      announce(t("alarm.failed", { action: t(`alarm.${action}`), reason }), { urgent: true });
    }
  }
}

function signedOutText(reason) {
  if (reason === "not signed in") return null;
  return t(reason === "forbidden" ? "login.forbidden" : "login.expired");
}

function failed(error) {
  if (error instanceof api.SignedOut) {
    // 403: this user may not do it at all; otherwise the session has ended (request() has
    // already tried to renew it).
    if (error.message === "forbidden") showLogin(signedOutText(error.message));
    else sessionHasEnded();
    return;
  }
  console.error(error);
  // A network failure is the live stream's to tell (its banner says the screen may be out of
  // date); while it is down, so is everything else.
  if (state.connection === "live" && error instanceof api.HttpError) {
    announce(t("error.generic", { detail: error.message }), { urgent: true });
  }
}

// --- the live stream -------------------------------------------------------------------------

// An event carries what changed (the alarm as the API shows it, the new values): the app
// applies it as it is, and asks the platform again only for an event without its data (a
// platform of an older version). Fifty tablets on the list page ask nothing per reading.
function onEvent(type, data) {
  state.updatedAt = new Date();
  if (type === "patient_moved") { applyMove(data); return; }
  if (type === "patient") { applyMove({ ...data, visible: true }); return; }
  if (type !== "observation" && type !== "alarm") return;
  const parts = { overview: true, detail: route.name === "patient" && data.patient_id === route.id };
  if (type === "alarm" && data.alarm) {
    applyAlarm(data.alarm);
  } else if (type === "observation" && Array.isArray(data.observations)) {
    applyObservations(data.patient_id, data.observations);
  } else {
    refreshSoon(parts);
    return;
  }
  // A load under way may answer with the state from before this event and overwrite it: load
  // once more after it.
  if (running) refreshSoon(parts);
}

/** A patient went to another care team: gone from this nurse's screen if she is no longer
 * hers (her page too, with a word why), or loaded if she now is (as a patient registered in
 * her team is). */
function applyMove({ patient_id: id, visible }) {
  const known = ctx.patient(id);
  if (visible) {
    if (!known) refreshSoon({ overview: true });
    return;
  }
  if (!known) return;
  state.patients = state.patients.filter((p) => p.id !== id);
  state.alarms = state.alarms.filter((a) => a.patient_id !== id);
  state.allAlarms = state.allAlarms.filter((a) => a.patient_id !== id);
  state.thresholds.delete(id);
  announce(t("patients.moved_away", { name: patientName(known) }));
  if (route.name === "patient" && route.id === id) {
    state.detail = null;
    navigate("#/patients");
  }
  if (running) refreshSoon({ overview: true });
  render();
}

const arrivedLive = new Set(); // alarms raised live before the first load answered
let firstFound = new Set(); // alarms the first load found, taken as there before she signed in
const liveSince = new Map(); // alarm id → when the live stream first brought it (performance.now())

/** The alarm as it was raised, nothing since: the stream brings only what happened after it
 * opened, so this alarm was raised while she watched. */
function justRaised(alarm) {
  const last = alarm.history?.at(-1);
  return alarm.state === "raised" && last?.to_state === "raised" && last.from_state === null;
}

function applyAlarm(alarm) {
  if (state.known === null && alarm.state === "raised") arrivedLive.add(alarm.id);
  // The first load answered after the raise, before this event (the stream's write waited):
  // new all the same.
  if (justRaised(alarm) && firstFound.delete(alarm.id)) state.known.delete(alarm.id);
  if (!liveSince.has(alarm.id)) liveSince.set(alarm.id, performance.now());
  const known = [...state.alarms, ...state.allAlarms].find((a) => a.id === alarm.id);
  // Names and places are looked up where a person acted; a change by the engine (escalated,
  // cleared) keeps those already known.
  const shown = { ...alarm };
  for (const key of ["acknowledged_by_name", "taken_by_name", "device_kind", "device_room", "device_name"]) {
    shown[key] ??= known?.[key] ?? null;
  }
  if (shown.state !== "closed" && !state.alarms.some((a) => a.id === shown.id)) state.alarms = [shown, ...state.alarms];
  const patient = ctx.patient(shown.patient_id);
  if (patient && shown.state !== "closed" && !patient.open_alarms.some((a) => a.id === shown.id)) {
    patient.open_alarms = [...patient.open_alarms, shown];
  }
  if (state.detail?.id === shown.patient_id && !state.detail.alarms.some((a) => a.id === shown.id)) {
    state.detail.alarms = [shown, ...state.detail.alarms];
  }
  replaceAlarm(shown);
  if (state.known !== null) noticeNewAlarms(state.alarms);
  noticeReorder();
  render();
}

function applyObservations(patientId, observations) {
  const patient = ctx.patient(patientId);
  for (const o of patient ? observations : []) {
    const at = patient.latest.findIndex((l) => l.code === o.code);
    if (at < 0) patient.latest = [...patient.latest, o];
    else if (Date.parse(o.time) >= Date.parse(patient.latest[at].time)) patient.latest[at] = o;
  }
  const detail = state.detail;
  if (detail?.id === patientId && detail.loaded) {
    const newest = [...observations].sort((a, b) => Date.parse(b.time) - Date.parse(a.time));
    detail.observations = [...newest.filter((o) => VITAL_CODES.includes(o.code)), ...detail.observations];
    detail.events = [...newest.filter((o) => EVENT_CODES.includes(o.code)), ...detail.events];
    detail.to = Date.now();
    for (const device of detail.devices) {
      const own = newest.filter((o) => o.device_id === device.device_id);
      if (!own.length) continue;
      if (!device.last_seen || Date.parse(own[0].time) > Date.parse(device.last_seen)) device.last_seen = own[0].time;
      const battery = own.find((o) => o.code === BATTERY_CODE);
      if (battery) device.battery_percent = battery.value;
    }
  }
  state.updatedAt = new Date();
  noticeReorder();
  render();
}

function onState(connection, { lastLive }) {
  const wasDown = state.connection === "stale" || state.connection === "lost";
  state.connection = connection;
  state.lastLive = lastLive;
  if (connection === "live") {
    // Whatever happened while not connected: load it all again (the views opened again).
    if (wasDown) openViews({ live: false });
    reloadShown();
    if (wasDown) announce(t("connection.back"));
  }
  render();
}

// --- session ---------------------------------------------------------------------------------

const keeper = new SessionKeeper({
  // The stream moves to the new token before the old one expires; once it is connected again,
  // what happened in between is loaded (onResumed).
  onRenewed: () => stream?.renew(),
  onEnded: () => sessionHasEnded(),
  onEnding: (ends) => { sessionEnding = ends; render(); },
});

/** The stream was refused (401): its token expired while the tablet slept, or the session
 * was revoked. A refresh tells which. */
async function streamSignedOut(reason) {
  if (reason === "forbidden") { showLogin(signedOutText(reason)); return; }
  if (await api.refresh().catch(() => false)) {
    keeper.start();
    stream?.start();
  } else {
    sessionHasEnded();
  }
}

function sessionHasEnded() {
  if (sessionEnded) return;
  stream?.stop();
  platformWatch.stop();
  keeper.stop();
  api.signOut();
  sessionEnded = { at: new Date() };
  state.connection = "ended";
  state.banner = [];
  render();
}

function startSession() {
  stream?.stop();
  Object.assign(state, {
    patients: [], thresholds: new Map(), alarms: [], allAlarms: [], loaded: false, detail: null,
    known: null, banner: [], connection: "connecting", lastLive: null, updatedAt: null, top: null,
  });
  sessionEnded = null;
  sessionEnding = null;
  state.platform = null;
  platformWatch.start();
  keeper.start();
  if (!caresForPatients()) {
    // An admin: no patients, no live stream; her own home screen.
    stream = null;
    state.connection = null;
    if (route.name !== "admin" && route.name !== "settings") navigate("#/admin");
    return;
  }
  if (route.name === "admin" && !isAdmin()) navigate("#/patients");
  openViews({ live: true });
  stream = new LiveStream({
    onEvent, onState, onSignedOut: streamSignedOut, view: views.live,
    onResumed: reloadShown,
  });
  stream.start();
  reloadShown();
}

/** New openings of the overview and the patient's page (and of the live session). */
function openViews({ live }) {
  views.overview = api.openView("overview");
  views.patient = null;
  if (live) views.live = api.openView("live");
}

/** The sign-in form. Signing out on purpose (no problem) ends the session at the platform and
 * forgets the drafts; after a session ended by itself, they are kept for her next sign-in. */
function showLogin(problem, { keepDrafts = false } = {}) {
  stream?.stop();
  stream = null;
  platformWatch.stop();
  state.platform = null;
  keeper.stop();
  if (problem === null && !keepDrafts) {
    drafts.clear();
    api.endSession();
  }
  api.signOut();
  sessionEnded = null;
  sessionEnding = null;
  loginProblem = problem;
  state.banner = [];
  render({ focus: true });
}

async function signIn(username, password, form) {
  unlockSound(); // a user gesture: the alarm sound may play from now on
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  button.textContent = t("login.busy");
  let ok = false;
  try {
    ok = await api.signIn(username, password);
    loginProblem = ok ? null : t("login.wrong");
  } catch {
    loginProblem = t("login.unreachable");
  }
  button.disabled = false;
  button.textContent = t("login.submit");
  if (!ok) {
    // Looked up now: the page may have been drawn again while she waited.
    document.getElementById("login-problem").textContent = loginProblem;
    document.getElementById("password").select();
    document.getElementById("password").focus();
    return;
  }
  Object.assign(ctx.typed, { username: "", password: "" }); // no password kept in memory
  forgetAdminState();
  startSession();
  render({ focus: true });
}

// --- settings --------------------------------------------------------------------------------

function updateSettings(patch) {
  Object.assign(settings, patch);
  localStorage.setItem(SETTINGS_KEY, JSON.stringify(settings));
  if (patch.lang) setLanguage(settings.lang);
  render();
  announce(t("settings.saved"));
}

async function testSound() {
  unlockSound();
  const played = await playAlarmSound();
  soundNote = t(played ? "settings.sound_state.running" : "settings.sound_state.blocked");
  render();
}

// --- start -----------------------------------------------------------------------------------

document.getElementById("language").addEventListener("click", () => {
  updateSettings({ lang: settings.lang === "nb" ? "en" : "nb" });
});
document.getElementById("sign-out").addEventListener("click", () => showLogin(null));
document.getElementById("reconnect").addEventListener("click", () => stream?.reconnectNow());
document.getElementById("sound-arm").addEventListener("click", armSound);
document.getElementById("sound-status").addEventListener("click", onSoundStatus);
watchSound(() => { if (api.token()) render(); });
document.getElementById("main").addEventListener("toggle", (event) => {
  const key = event.target.dataset?.details;
  if (!key) return;
  openDetails.set(key, event.target.open);
}, true);
for (const type of ["pointerdown", "keydown"]) {
  document.addEventListener(type, () => unlockSound());
}
window.addEventListener("hashchange", onRoute);
// Relative times ("5 min ago") move on.
setInterval(() => { if (api.token()) render(); }, 60_000);

render({ focus: false });
// A reload: the session goes on with its refresh cookie, if it has one.
api.refresh().then((ok) => {
  if (!ok) return;
  startSession();
  render({ focus: false });
}, () => {});
