// An alert's page: what fired and why, the readings around it, the threshold version
// that judged it, acknowledging and resolving with a note, and who did what.

import { api } from "../../core/api.js";
import { clear, el } from "../../core/dom.js";
import { formatDateTime, label, t } from "../../core/i18n.js";
import { onLive } from "../../core/live.js";
import {
  actorText,
  quantity,
  readingValues,
  reasonText,
  severityBadge,
  statusBadge,
  timeEl,
  valuesText,
} from "./words.js";

function readingsTable(readings) {
  if (!readings.length) return el("p", { class: "empty" }, t("nurse.alert.noReadings"));
  const noted = readings.some((r) => r.time_note);
  return el(
    "div",
    {},
    el(
      "div",
      { class: "table-wrap" },
      el(
        "table",
        { class: "readings-table" },
        el("caption", { class: "visually-hidden" }, t("nurse.alert.readings")),
        el(
          "thead",
          {},
          el(
            "tr",
            {},
            el("th", { scope: "col" }, t("nurse.alert.col.time")),
            el("th", { scope: "col" }, t("nurse.alert.col.values")),
            el("th", { scope: "col" }, t("nurse.alert.col.flags")),
          ),
        ),
        el(
          "tbody",
          {},
          readings.map((r) =>
            el(
              "tr",
              { class: r.fired ? "reading-fired" : "", dataset: { readingId: r.id } },
              el(
                "td",
                { class: "nowrap" },
                formatDateTime(r.measured_at),
                r.time_note ? el("sup", { class: "time-note-mark", title: t(`nurse.timeNote.${r.time_note}`) }, "*") : null,
                r.fired ? el("span", { class: "badge badge-warning fired-tag" }, t("nurse.alert.fired")) : null,
              ),
              el(
                "td",
                {},
                r.event ? label("dose", r.event.kind) : valuesText(readingValues(r.values)) || t("nurse.value.none"),
              ),
              el("td", {}, r.status.map((f) => label("flag", f)).join(", ")),
            ),
          ),
        ),
      ),
    ),
    // Said once, in plain words, and only when some time here came from an unchecked clock.
    noted
      ? el(
          "p",
          { class: "muted small time-note" },
          "* ",
          t(readings.some((r) => r.time_note === "no_device_time") ? "nurse.timeNote.no_device_time" : "nurse.timeNote.hub_clock_unsynced"),
        )
      : null,
  );
}

function thresholdSection(view, rule) {
  if (!view) return el("p", { class: "empty" }, t("nurse.alert.noThresholds"));
  const tiers = (view.rules.ranges || {})[rule];
  return el(
    "div",
    { class: "card" },
    el(
      "p",
      {},
      t(view.source === "programme" ? "nurse.thresholds.fromProgramme" : "nurse.thresholds.fromResident", {
        version: view.version,
        programme: label("programme", view.programme),
        by: actorText(view.created_by),
        at: view.created_at ? formatDateTime(view.created_at) : "",
      }),
    ),
    view.note ? el("p", { class: "note" }, t("nurse.thresholds.note", { note: view.note })) : null,
    tiers
      ? el(
          "ul",
          { class: "tiers" },
          ["critical", "high", "medium", "low"]
            .filter((s) => tiers[s])
            .map((s) =>
              el(
                "li",
                {},
                severityBadge(s),
                " ",
                Object.entries(tiers[s])
                  .filter(([metric]) => metric !== "glucose_mg_dl")
                  .map(([metric, value]) => `${label("metric", metric)} ${rule.endsWith("_low") ? "<" : "≥"} ${quantity(value, METRIC_UNIT[metric])}`)
                  .join(", "),
              ),
            ),
        )
      : null,
  );
}

const METRIC_UNIT = {
  systolic: "mm[Hg]",
  diastolic: "mm[Hg]",
  pulse: "/min",
  spo2: "%",
  glucose: "mmol/L",
  weight: "kg",
};

