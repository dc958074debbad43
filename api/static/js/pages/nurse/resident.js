// A resident's page: charts per measurement over 7, 30 or 90 days with the resident's
// threshold bands and alert markers, the weight's 3-day change, what data is missing
// and why, and the medication robot's calendar.

import { api } from "../../core/api.js";
import { clear, el } from "../../core/dom.js";
import {
  formatDate,
  formatDateTime,
  formatNumber,
  formatRelative,
  getTimeZone,
  label,
  locale,
  t,
  unit,
} from "../../core/i18n.js";
import { currentQuery } from "../../core/router.js";
import { adherenceCalendar } from "../../charts/calendar.js";
import { lineChart } from "../../charts/line.js";
import { digitsFor } from "./words.js";

const PERIODS = [7, 30, 90];
//: The charts, in order: a heading measurement and its metrics (one chart each).
const CHARTS = [
  ["blood_pressure", ["systolic", "diastolic"]],
  ["blood_pressure", ["pulse"]],
  ["body_weight", ["weight"]],
  ["pulse_oximetry", ["spo2"]],
  ["glucose", ["glucose"]],
];

function everyText(seconds) {
  const days = seconds / 86400;
  if (Number.isInteger(days)) return days === 1 ? t("nurse.every.day") : t("nurse.every.days", { n: days });
  const hours = Math.round(seconds / 3600);
  return hours === 1 ? t("nurse.every.hour") : t("nurse.every.hours", { n: hours });
}

function chartFor(chart, metric) {
  const u = chart.units[metric];
  const digits = digitsFor(u);
  const points = chart.series[metric];
  const name = label("metric", metric);
  const markers = chart.markers
    .filter((m) => m.metrics.includes(metric))
    .map((m) => ({
      t: m.measured_at,
      severity: m.severity,
      text: t("nurse.chart.marker", {
        rule: label("rule", m.rule),
        severity: label("severity", m.severity),
        time: formatDateTime(m.measured_at),
      }),
    }));
  const values = points.map((p) => p.v);
  const desc = values.length
    ? t("nurse.chart.desc", {
        name,
        count: points.length,
        min: formatNumber(Math.min(...values), digits),
        max: formatNumber(Math.max(...values), digits),
        last: formatNumber(values[values.length - 1], digits),
        unit: unit(u),
        alerts: markers.length,
      })
    : t("nurse.chart.descEmpty", { name });
  const changes = metric === "weight" ? new Map(chart.weight_change.map((c) => [c.t, c.change])) : null;
  return lineChart({
    id: `chart-${metric}`,
    title: `${name} (${unit(u)})`,
    desc,
    start: chart.start,
    end: chart.end,
    unitText: unit(u),
    series: [{ key: metric, name, points }],
    bands: chart.bands[metric],
    markers,
    formatX: (d) => formatDate(d.toISOString()),
    formatY: (v) => formatNumber(v, digits),
    formatTime: (iso) => formatDateTime(iso),
    bandLabel: (side, severity, value) =>
      t(`nurse.chart.band.${side}`, { severity: label("severity", severity), value: formatNumber(value, digits), unit: unit(u) }),
    tableLabels: {
      summary: t("nurse.chart.table"),
      time: t("nurse.chart.col.time"),
      series: t("nurse.chart.col.series"),
      value: t("nurse.chart.col.value"),
      range: t("nurse.chart.col.range"),
      count: t("nurse.chart.col.count"),
    },
    extraColumn: changes
      ? {
          label: t("nurse.chart.col.change3d"),
          value: (p) => {
            const c = changes.get(p.t);
            return c === null || c === undefined ? "–" : `${c > 0 ? "+" : ""}${formatNumber(c, 1)} kg`;
          },
        }
      : null,
  });
}

function weightChange(chart) {
  const last = [...chart.weight_change].reverse().find((c) => c.change !== null);
  if (!last) return null;
  const sign = last.change > 0 ? "+" : "";
  return el(
    "p",
    { class: "weight-change", dataset: { change: String(last.change) } },
    t("nurse.chart.weightChange", { change: `${sign}${formatNumber(last.change, 1)}`, time: formatDateTime(last.t) }),
  );
}

function missingSection(chart) {
  if (!chart.missing.length) return el("p", { class: "muted" }, t("nurse.missing.noSchedule"));
  return el(
    "ul",
    { class: "missing" },
    chart.missing.map((m) => {
      const what = label("measurement", m.measurement_type);
      const lines = [
        t("nurse.missing.schedule", { what, every: everyText(m.every_s) }),
        m.last_valid_at
          ? t("nurse.missing.last", { relative: formatRelative(m.last_valid_at), time: formatDateTime(m.last_valid_at) })
          : t("nurse.missing.never"),
      ];
      if (m.overdue) lines.push(t("nurse.missing.overdue", { due: formatDateTime(m.due_at) }));
      if (m.error_readings > 0) {
        lines.push(
          t("nurse.missing.errors", {
            count: m.error_readings,
            flags: m.error_flags.map((f) => label("flag", f)).join(", ") || t("nurse.missing.noFlags"),
          }),
        );
      }
      const gaps = m.gaps.slice(-5);
      return el(
        "li",
        { class: m.overdue ? "missing-overdue" : "", dataset: { measurement: m.measurement_type, overdue: String(m.overdue) } },
        el("strong", {}, what),
        " ",
        lines.join(" "),
        gaps.length
          ? el(
              "ul",
              { class: "gaps" },
              gaps.map((g) => el("li", {}, t("nurse.missing.gap", { from: formatDateTime(g.from), to: formatDateTime(g.to) }))),
            )
          : null,
      );
    }),
  );
}

