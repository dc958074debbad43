// Follow-up figures of the principal (GET /api/v1/fleet/figures/{figure}): devices per
// product and state, days in each state, faults per model, readings per resident and
// week; a period; the same table as CSV from the API.
import { el, clear } from "../../core/dom.js";
import { t, label, formatDate } from "../../core/i18n.js";
import { api } from "../../core/api.js";
import { accessToken } from "../../core/auth.js";
import * as ui from "./ui.js";
import { residentsById } from "./devices.js";

const FIGURES = ["devices", "days-in-state", "faults", "readings-per-week"];
//: Columns that hold ids: shown as names (resident, care unit) or not at all (product).
const HIDDEN = new Set(["product_id"]);

function dateInput(id, name) {
  return el("input", { id, name, type: "date" });
}

function cellOf(column, value, names) {
  if (value === null || value === undefined) return ui.DASH;
  if (column === "kind") return label("product_kind", value);
  if (column === "state") return label("life_state", value);
  if (column === "patient_id") return names.residents.get(value)?.display_name || t("hmc.resident.unknown");
  if (column === "care_unit_id") return names.units.get(value) || ui.DASH;
  if (column === "week") return formatDate(value);
  if (typeof value === "number") return ui.num(value, Number.isInteger(value) ? 0 : 1);
  return String(value);
}

async function downloadCsv(figure, query) {
  // The API writes the CSV (its columns, RFC 4180); the page only saves it.
  const params = new URLSearchParams(ui.compact({ ...query, format: "csv" }));
  const response = await fetch(`/api/v1/fleet/figures/${figure}?${params}`, {
    headers: { Authorization: `Bearer ${accessToken()}`, Accept: "text/csv" },
  });
  if (!response.ok) throw new Error(t("hmc.figures.csv_failed", { status: response.status }));
  const disposition = response.headers.get("Content-Disposition") || "";
  const name = (disposition.match(/filename="([^"]+)"/) || [])[1] || `hemhub-${figure}.csv`;
  const url = URL.createObjectURL(await response.blob());
  const a = el("a", { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

export async function renderFigures(root, params, ctx) {
  clear(root);
  const out = el("div");
  const figure = el(
    "select",
    { id: "hmc-fig-figure", name: "figure" },
    ...FIGURES.map((f) => el("option", { value: f }, label("figure", f))),
  );
  const from = dateInput("hmc-fig-from", "from");
  const to = dateInput("hmc-fig-to", "to");
  const show = el("button", { type: "submit", class: "button-primary" }, t("hmc.action.show"));
  const csv = el("button", { type: "button", class: "button" }, t("hmc.action.download_csv"));
  const form = el(
    "form",
    { class: "toolbar hmc-filters" },
    el("div", { class: "field" }, el("label", { for: figure.id }, t("hmc.figures.figure")), figure),
    el("div", { class: "field" }, el("label", { for: from.id }, t("hmc.field.period_from")), from),
    el("div", { class: "field" }, el("label", { for: to.id }, t("hmc.field.period_to")), to),
    el("div", { class: "hmc-actions" }, show, csv),
  );
  root.append(
    el("p", { class: "muted" }, t("hmc.figures.intro")),
    form,
    out,
  );
  const query = () => ui.compact({ from: ui.isoFromLocal(from.value), to: ui.isoFromLocal(to.value) });
  const names = { residents: new Map(), units: new Map() };

  async function load() {
    await ui.fill(out, async () => {
      const chosen = figure.value;
      const [table] = await Promise.all([
        api(`/api/v1/fleet/figures/${chosen}`, { query: query() }),
        chosen === "readings-per-week" && !names.residents.size
          ? Promise.all([
              residentsById().then((m) => (names.residents = m)),
              api("/api/v1/care-units").then((u) => (names.units = new Map(u.map((x) => [x.id, x.name])))),
            ]).catch(() => null)
          : null,
      ]);
      const columns = table.columns
        .filter((c) => !HIDDEN.has(c))
        .map((c) => ({
          key: `hmc.figures.col.${c}`,
          cell: (row) => cellOf(c, row[c], names),
          num: typeof (table.rows[0] || {})[c] === "number",
        }));
      return [
        el("h2", {}, label("figure", chosen)),
        el(
          "p",
          { class: "muted" },
          t(chosen === "devices" ? "hmc.figures.now" : "hmc.figures.period", {
            from: formatDate(table.start),
            to: formatDate(table.end),
          }),
        ),
        ui.table(columns, table.rows, "hmc.figures.empty"),
      ];
    });
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });
  figure.addEventListener("change", load);
  csv.addEventListener("click", async () => {
    try {
      await downloadCsv(figure.value, query());
    } catch (error) {
      ctx.notify("hmc.error.action_failed", { reason: ui.errorText(error) }, "error");
    }
  });
  await load();
}
