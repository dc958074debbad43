// The inventory (the principal's devices, by state and product) and each device's page:
// its facts, its life (assign, return, quarantine, stock, repair, retire), its data
// reset (wipe) and its history. GET/POST /api/v1/devices...
import { el, clear } from "../../core/dom.js";
import { t, label } from "../../core/i18n.js";
import { api } from "../../core/api.js";
import * as ui from "./ui.js";
import * as life from "./life.js";

export const STATES = ["in_stock", "assigned", "returned", "quarantine", "repair", "retired"];
const PAGE = 200;

export function deviceName(d) {
  return [d.manufacturer, d.model].filter(Boolean).join(" ") || d.stable_id || d.address;
}

export function devicePath(id) {
  return `/inventory/devices/${id}`;
}

function residentName(residents, id) {
  if (!id) return ui.DASH;
  const found = residents.get(id);
  return found ? found.display_name : t("hmc.resident.unknown");
}

/** The principal's residents by id (administrative names only; HMC may read them).
 * Each read is audited per resident shown: pages that name a few ask for those few. */
export async function residentsById() {
  const list = await api("/api/v1/residents", { query: { limit: 5000 } });
  return new Map(list.map((r) => [r.id, r]));
}

/** The residents with these ids (one read each; an unknown or foreign one is left out). */
export async function residentsOf(ids) {
  const wanted = [...new Set(ids.filter(Boolean))];
  const found = await Promise.all(wanted.map((id) => api(`/api/v1/residents/${id}`).catch(() => null)));
  return new Map(found.filter(Boolean).map((r) => [r.id, r]));
}

/** The residents a state-change history names (assignments, placements, returns). */
export function residentIds(...changes) {
  return changes.flat().map((c) => c && c.detail && c.detail.patient_id);
}

export async function renderInventory(root, params, ctx) {
  clear(root);
  const list = el("div", { class: "hmc-list" });
  const products = await api("/api/v1/products").catch(() => []);
  const residents = await residentsById().catch(() => new Map());
  const stateSelect = el(
    "select",
    { id: "hmc-inv-state", name: "state" },
    ...ui.codeOptions("life_state", STATES, "hmc.filter.all").map(([v, w]) => el("option", { value: v }, w)),
  );
  const productSelect = el(
    "select",
    { id: "hmc-inv-product", name: "product_id" },
    el("option", { value: "" }, t("hmc.filter.all")),
    ...products.map((p) => el("option", { value: p.id }, `${p.manufacturer} ${p.model}`)),
  );
  const filters = el(
    "form",
    { class: "toolbar hmc-filters", role: "search" },
    el("div", { class: "field" }, el("label", { for: stateSelect.id }, t("hmc.filter.state")), stateSelect),
    el("div", { class: "field" }, el("label", { for: productSelect.id }, t("hmc.filter.product")), productSelect),
  );
  filters.addEventListener("submit", (e) => e.preventDefault());
  stateSelect.addEventListener("change", () => load(0));
  productSelect.addEventListener("change", () => load(0));
  root.append(
    el("p", { class: "muted" }, t("hmc.inventory.intro")),
    el(
      "div",
      { class: "hmc-actions" },
      ui.button("hmc.action.register_device", () => registerDevice(ctx, products, () => load(0)), "button-primary"),
    ),
    filters,
    list,
  );

  const columns = [
    { key: "hmc.col.device", cell: (d) => ui.link(devicePath(d.id), deviceName(d)) },
    { key: "hmc.col.kind", cell: (d) => (d.kind ? label("product_kind", d.kind) : ui.DASH) },
    { key: "hmc.col.serial", cell: (d) => d.serial },
    { key: "hmc.col.address", cell: (d) => d.address },
    { key: "hmc.col.state", cell: (d) => ui.lifeBadge(d.state) },
    { key: "hmc.col.resident", cell: (d) => residentName(residents, d.patient_id) },
    {
      key: "hmc.col.hub",
      cell: (d) => (d.hub_id ? ui.link(`/fleet/hubs/${encodeURIComponent(d.hub_id)}`, d.hub_id) : ui.DASH),
    },
    { key: "hmc.col.last_seen", cell: (d) => ui.ago(d.last_seen_at) },
  ];

  async function load(offset) {
    await ui.fill(list, async () => {
      const devices = await api("/api/v1/devices", {
        query: ui.compact({
          state: stateSelect.value,
          product_id: productSelect.value,
          limit: PAGE,
          offset,
        }),
      });
      const nodes = [
        el("p", { class: "muted", role: "status" }, t("hmc.inventory.count", { n: devices.length, from: offset + 1 })),
        ui.table(columns, devices, "hmc.inventory.empty"),
      ];
      const pager = el("div", { class: "hmc-actions" });
      if (offset > 0) pager.append(ui.button("hmc.action.previous", () => load(Math.max(0, offset - PAGE)), "button"));
      if (devices.length === PAGE) pager.append(ui.button("hmc.action.next", () => load(offset + PAGE), "button"));
      nodes.push(pager);
      return nodes;
    });
  }
  await load(0);
}

