// Readings of the principal's devices that reached no resident: unattributed (no
// assignment covered them) and quarantined (the sending hub was not entitled to the
// device), counted per device and hub, and the security events of those writes.
// The API shows them (no values) and keeps them; it has no release or discard.
import { el, clear } from "../../core/dom.js";
import { t } from "../../core/i18n.js";
import { api } from "../../core/api.js";
import * as ui from "./ui.js";
import { devicePath } from "./devices.js";

function device(row) {
  const name = [row.manufacturer, row.model].filter(Boolean).join(" ") || row.address;
  return ui.link(devicePath(row.device_id), row.serial ? `${name} (${row.serial})` : name);
}

function why(code) {
  return code ? ui.badge("quarantine", code, "bad") : ui.badge("quarantine", "unassigned", "warn");
}

const UNATTRIBUTED = [
  { key: "hmc.col.device", cell: device },
  { key: "hmc.col.hub", cell: (r) => r.hub_id },
  { key: "hmc.col.why", cell: (r) => why(r.quarantine) },
  { key: "hmc.col.readings", cell: (r) => ui.num(r.readings), num: true },
  { key: "hmc.col.first_measured", cell: (r) => ui.when(r.first_measured_at) },
  { key: "hmc.col.last_measured", cell: (r) => ui.when(r.last_measured_at) },
];

const EVENTS = [
  { key: "hmc.col.at", cell: (e) => ui.when(e.at) },
  { key: "hmc.col.why", cell: (e) => why(e.reason) },
  { key: "hmc.col.hub", cell: (e) => e.hub_id },
  { key: "hmc.col.hub_principal", cell: (e) => e.hub_tenant_id || t("hmc.readings.unknown_hub") },
  { key: "hmc.col.device", cell: (e) => ui.link(devicePath(e.device_id), t("hmc.readings.open_device")) },
  { key: "hmc.col.readings", cell: (e) => ui.num(e.readings), num: true },
  { key: "hmc.col.measured", cell: (e) => `${ui.when(e.first_measured_at)} – ${ui.when(e.last_measured_at)}` },
];

export async function renderReadings(root) {
  clear(root);
  const counts = el("div");
  const events = el("div");
  const since = el("input", { id: "hmc-readings-since", type: "date", name: "since" });
  const form = el(
    "form",
    { class: "toolbar hmc-filters", role: "search" },
    el("div", { class: "field" }, el("label", { for: since.id }, t("hmc.filter.since")), since),
  );
  form.addEventListener("submit", (e) => e.preventDefault());
  since.addEventListener("change", () => loadCounts());
  root.append(
    el("p", { class: "muted" }, t("hmc.readings.intro")),
    form,
    ui.section("hmc.readings.unattributed", counts),
    ui.section("hmc.readings.security", events),
  );

  function sinceIso() {
    return ui.isoFromLocal(since.value);
  }

  async function loadCounts() {
    await ui.fill(counts, async () => {
      const answer = await api("/api/v1/fleet/unattributed", { query: ui.compact({ since: sinceIso() }) });
      return [
        el("p", { class: "muted", role: "status" }, t("hmc.readings.total", { n: ui.num(answer.total) })),
        ui.table(UNATTRIBUTED, answer.devices, "hmc.readings.none"),
      ];
    });
  }

  async function loadEvents(before = null, shown = []) {
    await ui.fill(events, async () => {
      const page = await api("/api/v1/fleet/security-events", { query: ui.compact({ before, limit: 50 }) });
      const all = [...shown, ...page.events];
      const nodes = [ui.table(EVENTS, all, "hmc.readings.no_events")];
      if (page.next_before) {
        nodes.push(ui.button("hmc.action.older", () => loadEvents(page.next_before, all), "button"));
      }
      return nodes;
    });
  }

  await Promise.all([loadCounts(), loadEvents()]);
}