function historyList(history) {
  return el(
    "ol",
    { class: "history" },
    history.map((h) =>
      el(
        "li",
        { dataset: { action: h.action } },
        el("time", { datetime: h.at }, formatDateTime(h.at)),
        " ",
        t(`nurse.history.${h.action}`, { who: actorText(h.actor), count: h.count ?? "" }),
        h.note ? el("blockquote", { class: "note" }, h.note) : null,
      ),
    ),
  );
}

function actionForm(id, kind, onSubmit) {
  const note = el("textarea", { id: `${kind}-note`, rows: 2, maxlength: 2000 });
  const button = el("button", { type: "submit", class: kind === "resolve" ? "button-primary" : "", id: `${kind}-button` }, t(`nurse.alert.${kind}`));
  return el(
    "form",
    {
      class: "alert-action",
      onsubmit: async (e) => {
        e.preventDefault();
        button.disabled = true;
        try {
          await onSubmit(note.value.trim() || null);
        } finally {
          button.disabled = false;
        }
      },
    },
    el("div", { class: "field" }, el("label", { for: `${kind}-note` }, t(`nurse.alert.${kind}Note`)), note),
    button,
  );
}

export async function renderAlert(root, params, ctx) {
  const id = params.id;
  const holder = el("div");
  root.append(holder);

  async function load() {
    const page = await api(`/api/v1/alerts/${encodeURIComponent(id)}/page`);
    const a = page.alert;
    ctx.setTitle(`${label("rule", a.rule)} – ${a.patient_display_name}`);
    const act = async (kind, note) => {
      try {
        await api(`/api/v1/alerts/${encodeURIComponent(id)}/${kind}`, { method: "POST", body: { note } });
        ctx.notify(`nurse.alert.${kind}Done`, {}, "success");
        await load();
      } catch (error) {
        ctx.fail(error);
      }
    };
    clear(holder).append(
      el(
        "section",
        { class: "card alert-summary", dataset: { status: a.status } },
        el("p", { class: "alert-badges" }, severityBadge(a.severity), " ", statusBadge(a.status)),
        el("p", { class: "alert-reason" }, reasonText(a)),
        el(
          "dl",
          { class: "facts" },
          el("dt", {}, t("nurse.alert.resident")),
          el("dd", {}, el("a", { href: `#/residents/${a.patient_id}` }, a.patient_display_name)),
          el("dt", {}, t("nurse.alert.measured")),
          el("dd", {}, formatDateTime(a.measured_at)),
          el("dt", {}, t("nurse.alert.waiting")),
          el("dd", {}, a.status === "resolved" ? formatDateTime(a.resolved_at) : timeEl(a.opened_at, page.now)),
          a.count > 1 ? el("dt", {}, t("nurse.alert.count")) : null,
          a.count > 1 ? el("dd", {}, String(a.count)) : null,
        ),
        a.principal !== ctx.user.tenant ? el("p", { class: "muted" }, t("nurse.alert.shared")) : null,
        a.principal === ctx.user.tenant && a.status === "open" ? actionForm(id, "ack", (n) => act("ack", n)) : null,
        a.principal === ctx.user.tenant && a.status !== "resolved" ? actionForm(id, "resolve", (n) => act("resolve", n)) : null,
      ),
      el("h2", {}, t("nurse.alert.readings")),
      readingsTable(page.readings),
      el("h2", {}, t("nurse.alert.thresholds")),
      thresholdSection(page.thresholds, a.rule),
      el("h2", {}, t("nurse.alert.history")),
      historyList(page.history),
    );
  }

  await load();
  const reload = (data) => {
    if (!data || !data.alert || data.alert.id === id) load().catch(ctx.fail);
  };
  const offAlert = onLive("alert", reload);
  const offResync = onLive("resync", () => load().catch(ctx.fail));
  return () => {
    offAlert();
    offResync();
  };
}
