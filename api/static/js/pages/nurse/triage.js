// The triage queue: unresolved alerts, severity first, then the longest waiting; filters
// by care unit and programme (kept in the address: #/triage?unit=..&programme=..); new
// alerts arrive over the live connection without a reload; a new critical alert is
// announced with a tone and the tab title (can be turned off, remembered).

import { api } from "../../core/api.js";
import { clear, el } from "../../core/dom.js";
import { label, t } from "../../core/i18n.js";
import { onLive } from "../../core/live.js";
import { currentQuery } from "../../core/router.js";
import { announceCritical, cancelNotice, noticeEnabled, setNoticeEnabled } from "./notice.js";
import { reasonText, severityBadge, statusBadge, timeEl } from "./words.js";

const SEVERITIES = ["critical", "high", "medium", "low"];
//: The most urgent alerts first; "show more" adds as many again (every row shown is a
//: resident's data read, and audited as such).
const PAGE = 50;

function filtersFromAddress() {
  const q = currentQuery();
  return { care_unit: q.get("unit") || "", programme: q.get("programme") || "" };
}

function setAddress(filters) {
  const q = new URLSearchParams();
  if (filters.care_unit) q.set("unit", filters.care_unit);
  if (filters.programme) q.set("programme", filters.programme);
  const text = q.toString();
  history.replaceState(null, "", `#/triage${text ? `?${text}` : ""}`);
}

function select(id, labelText, options, value, onchange) {
  return el(
    "div",
    { class: "field" },
    el("label", { for: id }, labelText),
    el(
      "select",
      { id, onchange: (e) => onchange(e.target.value) },
      options.map(([v, text]) => el("option", { value: v, selected: v === value }, text)),
    ),
  );
}

function countsBar(counts) {
  return el(
    "ul",
    { class: "triage-counts", "aria-label": t("nurse.triage.counts") },
    SEVERITIES.map((s) =>
      el(
        "li",
        { dataset: { severity: s } },
        severityBadge(s),
        " ",
        el("strong", { class: "count" }, String(counts[s] ?? 0)),
      ),
    ),
  );
}

function alertRow(alert, now) {
  const resident = el("a", { href: `#/residents/${alert.patient_id}` }, alert.patient_display_name);
  return el(
    "tr",
    { dataset: { alertId: alert.id, severity: alert.severity, status: alert.status } },
    el("td", {}, severityBadge(alert.severity)),
    el(
      "td",
      {},
      el("div", { class: "triage-resident" }, resident),
      el(
        "div",
        { class: "muted small" },
        [alert.care_unit_name, label("programme", alert.programme)].filter(Boolean).join(" · "),
      ),
    ),
    el(
      "td",
      {},
      el("a", { href: `#/alerts/${alert.id}`, class: "triage-rule" }, label("rule", alert.rule)),
      el("div", { class: "triage-reason" }, reasonText(alert)),
      alert.count > 1 ? el("div", { class: "muted small" }, t("nurse.triage.repeated", { count: alert.count })) : null,
    ),
    el("td", { class: "nowrap" }, timeEl(alert.opened_at, now)),
    el("td", {}, statusBadge(alert.status)),
  );
}

export async function renderTriage(root, params, ctx) {
  let filters = filtersFromAddress();
  let known = null; // id -> severity already shown: what is new (or newly critical) on a refresh
  let controller = null;
  let limit = PAGE;
  const table = el("div", { class: "triage-list", "aria-live": "polite" });
  const countsHolder = el("div");
  const noticeToggle = el("input", {
    type: "checkbox",
    id: "critical-notice",
    checked: noticeEnabled(),
    onchange: (e) => {
      setNoticeEnabled(e.target.checked);
    },
  });
  const toolbar = el("div", { class: "toolbar" });

  async function load() {
    if (controller) controller.abort();
    controller = new AbortController();
    const data = await api("/api/v1/triage", {
      query: { care_unit: filters.care_unit, programme: filters.programme, limit },
      signal: controller.signal,
    });
    if (!toolbar.childElementCount) {
      toolbar.append(
        select(
          "filter-unit",
          t("nurse.triage.filter.unit"),
          [["", t("nurse.triage.filter.allUnits")], ...data.care_units.map((u) => [u.id, u.name])],
          filters.care_unit,
          (v) => {
            filters = { ...filters, care_unit: v };
            setAddress(filters);
            refresh();
          },
        ),
        select(
          "filter-programme",
          t("nurse.triage.filter.programme"),
          [["", t("nurse.triage.filter.allProgrammes")], ...data.programmes.map((p) => [p, label("programme", p)])],
          filters.programme,
          (v) => {
            filters = { ...filters, programme: v };
            setAddress(filters);
            refresh();
          },
        ),
        el(
          "div",
          { class: "field field-inline" },
          noticeToggle,
          el("label", { for: "critical-notice" }, t("nurse.triage.notice")),
        ),
      );
    }
    clear(countsHolder).append(countsBar(data.counts));
    const fresh =
      known === null ? [] : data.alerts.filter((a) => !known.has(a.id) || known.get(a.id) !== a.severity);
    known = new Map(data.alerts.map((a) => [a.id, a.severity]));
    if (!data.alerts.length) {
      clear(table).append(el("p", { class: "empty" }, t("nurse.triage.empty")));
    } else {
      clear(table).append(
        el(
          "div",
          { class: "table-wrap" },
          el(
            "table",
            { class: "triage-table" },
            el("caption", { class: "visually-hidden" }, t("nurse.triage.caption")),
            el(
              "thead",
              {},
              el(
                "tr",
                {},
                ["severity", "resident", "reason", "waiting", "status"].map((c) =>
                  el("th", { scope: "col" }, t(`nurse.triage.col.${c}`)),
                ),
              ),
            ),
            el("tbody", {}, data.alerts.map((a) => alertRow(a, data.now))),
          ),
        ),
        data.total > data.alerts.length
          ? el(
              "button",
              {
                type: "button",
                class: "triage-more",
                onclick: () => {
                  limit += PAGE;
                  refresh();
                },
              },
              t("nurse.triage.more", { shown: data.alerts.length, total: data.total }),
            )
          : "", // (Node.append would write a null out as text)
      );
    }
    for (const a of fresh) {
      const row = table.querySelector(`tr[data-alert-id="${a.id}"]`);
      if (row) row.classList.add("triage-new");
    }
    const critical = fresh.find((a) => a.severity === "critical" && a.status === "open");
    if (critical) {
      ctx.notify("nurse.notice.message", { name: critical.patient_display_name }, "warning");
      announceCritical(critical.patient_display_name);
    }
  }

  function refresh() {
    load().catch((error) => {
      if (error.name !== "AbortError") ctx.fail(error);
    });
  }

  root.append(toolbar, countsHolder, table);
  await load();
  // The queue is re-read on every alert event (one request, in triage order), and after
  // the live link comes back (it may have missed events).
  const offAlert = onLive("alert", refresh);
  const offResync = onLive("resync", refresh);
  return () => {
    offAlert();
    offResync();
    if (controller) controller.abort();
    cancelNotice();
  };
}
