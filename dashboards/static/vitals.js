// What the codes mean to the nurse: measurement groups, units as shown, home events, device
// kinds, and the check of a value against the patient's own thresholds.

import { decimal, t } from "./i18n.js";

export const SYS = "MDC_PRESS_BLD_NONINV_SYS";
export const DIA = "MDC_PRESS_BLD_NONINV_DIA";
const PULSE_CODES = ["MDC_PULS_RATE_NON_INV", "MDC_PULS_OXIM_PULS_RATE", "MDC_ECG_HEART_RATE"];

// Glucose: one code per sample type (docs/codes.md); the nurse sees which sample it was.
const GLUCOSE_SAMPLES = {
  MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD: "capillary_whole_blood",
  MDC_CONC_GLU_CAPILLARY_PLASMA: "capillary_plasma",
  MDC_CONC_GLU_VENOUS_WHOLEBLOOD: "venous_whole_blood",
  MDC_CONC_GLU_VENOUS_PLASMA: "venous_plasma",
  MDC_CONC_GLU_ARTERIAL_WHOLEBLOOD: "arterial_whole_blood",
  MDC_CONC_GLU_ARTERIAL_PLASMA: "arterial_plasma",
  MDC_CONC_GLU_UNDETERMINED_WHOLEBLOOD: "undetermined_whole_blood",
  MDC_CONC_GLU_UNDETERMINED_PLASMA: "undetermined_plasma",
  MDC_CONC_GLU_ISF: "interstitial_fluid",
  MDC_CONC_GLU_GEN: "not_stated",
};

/** The sample type of a glucose value in words ("kapillært plasma"); null for other codes. */
export function sampleText(code) {
  const sample = GLUCOSE_SAMPLES[code];
  return sample ? t(`glucose.sample.${sample}`) : null;
}

/** One chart and one cell of the list per group; blood pressure shows systolic/diastolic. */
export const GROUPS = [
  { id: "bp", codes: [SYS, DIA] },
  { id: "pulse", codes: PULSE_CODES },
  { id: "spo2", codes: ["MDC_PULS_OXIM_SAT_O2"] },
  { id: "temp", codes: ["MDC_TEMP_BODY"] },
  { id: "weight", codes: ["MDC_MASS_BODY_ACTUAL"] },
  { id: "glucose", codes: Object.keys(GLUCOSE_SAMPLES) },
];
export const VITAL_CODES = GROUPS.flatMap((g) => g.codes);

const UNIT_TEXT = {
  "mm[Hg]": "mmHg", "{beat}/min": "/min", "Cel": "°C", "[degF]": "°F", "[lb_av]": "lb",
  "%": "%", "kg": "kg", "mmol/L": "mmol/L", "mg/dL": "mg/dL", "kPa": "kPa",
};
export function unitText(unit) { return UNIT_TEXT[unit] ?? unit; }

/** A value with its unit as the nurse reads it: "36,8 °C", "97 %". */
export function valueText(value, unit) {
  return `${decimal(value)} ${unitText(unit)}`;
}

// The conversions the alarm engine makes (gateway/alarms/rules.py convert()).
const CONVERT = {
  "[degF]>Cel": (v) => ((v - 32) * 5) / 9,
  "Cel>[degF]": (v) => (v * 9) / 5 + 32,
  "[lb_av]>kg": (v) => v * 0.45359237,
  "kg>[lb_av]": (v) => v / 0.45359237,
  "kPa>mm[Hg]": (v) => v * 7.500615758,
  "mm[Hg]>kPa": (v) => v / 7.500615758,
  "mg/dL>mmol/L": (v) => v / 18.016,
  "mmol/L>mg/dL": (v) => v * 18.016,
};

export function convert(value, from, to) {
  if (from === to) return value;
  const f = CONVERT[`${from}>${to}`];
  return f ? f(value) : null;
}

/** The thresholds that apply to a code, each with its limit in `unit` (the value's unit). */
export function limitsFor(thresholds, code, unit) {
  return (thresholds ?? [])
    .filter((rule) => rule.codes.includes(code))
    .map((rule) => ({ ...rule, at: convert(Number(rule.limit), rule.unit, unit) }))
    .filter((rule) => rule.at !== null);
}

/**
 * A value against the patient's thresholds: { status: "high" | "low" | "normal", rule }.
 * Exactly the engine's test: below-rule value < limit, above-rule value > limit.
 */