function registerDevice(ctx, products, after) {
  const devices = products.filter((p) => p.kind !== "hub");
  if (!devices.length) {
    ctx.notify("hmc.inventory.no_products", {}, "error");
    return;
  }
  return ui.act(
    ctx,
    {
      titleKey: "hmc.dialog.register_device.title",
      fields: [
        {
          name: "product_id",
          key: "hmc.field.product",
          type: "select",
          options: devices.map((p) => [p.id, `${p.manufacturer} ${p.model} (${label("product_kind", p.kind)})`]),
        },
        { name: "serial", key: "hmc.field.serial", required: true },
        { name: "address", key: "hmc.field.address", required: true, placeholder: "C0:11:22:33:44:55", hintKey: "hmc.field.address_hint" },
        { name: "hardware_revision", key: "hmc.field.hardware_revision" },
        { name: "firmware", key: "hmc.field.firmware" },
      ],
      confirmKey: "hmc.action.register",
    },
    (v) => ["/api/v1/devices", { method: "POST", body: ui.compact(v) }],
    "hmc.done.registered",
    (device) => ctx.navigate(devicePath(device.id)),
  ).then(() => after && after());
}

// --- one device --------------------------------------------------------------------------

async function latestWipe(id) {
  try {
    return await api(`/api/v1/devices/${id}/wipe`);
  } catch (error) {
    if (error.status === 404) return null; // never asked
    throw error;
  }
}

function wipeFacts(wipe) {
  if (!wipe) return el("p", { class: "muted" }, t("hmc.wipe.never"));
  return ui.facts([
    ["hmc.wipe.status", ui.badge("wipe_status", wipe.status, WIPE_TONE[wipe.status])],
    ["hmc.wipe.hub", wipe.hub_id],
    ["hmc.wipe.requested", `${ui.when(wipe.requested_at)} (${wipe.requested_by})`],
    ["hmc.wipe.sent", wipe.published_at ? ui.when(wipe.published_at) : t("hmc.wipe.not_sent")],
    ["hmc.wipe.finished", ui.when(wipe.finished_at)],
    ["hmc.wipe.reason", wipe.reason],
    [
      "hmc.wipe.records_before",
      wipe.result && wipe.result.records_before !== undefined ? ui.num(wipe.result.records_before) : ui.DASH,
    ],
  ]);
}

export const WIPE_TONE = { pending: "warn", wiped: "ok", unsupported: "warn", failed: "bad", none: "muted" };

function healthTable(entries) {
  return ui.table(
    [
      { key: "hmc.col.at", cell: (e) => ui.when(e.at) },
      { key: "hmc.col.hub", cell: (e) => e.hub_id },
      { key: "hmc.col.what", cell: (e) => e.reasons.map((r) => label("health_reason", r)).join(", "), wide: true },
      {
        key: "hmc.col.battery",
        cell: (e) => (e.snapshot.battery_level === undefined ? ui.DASH : `${ui.num(e.snapshot.battery_level)} %`),
        num: true,
      },
      { key: "hmc.col.rssi", cell: (e) => ui.text(e.snapshot.rssi), num: true },
      { key: "hmc.col.firmware", cell: (e) => e.snapshot.firmware },
      { key: "hmc.col.last_error", cell: (e) => e.snapshot.last_error, wide: true },
    ],
    entries,
    "hmc.health.history_empty",
  );
}

