// Line charts as inline SVG, drawn here (no chart library): values over the chosen time range,
// the patient's alarm limits as dashed lines, values outside a limit as triangles (never colour
// alone), a text summary as the chart's accessible name, and the values as a table.

import { h, s, uid } from "./dom.js";
import { number, t } from "./i18n.js";

const W = 800;
const H = 260;
const M = { left: 56, right: 150, top: 20, bottom: 40 };
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const TIME_STEPS = [HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 5 * DAY,
  7 * DAY, 14 * DAY, 30 * DAY];

/** Round numbers for the value axis: about `count` ticks covering [min, max]. */
function valueTicks(min, max, count = 5) {
  const span = max - min || Math.abs(max) || 1;
  const raw = span / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((m) => m >= raw) ?? 10 * power;
  const ticks = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) {
    ticks.push(Math.round(v / step) * step);
  }
  return ticks;
}

/** Ticks for the time axis on this tablet's clock: at most 8, on whole hours or days. */
function timeTicks(from, to) {
  const step = TIME_STEPS.find((st) => (to - from) / st <= 8) ?? TIME_STEPS.at(-1);
  const first = new Date(from);
  if (step >= DAY) {
    first.setHours(0, 0, 0, 0);
  } else {
    const hours = step / HOUR;
    first.setMinutes(0, 0, 0);
    first.setHours(Math.ceil(first.getHours() / hours) * hours);
  }
  const ticks = [];
  for (let at = first.getTime(); at <= to; at += step) {
    if (step >= DAY) {
      const d = new Date(at + 12 * HOUR);
      d.setHours(0, 0, 0, 0); // the local midnight, across a daylight-saving change
      at = d.getTime();
    }
    if (at >= from) ticks.push(at);
  }
  return { ticks, daily: step >= DAY };
}

const pad = (n) => String(n).padStart(2, "0");
function timeLabel(at, daily) {
  const d = new Date(at);
  return daily ? `${pad(d.getDate())}.${pad(d.getMonth() + 1)}` : `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function marker(kind, x, y, className) {
  switch (kind) {
    case "high":
      return s("path", { d: `M${x},${y - 8} L${x + 7},${y + 5} L${x - 7},${y + 5} Z`, class: className });
    case "low":
      return s("path", { d: `M${x},${y + 8} L${x + 7},${y - 5} L${x - 7},${y - 5} Z`, class: className });
    case "square":
      return s("rect", { x: x - 4, y: y - 4, width: 8, height: 8, class: className });
    default:
      return s("circle", { cx: x, cy: y, r: 4.5, class: className });
  }
}

/**
 * A figure with the chart, its legend and its data table.
 * @param {object} o
 * @param {string} o.group  the measurement group (data-group attribute)
 * @param {string} o.title  heading, with the unit
 * @param {string} o.summary  the text alternative (count, range, latest, limits)
 * @param {{label: string, line: string, marker: string, points: {at: number, value: number, status: string}[]}[]} o.series
 * @param {{value: number, label: string, note: string}[]} o.limits
 * @param {number} o.from
 * @param {number} o.to
 * @param {{columns: string[], rows: (string|Node)[][]}} o.table
 * @param {boolean} o.open  the table shown (kept open across live updates)
 */
export function lineChart({ group, title, summary, series, limits, from, to, table, open = false }) {
  const titleId = uid("chart-title");
  const summaryId = uid("chart-summary");
  // Each series with a limit of its own gets a panel of its own (systolic above diastolic), so
  // that a limit is drawn on the series it belongs to and never across another one's values.
  const own = (se) => limits.filter((l) => !l.series || l.series === se.label);
  const panels = series.length > 1 && limits.some((l) => l.series)
    ? series.map((se) => plot([se], own(se), from, to, se.label))
    : [plot(series, limits, from, to, null)];
  const legend = h("ul", { class: "legend", "aria-label": t("chart.legend") },
    series.map((se) => h("li", {}, swatch(se.line, se.marker), se.label)),
    limits.length ? h("li", {}, swatch("limit"), t("chart.legend.threshold")) : null,
    series.some((se) => se.points.some((p) => p.status !== "normal"))
      ? h("li", {}, swatch("out", "high"), t("chart.legend.out")) : null);

  return h("figure", { class: "chart", "data-group": group },
    h("figcaption", {},
      h("h3", { id: titleId }, title),
      h("p", { id: summaryId, class: "chart-summary" }, summary)),
    h("div", { role: "img", "aria-labelledby": `${titleId} ${summaryId}`, class: "chart-panels" }, panels),
    legend,
    h("details", { class: "chart-table", "data-details": `table-${group}`, open },
      h("summary", { "data-key": `table-${group}` }, t("chart.table")),
      h("div", { class: "table-scroll" },
        h("table", {},
          h("caption", { class: "visually-hidden" }, title),
          h("thead", {}, h("tr", {}, table.columns.map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, table.rows.map((row) => h("tr", {},
            row.map((cell, i) => (i === 0 ? h("th", { scope: "row" }, cell) : h("td", {}, cell))))))))));
}

/** One plot (an SVG, for the eye only: the figure's text is its name): the series over
 * [from, to] with their limits, clipped to its frame, so a value stamped later than "now" (a
 * device clock ahead) is never drawn outside it. */
function plot(series, limits, from, to, label) {
  const shown = series.map((se) => ({ ...se, points: se.points.filter((p) => p.at >= from && p.at <= to) }));
  const values = shown.flatMap((se) => se.points.map((p) => p.value));
  const limitValues = limits.map((l) => l.value);
  let min = Math.min(...values, ...limitValues);
  let max = Math.max(...values, ...limitValues);
  if (!Number.isFinite(min)) { min = 0; max = 1; }
  const padding = (max - min) * 0.08 || Math.abs(max) * 0.05 || 1;
  min -= padding;
  max += padding;
  const yTicks = valueTicks(min, max);
  min = Math.min(min, yTicks[0]);
  max = Math.max(max, yTicks.at(-1));
  const x = (at) => M.left + ((at - from) / (to - from)) * (W - M.left - M.right);
  const y = (v) => M.top + (1 - (v - min) / (max - min)) * (H - M.top - M.bottom);
  const clipId = uid("chart-frame");

  const svg = s("svg", {
    viewBox: `0 0 ${W} ${H}`, "aria-hidden": "true", class: "chart-svg", focusable: "false",
    "data-series": label ?? "",
  });
  const frame = { x: M.left, y: M.top, width: W - M.left - M.right, height: H - M.top - M.bottom };
  svg.append(s("defs", {}, s("clipPath", { id: clipId }, s("rect", frame))));
  const grid = s("g", { class: "grid" });
  for (const v of yTicks) {
    grid.append(
      s("line", { x1: M.left, x2: W - M.right, y1: y(v), y2: y(v) }),
      s("text", { x: M.left - 8, y: y(v) + 4, "text-anchor": "end", class: "tick" }, number(v, 2)),
    );
  }
  const { ticks, daily } = timeTicks(from, to);
  for (const at of ticks) {
    grid.append(
      s("line", { x1: x(at), x2: x(at), y1: M.top, y2: H - M.bottom, class: "vertical" }),
      s("text", { x: x(at), y: H - M.bottom + 20, "text-anchor": "middle", class: "tick" },
        timeLabel(at, daily)),
    );
  }
  grid.append(s("rect", { ...frame, class: "frame" }));
  if (label) grid.append(s("text", { x: M.left, y: M.top - 3, class: "panel-label" }, label));
  svg.append(grid);

  for (const limit of limits) {
    const ly = y(limit.value);
    svg.append(s("g", { class: "limit" },
      s("line", { x1: M.left, x2: W - M.right, y1: ly, y2: ly }),
      s("text", { x: W - M.right + 8, y: ly + 4, class: "limit-label" }, limit.label),
      limit.note ? s("text", { x: W - M.right + 8, y: ly + 20, class: "limit-note" }, `(${limit.note})`) : null));
  }

  shown.forEach((se) => {
    const points = [...se.points].sort((a, b) => a.at - b.at);
    const g = s("g", { class: `series series-${se.line}`, "clip-path": `url(#${clipId})` });
    if (points.length > 1) {
      g.append(s("polyline", {
        points: points.map((p) => `${x(p.at).toFixed(1)},${y(p.value).toFixed(1)}`).join(" "),
      }));
    }
    for (const p of points) {
      const out = p.status === "high" || p.status === "low";
      g.append(marker(out ? p.status : se.marker, x(p.at), y(p.value), out ? "point out" : "point"));
    }
    svg.append(g);
  });
  return svg;
}

