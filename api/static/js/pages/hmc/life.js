// The life actions a device or hub offers in its state (next_states and retire_as come
// from the API's one state machine), each behind a confirmation dialog.
import { el } from "../../core/dom.js";
import { t, label } from "../../core/i18n.js";
import * as ui from "./ui.js";

const REASON = { name: "reason", key: "hmc.field.reason", type: "textarea" };

function body(values, extra = {}) {
  return ui.compact({ reason: values.reason, ...extra });
}

/**
 * Buttons for the transitions through POST {base}/state (quarantine, in_stock, repair,
 * retired); `thing` is {state, next_states, retire_as, data_reset?}; `name` says which.
 */
export function stateButtons(ctx, base, thing, name, after) {
  const buttons = [];
  const vars = { name };
  for (const to of thing.next_states) {
    if (to === "assigned" || to === "returned") continue; // their own actions (assign, place, return)
    if (to === "retired") {
      buttons.push(
        ui.button(
          "hmc.action.retire",
          () =>
            ui.act(
              ctx,
              {
                titleKey: "hmc.dialog.retire.title",
                vars,
                questionKey: "hmc.dialog.retire.question",
                fields: [
                  {
                    name: "retired_as",
                    key: "hmc.field.retired_as",
                    type: "select",
                    options: ui.codeOptions("retired_as", thing.retire_as),
                  },
                  REASON,
                ],
                confirmKey: "hmc.action.retire",
                danger: true,
              },
              (v) => [`${base}/state`, { method: "POST", body: body(v, { to, retired_as: v.retired_as }) }],
              "hmc.done.retired",
              after,
            ),
          "button-danger",
        ),
      );
      continue;
    }
    const unconfirmed = to === "in_stock" && thing.state === "quarantine" && thing.data_reset !== "wiped";
    const fields = unconfirmed
      ? [
          { name: "override", key: "hmc.field.override", type: "checkbox", hintKey: "hmc.field.override_hint" },
          { ...REASON, hintKey: "hmc.field.reason_override_hint" },
        ]
      : [REASON];
    buttons.push(
      ui.button(
        `hmc.action.to.${to}`,
        () =>
          ui.act(
            ctx,
            {
              titleKey: `hmc.dialog.to.${to}.title`,
              vars,
              questionKey: unconfirmed ? "hmc.dialog.to.in_stock.unconfirmed" : `hmc.dialog.to.${to}.question`,
              fields,
              confirmKey: `hmc.action.to.${to}`,
            },
            (v) => [
              `${base}/state`,
              { method: "POST", body: body(v, { to, override: v.override === true ? true : undefined }) },
            ],
            `hmc.done.to.${to}`,
            after,
          ),
        "button",
      ),
    );
  }
  return buttons;
}

/** Return (assigned -> returned): the period ends now or at `until`, with a reason. */
export function returnButton(ctx, base, name, questionKey, after) {
  return ui.button(
    "hmc.action.return",
    () =>
      ui.act(
        ctx,
        {
          titleKey: "hmc.dialog.return.title",
          vars: { name },
          questionKey,
          fields: [
            { name: "until", key: "hmc.field.until", type: "datetime-local", hintKey: "hmc.field.now_hint" },
            REASON,
          ],
          confirmKey: "hmc.action.return",
        },
        (v) => [
          `${base}/return`,
          { method: "POST", body: ui.compact({ until: ui.isoFromLocal(v.until), reason: v.reason }) },
        ],
        "hmc.done.returned",
        after,
      ),
    "button-primary",
  );
}

//: Reasons the fleet itself writes (ingest/inventory.py): shown in words.
const SYSTEM_REASONS = new Set(["registered"]);

/** The state-change history (from, to, when, who, why, what came with it); residents
 * (id -> record) name the resident of an assignment. */
export function historyTable(changes, residents = new Map()) {
  return ui.table(
    [
      { key: "hmc.col.at", cell: (c) => ui.when(c.at) },
      { key: "hmc.col.from", cell: (c) => (c.from_state ? label("life_state", c.from_state) : ui.DASH) },
      { key: "hmc.col.to", cell: (c) => ui.lifeBadge(c.to_state) },
      { key: "hmc.col.by", cell: (c) => c.by_subject },
      {
        key: "hmc.col.reason",
        cell: (c) => (SYSTEM_REASONS.has(c.reason) ? label("change_reason", c.reason) : c.reason),
        wide: true,
      },
      { key: "hmc.col.detail", cell: (c) => detailText(c.detail, residents), wide: true },
    ],
    changes,
    "hmc.history.empty",
  );
}

/** A change's detail in words: known keys translated, values as text. */
export function detailText(detail, residents = new Map()) {
  if (!detail) return ui.DASH;
  const parts = Object.entries(detail).map(([key, value]) => {
    let shown = value;
    if (key === "retired_as") shown = label("retired_as", value);
    else if (key === "patient_id") shown = residents.get(value)?.display_name || value;
    else if (key === "wipe") shown = label("wipe_status", value);
    else if (typeof value === "boolean") shown = t(value ? "hmc.yes" : "hmc.no");
    else if (typeof value === "string" && /^\d{4}-\d\d-\d\dT/.test(value)) shown = ui.when(value);
    else if (value !== null && typeof value === "object") shown = JSON.stringify(value);
    return `${label("change_detail", key)}: ${ui.text(shown)}`;
  });
  return el("span", { class: "hmc-detail" }, parts.join("; "));
}

/** Residents of the principal as select options (for assign and place). */
export function residentOptions(residents) {
  return residents.map((r) => [r.id, r.display_name]);
}
