// Residents' administrative records and care units (HMC): register a resident, correct
// the name or programme, place in a care unit, say what is measured how often, deactivate;
// create and rename care units. No readings or alerts here (those are the nurses').
// /api/v1/residents, /api/v1/care-units, /api/v1/patients/{id}/care-unit
import { el, clear } from "../../core/dom.js";
import { t, label } from "../../core/i18n.js";
import { api } from "../../core/api.js";
import * as ui from "./ui.js";

const PROGRAMMES = ["hypertension", "heart_failure", "copd", "diabetes"];
const MEASUREMENTS = ["blood_pressure", "body_weight", "pulse_oximetry", "glucose", "medication_event"];
const EVERY = [
  ["PT12H", "hmc.every.twice_daily"],
  ["P1D", "hmc.every.daily"],
  ["P2D", "hmc.every.two_days"],
  ["P7D", "hmc.every.weekly"],
];

export function registryPath(id) {
  return `/registry/${id}`;
}

/** An ISO 8601 duration as the API writes one ("P1D", "PT12H") in words. */
export function everyText(iso) {
  const m = /^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:[\d.]+S)?)?$/.exec(iso || "");
  if (!m) return ui.text(iso);
  const [days, hours, minutes] = [m[1], m[2], m[3]].map((x) => Number(x || 0));
  if (days && !hours && !minutes) return t("hmc.every.days", { n: days });
  const total = days * 24 + hours;
  if (total && !minutes) return t("hmc.every.hours", { n: total });
  return t("hmc.every.minutes", { n: total * 60 + minutes });
}

async function units() {
  return new Map((await api("/api/v1/care-units")).map((u) => [u.id, u]));
}

function unitOptions(byId) {
  return [["", t("hmc.field.no_unit")], ...[...byId.values()].map((u) => [u.id, u.name])];
}

