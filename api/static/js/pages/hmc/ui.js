// Building blocks of the HMC pages: tables, facts, badges, the confirmation dialog and
// the one way an action's result or error is shown. Every value goes in as text.
import { el, clear } from "../../core/dom.js";
import {
  t,
  label,
  formatDateTime,
  formatRelative,
  formatNumber,
  getTimeZone,
} from "../../core/i18n.js";
import { api } from "../../core/api.js";

export const DASH = "–";

/** A value as text: null/undefined/"" become a dash. */
export function text(value) {
  return value === null || value === undefined || value === "" ? DASH : String(value);
}

export function when(iso) {
  return iso ? formatDateTime(iso) : DASH;
}

/** A time as "12 min ago", with the full date and time as its title. */
export function ago(iso) {
  if (!iso) return document.createTextNode(DASH);
  const node = el("time", { datetime: iso }, formatRelative(iso));
  node.title = formatDateTime(iso);
  return node;
}

export function num(value, digits = 0) {
  return value === null || value === undefined ? DASH : formatNumber(value, digits);
}

/** A code in words, in a badge coloured by its tone (ok, warn, bad, muted). */
export function badge(kind, code, tone = "muted") {
  return el("span", { class: `badge hmc-tone-${tone}` }, code ? label(kind, code) : DASH);
}

const STATE_TONE = {
  in_stock: "ok",
  assigned: "info",
  returned: "warn",
  quarantine: "warn",
  repair: "warn",
  retired: "muted",
};

export function lifeBadge(state) {
  return badge("life_state", state, STATE_TONE[state] || "muted");
}

export function link(path, content) {
  return el("a", { href: `#${path}` }, content);
}

export function button(textKey, onClick, cls = "button") {
  const node = el("button", { type: "button", class: cls }, t(textKey));
  node.addEventListener("click", onClick);
  return node;
}

/**
 * A table in a horizontally scrolling wrapper. `columns`: [{key (i18n), cell(row) ->
 * Node|string, num?, wide?}] (`wide`: free text that may wrap; other cells keep to one
 * line and the wrapper scrolls); `emptyKey` is shown (not as an error) when there are
 * no rows.
 */
export function table(columns, rows, emptyKey = "hmc.empty") {
  if (!rows.length) return el("p", { class: "empty hmc-empty" }, t(emptyKey));
  const head = el("tr", {}, ...columns.map((c) => el("th", c.num ? { scope: "col", class: "number" } : { scope: "col" }, t(c.key))));
  const body = rows.map((row) =>
    el(
      "tr",
      {},
      ...columns.map((c) => {
        const value = c.cell(row);
        const cls = c.num ? "number" : c.wide ? "hmc-text" : null;
        return el("td", { class: cls }, value instanceof Node ? value : text(value));
      }),
    ),
  );
  // Focusable, so that a keyboard can scroll it sideways when it is wider than the screen.
  return el(
    "div",
    { class: "table-wrap", tabindex: "0" },
    el("table", { class: "hmc-table" }, el("thead", {}, head), el("tbody", {}, ...body)),
  );
}

/** Facts as a definition list: [[labelKey, Node|string], ...]. */
export function facts(pairs) {
  const dl = el("dl", { class: "hmc-facts" });
  for (const [key, value] of pairs) {
    dl.append(el("dt", {}, t(key)), el("dd", {}, value instanceof Node ? value : text(value)));
  }
  return dl;
}

export function section(titleKey, ...content) {
  return el("section", { class: "card hmc-section" }, el("h2", {}, t(titleKey)), ...content);
}

/** The words for a failure: ApiError's message is translated and carries the API's
 * reason (`detail`), e.g. why a transition is not possible now. */
export function errorText(error) {
  return (error && error.message) || t("hmc.error.unknown");
}

export function errorBox(error) {
  return el("p", { class: "message message-error", role: "alert" }, errorText(error));
}

export function loading() {
  return el("p", { class: "loading", "aria-busy": "true" }, t("hmc.loading"));
}

/**
 * Render `build()` into `root` with a loading line first and a readable error instead of
 * a crash. `build` returns nodes (or one node).
 */
export async function fill(root, build) {
  clear(root);
  root.append(loading());
  try {
    const nodes = await build();
    clear(root);
    root.append(...(Array.isArray(nodes) ? nodes : [nodes]));
  } catch (error) {
    clear(root);
    root.append(errorBox(error));
  }
}

