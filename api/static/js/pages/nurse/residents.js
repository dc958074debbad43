// The residents a nurse sees, by name, with their open alerts: the way to a resident's
// page when no alert leads there.

import { api } from "../../core/api.js";
import { el } from "../../core/dom.js";
import { label, t } from "../../core/i18n.js";

export async function renderResidents(root) {
  const residents = await api("/api/v1/patients");
  if (!residents.length) {
    root.append(el("p", { class: "empty" }, t("nurse.residents.empty")));
    return;
  }
  root.append(
    el(
      "div",
      { class: "table-wrap" },
      el(
        "table",
        { class: "residents-table" },
        el("caption", { class: "visually-hidden" }, t("nurse.residents.title")),
        el(
          "thead",
          {},
          el(
            "tr",
            {},
            el("th", { scope: "col" }, t("nurse.residents.col.name")),
            el("th", { scope: "col" }, t("nurse.residents.col.programme")),
            el("th", { scope: "col" }, t("nurse.residents.col.open")),
          ),
        ),
        el(
          "tbody",
          {},
          residents.map((r) =>
            el(
              "tr",
              { dataset: { patientId: r.id } },
              el("td", {}, el("a", { href: `#/residents/${r.id}` }, r.display_name)),
              el("td", {}, label("programme", r.programme)),
              el("td", {}, r.open_alerts ? el("span", { class: "badge badge-warning" }, String(r.open_alerts)) : "0"),
            ),
          ),
        ),
      ),
    ),
  );
}
