// The catalogue and the hubs' register: the products the principal lends out (add one),
// and its hubs by their life in the fleet (register one, then open it to issue its
// password and place it). /api/v1/products, /api/v1/hubs
import { el, clear } from "../../core/dom.js";
import { t, label } from "../../core/i18n.js";
import { api } from "../../core/api.js";
import * as ui from "./ui.js";
import { residentsById, STATES } from "./devices.js";

const KINDS = ["blood_pressure", "weight_scale", "pulse_oximeter", "glucose", "dispenser", "hub"];

function productTable(products) {
  return ui.table(
    [
      { key: "hmc.col.kind", cell: (p) => label("product_kind", p.kind) },
      { key: "hmc.col.manufacturer", cell: (p) => p.manufacturer },
      { key: "hmc.col.model", cell: (p) => p.model },
      { key: "hmc.col.profiles", cell: (p) => p.profiles.map((x) => label("device_profile", x)).join(", ") },
      { key: "hmc.col.bond", cell: (p) => t(p.quirks && p.quirks.bond ? "hmc.yes" : "hmc.no") },
      { key: "hmc.col.firmware_line", cell: (p) => p.firmware_line },
      { key: "hmc.col.created", cell: (p) => ui.when(p.created_at) },
    ],
    products,
    "hmc.catalogue.no_products",
  );
}

function hubTable(hubs, residents) {
  return ui.table(
    [
      { key: "hmc.col.hub", cell: (h) => ui.link(`/fleet/hubs/${encodeURIComponent(h.id)}`, h.id) },
      { key: "hmc.col.state", cell: (h) => ui.lifeBadge(h.state) },
      { key: "hmc.col.serial", cell: (h) => h.serial },
      {
        key: "hmc.col.resident",
        cell: (h) => (h.patient_id ? residents.get(h.patient_id)?.display_name || t("hmc.resident.unknown") : ui.DASH),
      },
      {
        key: "hmc.col.config",
        cell: (h) =>
          t(h.config_in_force ? "hmc.hub.config_in_force" : "hmc.hub.config_waiting", {
            wanted: h.config_version_wanted,
            confirmed: ui.text(h.config_version_confirmed),
          }),
      },
      { key: "hmc.col.credentials", cell: (h) => (h.credentials_issued_at ? ui.when(h.credentials_issued_at) : t("hmc.hub.credentials_none")) },
      { key: "hmc.col.allowed_devices", cell: (h) => ui.num(h.devices), num: true },
    ],
    hubs,
    "hmc.catalogue.no_hubs",
  );
}

function addProduct(ctx, after) {
  return ui.act(
    ctx,
    {
      titleKey: "hmc.dialog.add_product.title",
      questionKey: "hmc.dialog.add_product.question",
      fields: [
        { name: "kind", key: "hmc.field.kind", type: "select", options: ui.codeOptions("product_kind", KINDS) },
        { name: "manufacturer", key: "hmc.field.manufacturer", required: true },
        { name: "model", key: "hmc.field.model", required: true },
        { name: "firmware_line", key: "hmc.field.firmware_line" },
        { name: "bond", key: "hmc.field.bond", type: "checkbox", hintKey: "hmc.field.bond_hint" },
      ],
      confirmKey: "hmc.action.add",
    },
    (v) => [
      "/api/v1/products",
      {
        method: "POST",
        body: ui.compact({
          kind: v.kind,
          manufacturer: v.manufacturer,
          model: v.model,
          firmware_line: v.firmware_line,
          quirks: v.bond ? { bond: true } : undefined,
        }),
      },
    ],
    "hmc.done.product_added",
    after,
  );
}

function registerHub(ctx, products, after) {
  const hubProducts = products.filter((p) => p.kind === "hub");
  return ui.act(
    ctx,
    {
      titleKey: "hmc.dialog.register_hub.title",
      questionKey: "hmc.dialog.register_hub.question",
      fields: [
        { name: "id", key: "hmc.field.hub_id", required: true, placeholder: "hub-000123", hintKey: "hmc.field.hub_id_hint" },
        {
          name: "product_id",
          key: "hmc.field.product",
          type: "select",
          options: [["", t("hmc.field.none")], ...hubProducts.map((p) => [p.id, `${p.manufacturer} ${p.model}`])],
        },
        { name: "serial", key: "hmc.field.serial" },
      ],
      confirmKey: "hmc.action.register",
    },
    (v) => ["/api/v1/hubs", { method: "POST", body: ui.compact(v) }],
    "hmc.done.hub_registered",
    (hub) => ctx.navigate(`/fleet/hubs/${encodeURIComponent(hub.id)}`),
  ).then(() => after && after());
}

export async function renderCatalogue(root, params, ctx) {
  clear(root);
  const products = el("div");
  const hubs = el("div");
  let known = [];
  const state = el(
    "select",
    { id: "hmc-cat-hub-state", name: "state" },
    ...ui.codeOptions("life_state", STATES, "hmc.filter.all").map(([v, w]) => el("option", { value: v }, w)),
  );
  state.addEventListener("change", () => loadHubs());
  root.append(
    el("p", { class: "muted" }, t("hmc.catalogue.intro")),
    ui.section(
      "hmc.catalogue.products",
      el("div", { class: "hmc-actions" }, ui.button("hmc.action.add_product", () => addProduct(ctx, loadProducts), "button-primary")),
      products,
    ),
    ui.section(
      "hmc.catalogue.hubs",
      el(
        "div",
        { class: "toolbar hmc-filters" },
        el("div", { class: "field" }, el("label", { for: state.id }, t("hmc.filter.state")), state),
        ui.button("hmc.action.register_hub", () => registerHub(ctx, known, loadHubs), "button-primary"),
      ),
      hubs,
    ),
  );

  async function loadProducts() {
    await ui.fill(products, async () => {
      known = await api("/api/v1/products");
      return productTable(known);
    });
  }

  async function loadHubs() {
    await ui.fill(hubs, async () => {
      const [list, residents] = await Promise.all([
        api("/api/v1/hubs", { query: ui.compact({ state: state.value, limit: 500 }) }),
        residentsById().catch(() => new Map()),
      ]);
      return hubTable(list, residents);
    });
  }

  await Promise.all([loadProducts(), loadHubs()]);
}