export function assess(observation, thresholds) {
  const value = Number(observation.value);
  for (const rule of limitsFor(thresholds, observation.code, observation.unit)) {
    if (rule.comparison === ">" && value > rule.at) return { status: "high", rule };
    if (rule.comparison === "<" && value < rule.at) return { status: "low", rule };
  }
  return { status: "normal", rule: null };
}

/** "Above the limit 180 mmHg" for an assessed value. */
export function assessmentText(result, unit) {
  if (result.status === "normal") return t("vital.normal");
  const limit = valueText(trim(result.rule.at), unit);
  return t(result.status === "high" ? "vital.high" : "vital.low", { limit });
}

/** A converted limit as short decimal text (no float noise). */
export function trim(value) {
  return String(Math.round(value * 100) / 100);
}

/** The newest observation of a group among the latest values; blood pressure gives both. */
export function latestOf(group, latest) {
  const byCode = new Map(latest.map((o) => [o.code, o]));
  if (group.id === "bp") {
    const sys = byCode.get(SYS);
    const dia = byCode.get(DIA);
    return sys ? { time: sys.time, parts: [sys, dia].filter(Boolean) } : null;
  }
  const found = group.codes.map((c) => byCode.get(c)).filter(Boolean)
    .sort((a, b) => Date.parse(b.time) - Date.parse(a.time))[0];
  return found ? { time: found.time, parts: [found] } : null;
}

// --- home events (docs/codes.md) ----------------------------------------------------------

export const EVENT_KINDS = {
  TRY_EVT_DOOR_CONTACT: { id: "door", lane: "door" },
  TRY_EVT_BED_OCCUPANCY: { id: "bed", lane: "bed" },
  TRY_EVT_MOTION: { id: "motion", lane: "motion" },
  TRY_EVT_FALL: { id: "fall", lane: "fall", urgent: true },
  TRY_EVT_PANIC_BUTTON: { id: "panic", lane: "fall", urgent: true },
  TRY_EVT_SMOKE: { id: "smoke", lane: "fall", urgent: true },
  TRY_EVT_WATER_LEAK: { id: "water", lane: "fall", urgent: true },
};
export const EVENT_CODES = Object.keys(EVENT_KINDS);
export const LANES = ["door", "bed", "motion", "fall"];

/** The event as a sentence ("Door opened"); null for one not worth a line (no motion). */
export function eventText(observation) {
  const kind = EVENT_KINDS[observation.code];
  if (!kind) return null;
  const on = Number(observation.value) !== 0 ? "1" : "0";
  if (kind.id === "motion" && on === "0") return null;
  if (kind.id === "panic") return on === "1" ? t("events.panic.1") : null;
  return t(`events.${kind.id}.${on}`);
}

// --- devices -------------------------------------------------------------------------------

const SENSOR_KINDS = [
  ["TRY_EVT_FALL", "fall"], ["TRY_EVT_PANIC_BUTTON", "panic"], ["TRY_EVT_SMOKE", "smoke"],
  ["TRY_EVT_SMOKE_ALARM_TEST", "smoke"], ["TRY_EVT_VIBRATION", "vibration"],
  ["TRY_EVT_WATER_LEAK", "water"], ["TRY_EVT_DOOR_CONTACT", "door"],
  ["TRY_EVT_BED_OCCUPANCY", "bed"], ["TRY_EVT_MOTION", "motion"],
  ["TRY_ENV_ROOM_TEMPERATURE", "climate"], ["TRY_ENV_ROOM_HUMIDITY", "climate"],
];

export function deviceKind(device) {
  if (device.kind) return t(`device.${device.kind}`);
  if (device.sensor_kind) return t(`device.${device.sensor_kind}`);
  const found = SENSOR_KINDS.find(([code]) => device.codes.includes(code));
  return t(`device.${found ? found[1] : "other"}`);
}

/** Where and what the device is: "Bad – bevegelse" when its room is known (the home gateway's
 * sensor map), else its kind ("Blodtrykksmåler"); never only its address. */
export function devicePlace(device) {
  if (device.room && device.sensor_kind) return `${device.room} – ${t(`place.${device.sensor_kind}`)}`;
  return deviceKind(device);
}

/** What a nurse calls the device: the name an admin gave it ("Ytterdør"), else its place. */
export function deviceLabel(device) {
  return device.name || devicePlace(device);
}

export const LOW_BATTERY = 20;