function swatch(line, mark = "circle") {
  const svg = s("svg", { viewBox: "0 0 36 16", width: 36, height: 16, "aria-hidden": "true",
    focusable: "false", class: "swatch" });
  if (line === "limit") {
    svg.append(s("g", { class: "limit" }, s("line", { x1: 2, x2: 34, y1: 8, y2: 8 })));
  } else if (line === "out") {
    svg.append(s("g", { class: "series" }, marker("high", 18, 9, "point out")));
  } else {
    svg.append(s("g", { class: `series series-${line}` },
      s("line", { x1: 2, x2: 34, y1: 8, y2: 8 }), marker(mark, 18, 8, "point")));
  }
  return svg;
}

/** A strip of event lanes (door, bed, motion, fall): the overview above the timeline list. */
export function laneChart({ lanes, from, to, summary }) {
  const w = 800;
  const laneH = 30;
  const left = 130;
  const right = 16;
  const height = lanes.length * laneH + 34;
  const summaryId = uid("lanes");
  const x = (at) => left + ((at - from) / (to - from)) * (w - left - right);
  const svg = s("svg", {
    viewBox: `0 0 ${w} ${height}`, role: "img", "aria-labelledby": summaryId,
    class: "lanes-svg", focusable: "false",
  });
  lanes.forEach((lane, i) => {
    const cy = 12 + i * laneH + laneH / 2;
    svg.append(
      s("text", { x: left - 10, y: cy + 4, "text-anchor": "end", class: "tick" }, lane.label),
      s("line", { x1: left, x2: w - right, y1: cy, y2: cy, class: "lane" }),
      ...lane.events.map((e) => (e.urgent
        ? marker("high", x(e.at), cy, "point out")
        : s("rect", { x: x(e.at) - 1.5, y: cy - 9, width: 3, height: 18, class: `tick-mark ${e.on ? "on" : "off"}` }))),
    );
  });
  const { ticks, daily } = timeTicks(from, to);
  for (const at of ticks) {
    svg.append(s("text", { x: x(at), y: height - 6, "text-anchor": "middle", class: "tick" },
      timeLabel(at, daily)));
  }
  return h("figure", { class: "lanes" },
    svg,
    h("figcaption", { id: summaryId, class: "chart-summary" }, summary));
}
