// Putting the API's codes and numbers into a nurse's words: an alert's reason, a
// reading's values, severities and statuses. Every text comes from the i18n files.

import { el } from "../../core/dom.js";
import { formatNumber, formatRelative, formatDateTime, label, t, unit } from "../../core/i18n.js";

/** How many decimals a nurse writes for a value in this unit. */
export function digitsFor(ucum) {
  if (ucum === "kg" || ucum === "mmol/L" || ucum === "kPa" || ucum === "[lb_av]") return 1;
  return 0;
}

/** "225 mmHg" with the unit as a nurse writes it. */
export function quantity(value, ucum) {
  if (value === null || value === undefined) return t("nurse.value.none");
  return `${formatNumber(value, digitsFor(ucum))} ${unit(ucum)}`.trim();
}

/** Systolic/diastolic written together ("225/125 mmHg"), else each value with its name. */
export function valuesText(values) {
  const byMetric = Object.fromEntries(values.map((v) => [v.metric, v]));
  const parts = [];
  if (byMetric.systolic && byMetric.diastolic) {
    const u = byMetric.systolic.unit;
    parts.push(
      t("nurse.value.bp", {
        systolic: formatNumber(byMetric.systolic.value, digitsFor(u)),
        diastolic: formatNumber(byMetric.diastolic.value, digitsFor(u)),
        unit: unit(u),
      }),
    );
    delete byMetric.systolic;
    delete byMetric.diastolic;
  }
  for (const v of Object.values(byMetric)) {
    parts.push(`${label("metric", v.metric)} ${quantity(v.value, v.unit)}`);
  }
  return parts.join(", ");
}

/** The stored values of a reading (LOINC quantities) as metric values. */
const LOINC_METRIC = {
  "8480-6": "systolic",
  "8462-4": "diastolic",
  "8867-4": "pulse",
  "2708-6": "spo2",
  "59408-5": "spo2",
  "15074-8": "glucose",
  "2339-0": "glucose",
  "14743-9": "glucose",
  "2345-7": "glucose",
  "29463-7": "weight",
};

export function readingValues(quantities) {
  const seen = new Set();
  const out = [];
  for (const q of quantities || []) {
    const metric = LOINC_METRIC[q.loinc];
    if (!metric || seen.has(metric)) continue;
    seen.add(metric);
    out.push({ metric, value: q.value, unit: q.unit });
  }
  return out;
}

/** One sentence: why the alert fired, from its reason parts. */
export function reasonText(alert) {
  const parts = alert.reason_parts;
  if (parts.kind === "range" && parts.values.length) {
    const key = parts.direction === "above" ? "nurse.reason.above" : "nurse.reason.below";
    return t(key, { values: valuesText(parts.values), limits: valuesText(parts.limits) });
  }
  if (parts.kind === "sensor" && parts.flags.length) {
    return t("nurse.reason.flagged", {
      flags: parts.flags.map((f) => label("flag", f)).join(", "),
    });
  }
  if (parts.kind === "medication" && parts.event) {
    const dose = parts.event.dose_id === null ? "" : t("nurse.reason.dose", { dose: parts.event.dose_id });
    return t("nurse.reason.event", { event: label("dose", parts.event.kind), dose }).trim();
  }
  return t(`nurse.reason.rule.${ruleFamily(alert.rule)}`);
}

/** Rules without values of their own (time-driven, technical) are explained by family. */
function ruleFamily(rule) {
  if (rule.startsWith("missing_")) return "missing";
  if (rule.startsWith("hub_") || rule.startsWith("device_")) return "technical";
  if (rule.startsWith("weight")) return "trend";
  if (rule.startsWith("medication") || rule.startsWith("dispenser")) return "medication";
  return "other";
}

export function severityBadge(severity) {
  return el("span", { class: `badge severity-${severity}` }, label("severity", severity));
}

export function statusBadge(status) {
  const cls = status === "open" ? "badge-warning" : status === "resolved" ? "badge-ok" : "badge-muted";
  return el("span", { class: `badge ${cls}` }, label("alertStatus", status));
}

/** "3 h" waiting, from the server's clock (the browser's may be off). */
export function waitingText(openedAt, serverNow) {
  const skew = serverNow ? Date.now() - new Date(serverNow).getTime() : 0;
  return formatRelative(openedAt, Date.now() - skew);
}

/** A time with its exact value in a tooltip. */
export function timeEl(iso, relativeTo = null) {
  return el(
    "time",
    { datetime: iso, title: formatDateTime(iso) },
    relativeTo === null ? formatDateTime(iso) : waitingText(iso, relativeTo),
  );
}

/** The actor of a history step: the engine in words, people by their id. */
export function actorText(actor) {
  return actor === "hemhub" ? t("nurse.history.system") : actor;
}
