// The fleet overview: the principal's hubs as their statuses report them (online or
// offline, outbox, versions, the devices' lowest battery), filtered; GET /api/v1/fleet/hubs.
import { el, clear } from "../../core/dom.js";
import { t, label } from "../../core/i18n.js";
import { api } from "../../core/api.js";
import * as ui from "./ui.js";

const CONNECTION = ["online", "offline", "unknown"];
const TONE = { online: "ok", offline: "bad", unknown: "muted" };
const PAGE = 100;

export function connectionBadge(state) {
  return ui.badge("hub_connection", state, TONE[state]);
}

export function batteryText(level) {
  return level === null || level === undefined ? ui.DASH : `${ui.num(level)} %`;
}

function outbox(hub) {
  if (hub.outbox_depth === null || hub.outbox_depth === undefined) return ui.DASH;
  if (!hub.outbox_depth) return ui.num(0);
  const age = hub.outbox_oldest_age_s;
  return age
    ? t("hmc.fleet.outbox_waiting", { n: ui.num(hub.outbox_depth), min: ui.num(age / 60) })
    : ui.num(hub.outbox_depth);
}

function config(hub) {
  if (hub.config_version_issued === null || hub.config_version_issued === undefined) {
    return ui.text(hub.config_version);
  }
  if (hub.config_version === hub.config_version_issued) return ui.text(hub.config_version);
  return el(
    "span",
    { class: "hmc-tone-warn" },
    t("hmc.fleet.config_behind", {
      applied: ui.text(hub.config_version),
      issued: hub.config_version_issued,
    }),
  );
}

const COLUMNS = [
  { key: "hmc.col.hub", cell: (h) => ui.link(`/fleet/hubs/${encodeURIComponent(h.hub_id)}`, h.hub_id) },
  { key: "hmc.col.connection", cell: (h) => connectionBadge(h.state) },
  { key: "hmc.col.since", cell: (h) => ui.ago(h.state_since) },
  { key: "hmc.col.last_seen", cell: (h) => ui.ago(h.last_seen_at) },
  { key: "hmc.col.software", cell: (h) => h.software_version },
  { key: "hmc.col.config", cell: config },
  { key: "hmc.col.outbox", cell: outbox, num: true },
  { key: "hmc.col.devices", cell: (h) => ui.num(h.devices), num: true },
  { key: "hmc.col.lowest_battery", cell: (h) => batteryText(h.lowest_battery), num: true },
  { key: "hmc.col.failing", cell: (h) => ui.num(h.failing_devices), num: true },
  {
    key: "hmc.col.alarms",
    cell: (h) => (h.alarms.length ? h.alarms.map((a) => label("hub_alarm", a)).join(", ") : ui.DASH),
    wide: true,
  },
];

async function totals() {
  // One small request per connection state: the API counts all pages (`total`).
  const counts = await Promise.all(
    CONNECTION.map((state) => api("/api/v1/fleet/hubs", { query: { state, limit: 1 } })),
  );
  return el(
    "ul",
    { class: "hmc-totals", "aria-label": t("hmc.fleet.totals") },
    ...CONNECTION.map((state, i) =>
      el(
        "li",
        { class: `hmc-total hmc-tone-${TONE[state]}` },
        el("strong", {}, ui.num(counts[i].total)),
        " ",
        label("hub_connection", state),
      ),
    ),
  );
}

function filterForm(onChange, careUnits) {
  const form = el("form", { class: "toolbar hmc-filters", role: "search" });
  const fields = [
    {
      name: "state",
      key: "hmc.filter.connection",
      type: "select",
      options: ui.codeOptions("hub_connection", CONNECTION, "hmc.filter.all"),
    },
    { name: "offline_for_hours", key: "hmc.filter.offline_for_hours", type: "number" },
    { name: "battery_low", key: "hmc.filter.battery_low", type: "checkbox" },
    {
      name: "care_unit",
      key: "hmc.filter.care_unit",
      type: "select",
      options: [["", t("hmc.filter.all")], ...careUnits.map((u) => [u.id, u.name])],
    },
    { name: "hub", key: "hmc.filter.hub_id", type: "search" },
  ];
  for (const spec of fields) {
    const id = `hmc-fleet-${spec.name}`;
    const caption = el("label", { for: id }, t(spec.key));
    let input;
    if (spec.type === "select") {
      input = el(
        "select",
        { id, name: spec.name },
        ...spec.options.map(([v, w]) => el("option", { value: v }, w)),
      );
    } else {
      input = el("input", { id, name: spec.name, type: spec.type });
      if (spec.type === "number") {
        input.min = "1";
        input.step = "1";
      }
    }
    input.addEventListener("change", () => onChange(values()));
    form.append(el("div", { class: "field" }, caption, input));
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    onChange(values());
  });
  function values() {
    const f = form.elements;
    return {
      state: f.namedItem("state").value,
      offline_for_hours: f.namedItem("offline_for_hours").value,
      battery_low: f.namedItem("battery_low").checked ? "true" : "",
      care_unit: f.namedItem("care_unit").value,
      hub: f.namedItem("hub").value.trim(),
    };
  }
  return form;
}

export async function renderFleet(root) {
  clear(root);
  const summary = el("div", { class: "hmc-summary" });
  const list = el("div", { class: "hmc-list" });
  let filters = {};
  root.append(
    el("p", { class: "muted" }, t("hmc.fleet.intro")),
    summary,
    filterForm(
      (values) => {
        filters = values;
        load();
      },
      await api("/api/v1/care-units").catch(() => []),
    ),
    list,
  );

  async function load(after = null, shown = []) {
    await ui.fill(list, async () => {
      const { hub, ...query } = filters;
      const page = await api("/api/v1/fleet/hubs", {
        query: ui.compact({ ...query, limit: PAGE, after }),
      });
      const hubs = [...shown, ...page.hubs];
      // The hub-id search narrows what was loaded (the API pages by hub id).
      const needle = (hub || "").toLowerCase();
      const visible = needle ? hubs.filter((h) => h.hub_id.toLowerCase().includes(needle)) : hubs;
      const nodes = [
        el("p", { class: "muted", role: "status" }, t("hmc.fleet.count", { shown: visible.length, total: page.total })),
        ui.table(COLUMNS, visible, "hmc.fleet.empty"),
      ];
      if (page.next_after) {
        nodes.push(ui.button("hmc.action.more", () => load(page.next_after, hubs), "button"));
      }
      return nodes;
    });
  }

  await Promise.all([ui.fill(summary, totals), load()]);
}