export async function renderRegistry(root, params, ctx) {
  clear(root);
  const residents = el("div");
  const careUnits = el("div");
  const showAll = el("input", { id: "hmc-reg-all", type: "checkbox" });
  showAll.addEventListener("change", () => load());
  root.append(
    el("p", { class: "muted" }, t("hmc.registry.intro")),
    ui.section(
      "hmc.registry.residents",
      el(
        "div",
        { class: "toolbar hmc-filters" },
        el("div", { class: "field hmc-check" }, showAll, el("label", { for: showAll.id }, t("hmc.filter.deactivated"))),
        ui.button("hmc.action.new_resident", () => create(), "button-primary"),
      ),
      residents,
    ),
    ui.section(
      "hmc.registry.care_units",
      el("div", { class: "hmc-actions" }, ui.button("hmc.action.new_unit", () => newUnit(), "button")),
      careUnits,
    ),
  );
  let byUnit = new Map();

  async function load() {
    byUnit = await units().catch(() => new Map());
    await Promise.all([
      ui.fill(residents, async () => {
        const list = await api("/api/v1/residents", { query: { deactivated: showAll.checked, limit: 5000 } });
        return ui.table(
          [
            { key: "hmc.col.name", cell: (r) => ui.link(registryPath(r.id), r.display_name) },
            { key: "hmc.col.programme", cell: (r) => label("resident_programme", r.programme) },
            { key: "hmc.col.care_unit", cell: (r) => byUnit.get(r.care_unit_id)?.name || ui.DASH },
            {
              key: "hmc.col.measures",
              cell: (r) =>
                r.schedules
                  .filter((s) => s.active)
                  .map((s) => `${label("schedule_measurement", s.measurement_type)} ${everyText(s.every)}`)
                  .join(", ") || ui.DASH,
              wide: true,
            },
            { key: "hmc.col.deactivated", cell: (r) => (r.deactivated_at ? ui.when(r.deactivated_at) : ui.DASH) },
          ],
          list,
          "hmc.registry.no_residents",
        );
      }),
      ui.fill(careUnits, async () =>
        ui.table(
          [
            { key: "hmc.col.name", cell: (u) => u.name },
            { key: "hmc.col.residents", cell: (u) => ui.num(u.residents), num: true },
            { key: "hmc.col.created", cell: (u) => ui.when(u.created_at) },
            {
              key: "hmc.col.change",
              cell: (u) =>
                ui.button(
                  "hmc.action.rename",
                  () =>
                    ui.act(
                      ctx,
                      {
                        titleKey: "hmc.dialog.rename_unit.title",
                        vars: { name: u.name },
                        fields: [{ name: "name", key: "hmc.field.name", required: true, value: u.name }],
                        confirmKey: "hmc.action.save",
                      },
                      (v) => [`/api/v1/care-units/${u.id}`, { method: "PATCH", body: { name: v.name } }],
                      "hmc.done.saved",
                      load,
                    ),
                  "button-link",
                ),
            },
          ],
          [...byUnit.values()],
          "hmc.registry.no_units",
        ),
      ),
    ]);
  }

  function create() {
    return ui.act(
      ctx,
      {
        titleKey: "hmc.dialog.new_resident.title",
        questionKey: "hmc.dialog.new_resident.question",
        fields: [
          { name: "display_name", key: "hmc.field.display_name", required: true },
          { name: "programme", key: "hmc.field.programme", type: "select", options: ui.codeOptions("resident_programme", PROGRAMMES) },
          { name: "care_unit_id", key: "hmc.field.care_unit", type: "select", options: unitOptions(byUnit) },
        ],
        confirmKey: "hmc.action.create",
      },
      (v) => ["/api/v1/residents", { method: "POST", body: ui.compact(v) }],
      "hmc.done.resident_created",
      (resident) => ctx.navigate(registryPath(resident.id)),
    );
  }

  function newUnit() {
    return ui.act(
      ctx,
      {
        titleKey: "hmc.dialog.new_unit.title",
        fields: [{ name: "name", key: "hmc.field.name", required: true }],
        confirmKey: "hmc.action.create",
      },
      (v) => ["/api/v1/care-units", { method: "POST", body: { name: v.name } }],
      "hmc.done.saved",
      load,
    );
  }

  await load();
}