function field(spec, id) {
  const caption = el("label", { for: id }, t(spec.key));
  let input;
  if (spec.type === "select") {
    input = el(
      "select",
      { id, name: spec.name },
      ...spec.options.map(([value, words]) => el("option", { value }, words)),
    );
  } else if (spec.type === "checkbox") {
    input = el("input", { id, name: spec.name, type: "checkbox" });
    return el("div", { class: "field hmc-check" }, input, caption);
  } else if (spec.type === "textarea") {
    input = el("textarea", { id, name: spec.name, rows: "3" });
  } else {
    input = el("input", { id, name: spec.name, type: spec.type || "text" });
  }
  if (spec.required) input.required = true;
  if (spec.value !== undefined && spec.value !== null) input.value = spec.value;
  if (spec.placeholder) input.placeholder = spec.placeholder;
  const parts = [caption, input];
  if (spec.hintKey) {
    const hint = el("small", { id: `${id}-hint`, class: "muted" }, t(spec.hintKey));
    input.setAttribute("aria-describedby", hint.id);
    parts.push(hint);
  }
  return el("div", { class: "field" }, ...parts);
}

let dialogs = 0;

/**
 * Ask before an action: a modal dialog with a question, optional fields and
 * Confirm/Cancel. Resolves to the fields' values ({name: value}), or null when
 * cancelled. `fields`: [{name, key, type: text|textarea|select|checkbox|datetime-local,
 * required, options: [[value, words]], value, hintKey}].
 */
export function confirmAction({ titleKey, vars, questionKey, fields = [], confirmKey, danger }) {
  const n = ++dialogs;
  const form = el("form", { method: "dialog", class: "hmc-form" });
  const title = el("h2", { id: `hmc-dialog-${n}-title` }, t(titleKey, vars));
  form.append(title);
  if (questionKey) form.append(el("p", {}, t(questionKey, vars)));
  for (const spec of fields) form.append(field(spec, `hmc-dialog-${n}-${spec.name}`));
  const cancel = el("button", { type: "button", class: "button" }, t("hmc.action.cancel"));
  const ok = el(
    "button",
    { type: "submit", class: danger ? "button-danger" : "button-primary" },
    t(confirmKey || "hmc.action.confirm"),
  );
  form.append(el("div", { class: "hmc-actions" }, cancel, ok));
  const dialog = el("dialog", { class: "hmc-dialog", "aria-labelledby": title.id }, form);
  document.body.append(dialog);
  return new Promise((resolve) => {
    let answer = null;
    cancel.addEventListener("click", () => dialog.close());
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!form.reportValidity()) return;
      answer = {};
      for (const spec of fields) {
        const input = form.elements.namedItem(spec.name);
        answer[spec.name] = spec.type === "checkbox" ? input.checked : input.value.trim();
      }
      dialog.close();
    });
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(answer);
    });
    dialog.showModal();
  });
}

/**
 * Ask, then call the API, then say what happened (ctx.notify) and run `after` (usually
 * a re-render). `request(values)` returns [path, {method, body}].
 */
export async function act(ctx, dialog, request, doneKey, after) {
  const values = await confirmAction(dialog);
  if (values === null) return;
  const [path, options] = request(values);
  try {
    const result = await api(path, options);
    ctx.notify(doneKey, dialog.vars || {}, "success");
    if (after) await after(result);
  } catch (error) {
    ctx.notify("hmc.error.action_failed", { reason: errorText(error) }, "error");
  }
  // The page was drawn anew: a keyboard user goes on from its heading, not the top.
  if (!document.activeElement || document.activeElement === document.body) {
    const title = document.getElementById("page-title");
    if (title) title.focus();
  }
}

/** How far `zone`'s wall clock is ahead of UTC at the instant `utcMs` (ms). */
function zoneOffsetMs(utcMs, zone) {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone: zone,
    hourCycle: "h23",
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  }).formatToParts(new Date(utcMs));
  const v = Object.fromEntries(parts.map((p) => [p.type, Number(p.value)]));
  return Date.UTC(v.year, v.month - 1, v.day, v.hour, v.minute, v.second) - utcMs;
}

/**
 * A wall-clock time typed into a `datetime-local` ("2026-12-01T09:00") or `date` input,
 * read in the principal's time zone (as every time on the pages is shown), as an ISO
 * 8601 instant; null when empty.
 */
export function isoFromLocal(value) {
  if (!value) return null;
  const [day, time = "00:00"] = value.split("T");
  const [y, m, d] = day.split("-").map(Number);
  const [hh, mm] = time.split(":").map(Number);
  const wall = Date.UTC(y, m - 1, d, hh, mm);
  const zone = getTimeZone();
  // Twice: the offset at the instant itself (a change of summer time in between).
  let utc = wall - zoneOffsetMs(wall, zone);
  utc = wall - zoneOffsetMs(utc, zone);
  return new Date(utc).toISOString();
}

/** Options for a select of codes in words, with an "all" option first when asked. */
export function codeOptions(kind, codes, allKey) {
  const options = codes.map((c) => [c, label(kind, c)]);
  return allKey ? [["", t(allKey)], ...options] : options;
}

/** Drop empty values from a query object. */
export function compact(query) {
  return Object.fromEntries(
    Object.entries(query).filter(([, v]) => v !== null && v !== undefined && v !== ""),
  );
}
