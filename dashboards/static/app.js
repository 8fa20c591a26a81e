"use strict";
// Nurse page: lists the patients with their latest values and refreshes on the live stream.

const BP = ["MDC_PRESS_BLD_NONINV_SYS", "MDC_PRESS_BLD_NONINV_DIA"];
const PULSE = ["MDC_PULS_RATE_NON_INV", "MDC_PULS_OXIM_PULS_RATE", "MDC_ECG_HEART_RATE"];
const UNIT_TEXT = { "mm[Hg]": "mmHg", "{beat}/min": "/min", "Cel": "°C", "[degF]": "°F" };

function unitText(unit) { return UNIT_TEXT[unit] ?? unit; }

// Times are shown as the patient's own clock showed them: the API keeps the device's offset.
function when(iso) {
  const [, year, month, day, hour, minute] = iso.match(/^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/);
  return `${day}.${month}.${year} ${hour}:${minute}`;
}

// Status bits of the measurement, worth a nurse's attention (not e.g. the cuff's user slot).
function isWarning(flag) { return !flag.startsWith("device_user"); }

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

// Vital signs only (MDC codes); device and home telemetry (battery, sensors) is not a measurement.
function isMeasurement(observation) { return observation.code.startsWith("MDC_"); }

function row(patient) {
  const latest = patient.latest.filter(isMeasurement);
  const byCode = new Map(latest.map((o) => [o.code, o]));
  const tr = document.createElement("tr");
  tr.dataset.patientId = String(patient.id);
  const name = document.createElement("th");
  name.scope = "row";
  name.textContent = `${patient.family_name}, ${patient.given_name}`;
  tr.append(name);

  const [sys, dia] = BP.map((c) => byCode.get(c));
  tr.append(cell(sys && dia ? `${sys.value}/${dia.value} ${unitText(sys.unit)}` : "–", "value bp"));
  const pulse = PULSE.map((c) => byCode.get(c)).find(Boolean);
  tr.append(cell(pulse ? `${pulse.value} ${unitText(pulse.unit)}` : "–", "value pulse"));

  const shown = new Set([...BP, ...PULSE]);
  const others = latest.filter((o) => !shown.has(o.code));
  tr.append(cell(others.map((o) => `${o.display}: ${o.value} ${unitText(o.unit)}`).join("; ") || "–"));

  const newest = latest.reduce(
    (a, o) => (!a || Date.parse(o.time) > Date.parse(a) ? o.time : a), null);
  const flags = latest.flatMap((o) => o.flags).filter(isWarning);
  const time = cell(newest ? when(newest) : "–");
  if (flags.length) {
    const flag = document.createElement("span");
    flag.className = "flag";
    flag.textContent = ` (${[...new Set(flags)].join(", ").replaceAll("_", " ")})`;
    time.append(flag);
  }
  tr.append(time);
  return tr;
}

// The access token lives in this tab only (sessionStorage): closing the tab signs out.
const TOKEN_KEY = "tryggheim.token";

class SignedOut extends Error {}

async function api(path, init = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) throw new SignedOut("not signed in");
  const response = await fetch(path, {
    ...init, headers: { ...init.headers, Authorization: `Bearer ${token}` },
  });
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    throw new SignedOut("session expired");
  }
  return response;
}

async function refresh() {
  const response = await api("api/v1/patients");
  if (!response.ok) throw new Error(`patients: HTTP ${response.status}`);
  const patients = await response.json();
  document.querySelector("#patients tbody").replaceChildren(...patients.map(row));
  document.getElementById("patients").hidden = false;
  document.getElementById("empty").hidden = patients.length > 0;
}

let pending = null;
function refreshSoon() {
  // A cuff reading brings four values at once: one reload for all of them.
  if (pending) return;
  pending = setTimeout(() => { pending = null; refresh().catch(showError); }, 300);
}

function showError(error) {
  if (error instanceof SignedOut) { showLogin(error.message); return; }
  document.getElementById("connection").textContent = `Problem: ${error.message}`;
}

function showLogin(reason) {
  document.getElementById("patients").hidden = true;
  document.getElementById("connection").textContent = "Signed out";
  const form = document.getElementById("login");
  form.hidden = false;
  document.getElementById("login-problem").textContent =
    reason === "not signed in" ? "" : `Please sign in again (${reason}).`;
  document.getElementById("username").focus();
}

document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const response = await fetch("api/v1/auth/token", { method: "POST", body: new URLSearchParams(new FormData(form)) });
  if (!response.ok) {
    document.getElementById("login-problem").textContent = "Wrong user name or password.";
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, (await response.json()).access_token);
  form.reset();
  form.hidden = true;
  start();
});

// Server-sent events read with fetch, since EventSource cannot send the Authorization header.
async function listen() {
  const status = document.getElementById("connection");
  const response = await api("api/v1/stream", { headers: { Accept: "text/event-stream" } });
  if (!response.ok) throw new Error(`live stream: HTTP ${response.status}`);
  status.textContent = "Live";
  refreshSoon();
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error("live stream ended");
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (/^event: (observation|alarm)$/m.test(block)) refreshSoon();
    }
  }
}

async function connect() {
  for (;;) {
    try {
      await listen();
    } catch (error) {
      if (error instanceof SignedOut) { showLogin(error.message); return; }
      document.getElementById("connection").textContent = "Reconnecting…";
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
}

function start() {
  refresh().catch(showError);
  connect();
}

start();