function weekdays() {
  // Monday first, in the user's language (2024-01-01 was a Monday).
  const fmt = new Intl.DateTimeFormat(locale(), { weekday: "short", timeZone: "UTC" });
  return Array.from({ length: 7 }, (_, i) => fmt.format(new Date(Date.UTC(2024, 0, 1 + i, 12))));
}

function calendarSection(adherence) {
  if (!adherence.has_dispenser) return el("p", { class: "muted" }, t("nurse.adherence.none"));
  const totals = adherence.days.reduce(
    (acc, d) => ({ due: acc.due + d.due, taken: acc.taken + d.taken, late: acc.late + d.late, missed: acc.missed + d.missed }),
    { due: 0, taken: 0, late: 0, missed: 0 },
  );
  return el(
    "div",
    {},
    el("p", { class: "adherence-totals" }, t("nurse.adherence.totals", { ...totals, days: adherence.days.length })),
    adherenceCalendar({
      days: adherence.days,
      weekdays: weekdays(),
      caption: t("nurse.adherence.caption"),
      dayNumber: (date) => String(Number(date.slice(8, 10))),
      dayLabel: (d) =>
        d.due || d.taken || d.late || d.missed
          ? t("nurse.adherence.day", { due: d.due, taken: d.taken, late: d.late, missed: d.missed })
          : t("nurse.adherence.dayNone"),
    }),
    el(
      "ul",
      { class: "calendar-legend" },
      ["taken", "partial", "late", "missed", "none"].map((s) => el("li", { class: `day-${s}` }, el("span", { class: "swatch", "aria-hidden": "true" }), t(`nurse.adherence.state.${s}`))),
    ),
  );
}

export async function renderResident(root, params, ctx) {
  const id = params.id;
  let days = Number(currentQuery().get("days")) || 30;
  if (!PERIODS.includes(days)) days = 30;
  const periodBar = el("div", { class: "period-switch", role: "group", "aria-label": t("nurse.chart.period") });
  const head = el("div");
  const charts = el("div", { class: "charts", "aria-live": "polite", "aria-busy": "true" });
  const missing = el("section", { "aria-labelledby": "missing-title" });
  const calendar = el("section", { "aria-labelledby": "adherence-title" });
  root.append(head, periodBar, charts, missing, calendar);

  function renderPeriods() {
    clear(periodBar).append(
      ...PERIODS.map((d) =>
        el(
          "button",
          {
            type: "button",
            class: "button-quiet",
            "aria-pressed": d === days ? "true" : "false",
            dataset: { days: String(d) },
            onclick: () => {
              days = d;
              history.replaceState(null, "", `#/residents/${id}?days=${d}`);
              renderPeriods();
              loadChart().catch(ctx.fail);
            },
          },
          t("nurse.chart.days", { n: d }),
        ),
      ),
    );
  }

  async function loadChart() {
    charts.setAttribute("aria-busy", "true");
    const chart = await api(`/api/v1/patients/${encodeURIComponent(id)}/chart`, { query: { days } });
    ctx.setTitle(chart.display_name);
    clear(head).append(
      el(
        "p",
        { class: "resident-facts" },
        [label("programme", chart.programme), chart.care_unit_name].filter(Boolean).join(" · "),
        " · ",
        el("a", { href: `#/residents/${id}/thresholds` }, t("nurse.resident.thresholdsLink")),
      ),
    );
    const shown = [];
    for (const [measurement, metrics] of CHARTS) {
      const withData = metrics.filter((m) => chart.series[m].length);
      if (!withData.length) continue;
      const heading = metrics.includes("pulse") ? label("metric", "pulse") : label("measurement", measurement);
      shown.push(
        el(
          "section",
          { class: "chart-group", dataset: { measurement } },
          el("h2", {}, heading),
          metrics.includes("weight") ? weightChange(chart) : null,
          withData.map((m) => chartFor(chart, m)),
        ),
      );
    }
    clear(charts).append(...(shown.length ? shown : [el("p", { class: "empty" }, t("nurse.chart.none", { n: days }))]));
    charts.setAttribute("aria-busy", "false");
    clear(missing).append(el("h2", { id: "missing-title" }, t("nurse.missing.title")), missingSection(chart));
  }

  async function loadCalendar() {
    const adherence = await api(`/api/v1/patients/${encodeURIComponent(id)}/adherence`, {
      query: { days: 35, tz: getTimeZone() },
    });
    clear(calendar).append(el("h2", { id: "adherence-title" }, t("nurse.adherence.title")), calendarSection(adherence));
  }

  renderPeriods();
  await Promise.all([loadChart(), loadCalendar()]);
}