export async function renderResident(root, params, ctx) {
  const id = params.id;
  const base = `/api/v1/residents/${id}`;
  const render = () =>
    ui.fill(root, async () => {
      const [r, byUnit] = await Promise.all([api(base), units().catch(() => new Map())]);
      ctx.setTitle(t("hmc.registry.title_of", { name: r.display_name }));
      const vars = { name: r.display_name };
      const active = !r.deactivated_at;
      const buttons = [
        ui.button(
          "hmc.action.edit",
          () =>
            ui.act(
              ctx,
              {
                titleKey: "hmc.dialog.edit_resident.title",
                vars,
                questionKey: "hmc.dialog.edit_resident.question",
                fields: [
                  { name: "display_name", key: "hmc.field.display_name", required: true, value: r.display_name },
                  {
                    name: "programme",
                    key: "hmc.field.programme",
                    type: "select",
                    options: ui.codeOptions("resident_programme", PROGRAMMES),
                    value: r.programme,
                  },
                ],
                confirmKey: "hmc.action.save",
              },
              (v) => [base, { method: "PATCH", body: v }],
              "hmc.done.saved",
              render,
            ),
          "button",
        ),
        ui.button(
          "hmc.action.place_in_unit",
          () =>
            ui.act(
              ctx,
              {
                titleKey: "hmc.dialog.place_in_unit.title",
                vars,
                fields: [
                  {
                    name: "care_unit_id",
                    key: "hmc.field.care_unit",
                    type: "select",
                    options: unitOptions(byUnit),
                    value: r.care_unit_id || "",
                  },
                ],
                confirmKey: "hmc.action.save",
              },
              (v) => [`/api/v1/patients/${id}/care-unit`, { method: "PUT", body: { care_unit_id: v.care_unit_id || null } }],
              "hmc.done.saved",
              render,
            ),
          "button",
        ),
      ];
      if (active) {
        buttons.push(
          ui.button(
            "hmc.action.schedule",
            () =>
              ui.act(
                ctx,
                {
                  titleKey: "hmc.dialog.schedule.title",
                  vars,
                  questionKey: "hmc.dialog.schedule.question",
                  fields: [
                    {
                      name: "measurement",
                      key: "hmc.field.measurement",
                      type: "select",
                      options: ui.codeOptions("schedule_measurement", MEASUREMENTS),
                    },
                    { name: "every", key: "hmc.field.every", type: "select", options: EVERY.map(([v, k]) => [v, t(k)]) },
                  ],
                  confirmKey: "hmc.action.save",
                },
                (v) => [`${base}/schedules/${v.measurement}`, { method: "PUT", body: { every: v.every } }],
                "hmc.done.saved",
                render,
              ),
            "button",
          ),
          ui.button(
            "hmc.action.deactivate",
            () =>
              ui.act(
                ctx,
                {
                  titleKey: "hmc.dialog.deactivate.title",
                  vars,
                  questionKey: "hmc.dialog.deactivate.question",
                  fields: [{ name: "reason", key: "hmc.field.reason", type: "textarea", required: true }],
                  confirmKey: "hmc.action.deactivate",
                  danger: true,
                },
                (v) => [`${base}/deactivate`, { method: "POST", body: { reason: v.reason } }],
                "hmc.done.deactivated",
                render,
              ),
            "button-danger",
          ),
        );
      }
      const schedules = ui.table(
        [
          { key: "hmc.col.measurement", cell: (s) => label("schedule_measurement", s.measurement_type) },
          { key: "hmc.col.every", cell: (s) => everyText(s.every) },
          { key: "hmc.col.since", cell: (s) => ui.when(s.starts_at) },
          { key: "hmc.col.state", cell: (s) => t(s.active ? "hmc.schedule.active" : "hmc.schedule.stopped") },
          { key: "hmc.col.by", cell: (s) => s.created_by },
          {
            key: "hmc.col.change",
            cell: (s) =>
              s.active && active
                ? ui.button(
                    "hmc.action.stop",
                    () =>
                      ui.act(
                        ctx,
                        {
                          titleKey: "hmc.dialog.unschedule.title",
                          vars: { name: r.display_name, what: label("schedule_measurement", s.measurement_type) },
                          questionKey: "hmc.dialog.unschedule.question",
                          confirmKey: "hmc.action.stop",
                        },
                        () => [`${base}/schedules/${s.measurement_type}`, { method: "DELETE" }],
                        "hmc.done.saved",
                        render,
                      ),
                    "button-link",
                  )
                : ui.DASH,
          },
        ],
        r.schedules,
        "hmc.registry.no_schedules",
      );
      return [
        el("p", {}, ui.link("/registry", t("hmc.registry.back"))),
        r.deactivated_at
          ? el(
              "p",
              { class: "hmc-paused", role: "status" },
              t("hmc.registry.deactivated", { at: ui.when(r.deactivated_at), reason: ui.text(r.deactivation_reason) }),
            )
          : null,
        el("div", { class: "hmc-actions", role: "group", "aria-label": t("hmc.actions") }, ...buttons),
        ui.section(
          "hmc.registry.record",
          ui.facts([
            ["hmc.col.name", r.display_name],
            ["hmc.col.programme", label("resident_programme", r.programme)],
            ["hmc.col.care_unit", byUnit.get(r.care_unit_id)?.name || ui.DASH],
            ["hmc.col.created", ui.when(r.created_at)],
          ]),
        ),
        ui.section("hmc.registry.schedules", schedules),
      ].filter(Boolean);
    });
  await render();
}
