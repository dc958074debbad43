// A resident's alert thresholds: the version in force (limits per rule and severity),
// its history, and a new version proposed with a note (applies from a chosen time).

import { api } from "../../core/api.js";
import { clear, el } from "../../core/dom.js";
import { formatDateTime, formatNumber, label, t, unit } from "../../core/i18n.js";
import { actorText, digitsFor, severityBadge } from "./words.js";

const SEVERITIES = ["critical", "high", "medium", "low"];
const METRIC_UNIT = {
  systolic: "mm[Hg]",
  diastolic: "mm[Hg]",
  pulse: "/min",
  spo2: "%",
  glucose: "mmol/L",
  glucose_mg_dl: "mg/dL",
  weight: "kg",
};

function limitText(rule, metric, value) {
  const u = METRIC_UNIT[metric];
  const sign = rule.endsWith("_low") ? "<" : "≥";
  return `${label("metric", metric)} ${sign} ${formatNumber(value, digitsFor(u))} ${unit(u)}`;
}

function rangesTable(ranges) {
  const rules = Object.keys(ranges).sort();
  return el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      { class: "thresholds-table" },
      el("caption", { class: "visually-hidden" }, t("nurse.thresholds.current")),
      el(
        "thead",
        {},
        el("tr", {}, el("th", { scope: "col" }, t("nurse.thresholds.col.rule")), SEVERITIES.map((s) => el("th", { scope: "col" }, label("severity", s)))),
      ),
      el(
        "tbody",
        {},
        rules.map((rule) =>
          el(
            "tr",
            { dataset: { rule } },
            el("th", { scope: "row" }, label("rule", rule)),
            SEVERITIES.map((s) =>
              el(
                "td",
                { dataset: { severity: s } },
                ranges[rule][s]
                  ? Object.entries(ranges[rule][s])
                      .filter(([m]) => m !== "glucose_mg_dl")
                      .map(([m, v]) => limitText(rule, m, v))
                      .join(", ")
                  : "–",
              ),
            ),
          ),
        ),
      ),
    ),
  );
}

function historyList(view) {
  const items = view.history.map((h) =>
    el(
      "li",
      { dataset: { version: String(h.version) } },
      t("nurse.thresholds.version", { version: h.version, by: actorText(h.created_by), at: formatDateTime(h.created_at), from: formatDateTime(h.applies_from) }),
      h.note ? el("blockquote", { class: "note" }, h.note) : null,
    ),
  );
  items.push(el("li", {}, t("nurse.thresholds.programmeVersion", { programme: label("programme", view.programme) })));
  return el("ol", { class: "history" }, items);
}

function localInputValue(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

function proposalForm(view, onSaved, ctx) {
  const ranges = view.rules.ranges || {};
  const rules = Object.keys(ranges).sort();
  const ruleSelect = el("select", { id: "proposal-rule" }, rules.map((r) => el("option", { value: r }, label("rule", r))));
  const severitySelect = el("select", { id: "proposal-severity" });
  const limits = el("div", { class: "proposal-limits" });
  const note = el("textarea", { id: "proposal-note", rows: 2, maxlength: 2000, required: true });
  const from = el("input", { type: "datetime-local", id: "proposal-from", value: localInputValue(new Date()) });

  function fillSeverities() {
    const tiers = ranges[ruleSelect.value] || {};
    clear(severitySelect).append(
      ...SEVERITIES.filter((s) => tiers[s]).map((s) => el("option", { value: s }, label("severity", s))),
    );
    fillLimits();
  }
  function fillLimits() {
    const tier = (ranges[ruleSelect.value] || {})[severitySelect.value] || {};
    clear(limits).append(
      ...Object.entries(tier)
        .filter(([m]) => m !== "glucose_mg_dl")
        .map(([m, v]) =>
          el(
            "div",
            { class: "field" },
            el("label", { for: `limit-${m}` }, `${label("metric", m)} (${unit(METRIC_UNIT[m])})`),
            el("input", { type: "number", step: "any", id: `limit-${m}`, name: m, value: String(v), required: true }),
          ),
        ),
    );
  }
  ruleSelect.addEventListener("change", fillSeverities);
  severitySelect.addEventListener("change", fillLimits);
  fillSeverities();

  const button = el("button", { type: "submit", class: "button-primary", id: "proposal-save" }, t("nurse.thresholds.save"));
  return el(
    "form",
    {
      class: "card proposal",
      onsubmit: async (e) => {
        e.preventDefault();
        const tier = {};
        for (const input of limits.querySelectorAll("input")) tier[input.name] = Number(input.value);
        const existing = (ranges[ruleSelect.value] || {})[severitySelect.value] || {};
        if (existing.glucose_mg_dl !== undefined && tier.glucose !== undefined) {
          tier.glucose_mg_dl = Math.round(tier.glucose * 18.016); // the same limit in mg/dL
        }
        button.disabled = true;
        try {
          await api(`/api/v1/patients/${encodeURIComponent(view.patient_id)}/thresholds`, {
            method: "PUT",
            body: {
              rules: { ranges: { [ruleSelect.value]: { [severitySelect.value]: tier } } },
              note: note.value.trim(),
              applies_from: new Date(from.value).toISOString(),
            },
          });
          ctx.notify("nurse.thresholds.saved", {}, "success");
          await onSaved();
        } catch (error) {
          ctx.fail(error);
        } finally {
          button.disabled = false;
        }
      },
    },
    el("h2", {}, t("nurse.thresholds.propose")),
    el("p", { class: "muted" }, t("nurse.thresholds.proposeHelp")),
    el("div", { class: "toolbar" },
      el("div", { class: "field" }, el("label", { for: "proposal-rule" }, t("nurse.thresholds.col.rule")), ruleSelect),
      el("div", { class: "field" }, el("label", { for: "proposal-severity" }, t("nurse.thresholds.severity")), severitySelect),
    ),
    limits,
    el("div", { class: "field" }, el("label", { for: "proposal-from" }, t("nurse.thresholds.appliesFrom")), from),
    el("div", { class: "field" }, el("label", { for: "proposal-note" }, t("nurse.thresholds.noteLabel")), note),
    button,
  );
}

export async function renderThresholds(root, params, ctx) {
  const id = params.id;
  const holder = el("div");
  root.append(holder);
  async function load() {
    const view = await api(`/api/v1/patients/${encodeURIComponent(id)}/thresholds`);
    clear(holder).append(
      el("p", {}, el("a", { href: `#/residents/${id}` }, t("nurse.thresholds.back"))),
      el(
        "p",
        { class: "thresholds-source", dataset: { version: String(view.version) } },
        t(view.source === "programme" ? "nurse.thresholds.fromProgramme" : "nurse.thresholds.fromResident", {
          version: view.version,
          programme: label("programme", view.programme),
          by: actorText(view.created_by),
          at: view.created_at ? formatDateTime(view.created_at) : "",
        }),
      ),
      view.note ? el("p", { class: "note" }, t("nurse.thresholds.note", { note: view.note })) : null,
      el("p", { class: "muted small" }, severityBadge("critical"), " ", t("nurse.thresholds.legend")),
      rangesTable(view.rules.ranges || {}),
      el("h2", {}, t("nurse.thresholds.history")),
      historyList(view),
      proposalForm(view, load, ctx),
    );
  }
  await load();
}