function actions(ctx, device, rerender) {
  const base = `/api/v1/devices/${device.id}`;
  const name = deviceName(device);
  const buttons = [];
  if (device.next_states.includes("assigned")) {
    buttons.push(
      ui.button(
        "hmc.action.assign",
        async () => {
          // Who and through which hub: read when asked (each read of residents is audited).
          let residents;
          let hubs;
          try {
            [residents, hubs] = await Promise.all([
              residentsById(),
              api("/api/v1/hubs", { query: { state: "assigned", limit: 5000 } }),
            ]);
          } catch (error) {
            ctx.notify("hmc.error.action_failed", { reason: ui.errorText(error) }, "error");
            return;
          }
          const active = [...residents.values()].filter((r) => !r.deactivated_at);
          if (!active.length || !hubs.length) {
            ctx.notify(active.length ? "hmc.assign.no_hubs" : "hmc.assign.no_residents", {}, "error");
            return;
          }
          return ui.act(
            ctx,
            {
              titleKey: "hmc.dialog.assign.title",
              vars: { name },
              questionKey: "hmc.dialog.assign.question",
              fields: [
                { name: "patient_id", key: "hmc.field.resident", type: "select", options: life.residentOptions(active) },
                {
                  name: "hub_id",
                  key: "hmc.field.hub",
                  type: "select",
                  options: hubs.map((h) => [h.id, `${h.id} (${residentName(residents, h.patient_id)})`]),
                  hintKey: "hmc.field.hub_hint",
                },
                { name: "from", key: "hmc.field.from", type: "datetime-local", hintKey: "hmc.field.now_hint" },
                { name: "reason", key: "hmc.field.reason", type: "textarea" },
              ],
              confirmKey: "hmc.action.assign",
            },
            (v) => [
              `${base}/assign`,
              {
                method: "POST",
                body: ui.compact({
                  patient_id: v.patient_id,
                  hub_id: v.hub_id,
                  from: ui.isoFromLocal(v.from),
                  reason: v.reason,
                }),
              },
            ],
            "hmc.done.assigned",
            rerender,
          );
        },
        "button-primary",
      ),
    );
  }
  if (device.next_states.includes("returned")) {
    buttons.push(life.returnButton(ctx, base, name, "hmc.dialog.return.device_question", rerender));
  }
  buttons.push(...life.stateButtons(ctx, base, device, name, rerender));
  if (["returned", "quarantine"].includes(device.state)) {
    buttons.push(
      ui.button(
        "hmc.action.wipe_again",
        () =>
          ui.act(
            ctx,
            {
              titleKey: "hmc.dialog.wipe_device.title",
              vars: { name },
              questionKey: "hmc.dialog.wipe_device.question",
              confirmKey: "hmc.action.wipe_again",
            },
            () => [`${base}/wipe`, { method: "POST", body: {} }],
            "hmc.done.wipe_requested",
            rerender,
          ),
        "button",
      ),
    );
  }
  return buttons;
}

export async function renderDevice(root, params, ctx) {
  const id = params.id;
  const render = () =>
    ui.fill(root, async () => {
      const [device, history, health, wipe] = await Promise.all([
        api(`/api/v1/devices/${id}`),
        api(`/api/v1/devices/${id}/history`),
        // Its own section says so if it fails; the rest of the page still shows.
        api(`/api/v1/fleet/devices/${id}/health-history`, { query: { limit: 50 } }).catch((error) => ({ error })),
        latestWipe(id),
      ]);
      const residents = await residentsOf([device.patient_id, ...residentIds(history)]);
      const buttons = actions(ctx, device, render);
      ctx.setTitle(t("hmc.device.title", { name: deviceName(device) }));
      return [
        el("p", {}, ui.link("/inventory", t("hmc.inventory.back"))),
        el(
          "div",
          { class: "hmc-state-line" },
          ui.lifeBadge(device.state),
          device.data_reset ? ui.badge("wipe_status", device.data_reset, WIPE_TONE[device.data_reset]) : null,
        ),
        buttons.length
          ? el("div", { class: "hmc-actions", role: "group", "aria-label": t("hmc.actions") }, ...buttons)
          : el("p", { class: "muted" }, t("hmc.device.no_actions")),
        ui.section(
          "hmc.device.facts",
          ui.facts([
            ["hmc.col.kind", device.kind ? label("product_kind", device.kind) : ui.DASH],
            ["hmc.col.serial", device.serial],
            ["hmc.col.address", device.address],
            ["hmc.col.stable_id", device.stable_id],
            ["hmc.col.firmware", device.firmware],
            ["hmc.col.hardware_revision", device.hardware_revision],
            ["hmc.col.resident", residentName(residents, device.patient_id)],
            ["hmc.col.assigned_from", ui.when(device.assigned_from)],
            [
              "hmc.col.hub",
              device.hub_id ? ui.link(`/fleet/hubs/${encodeURIComponent(device.hub_id)}`, device.hub_id) : ui.DASH,
            ],
            ["hmc.col.registered", ui.when(device.registered_at)],
            ["hmc.col.first_seen", ui.when(device.first_seen_at)],
            ["hmc.col.last_seen", ui.when(device.last_seen_at)],
          ]),
        ),
        ui.section("hmc.device.wipe", wipeFacts(wipe)),
        ui.section("hmc.device.history", life.historyTable(history, residents)),
        ui.section("hmc.device.health", health.error ? ui.errorBox(health.error) : healthTable(health.entries)),
      ];
    });
  await render();
}
