// Rollouts: campaigns that roll an artifact (hub software or device firmware) out in
// waves, halted by their health gates; start, pause, resume, cancel, roll back; each
// target's state and every step. /api/v1/ota/...
import { el, clear } from "../../core/dom.js";
import { t, label } from "../../core/i18n.js";
import { api } from "../../core/api.js";
import * as ui from "./ui.js";

const TONE = {
  draft: "muted",
  running: "info",
  paused: "warn",
  completed: "ok",
  cancelled: "muted",
  rolling_back: "warn",
  rolled_back: "bad",
};
const TARGET_TONE = {
  pending: "muted",
  issued: "info",
  confirmed: "ok",
  failed: "bad",
  skipped: "muted",
  rolled_back: "warn",
  restored: "ok",
};

export function campaignPath(id) {
  return `/rollouts/${id}`;
}

function stateBadge(state) {
  return ui.badge("campaign_state", state, TONE[state]);
}

function targetStates(states) {
  if (!states) return ui.DASH;
  return Object.entries(states)
    .map(([state, n]) => `${label("target_state", state)}: ${ui.num(n)}`)
    .join(", ");
}

function waveText(c) {
  return t("hmc.rollouts.wave_of", { wave: c.wave + 1, waves: c.waves.length, percent: c.waves[c.wave] });
}

const LIST = [
  { key: "hmc.col.name", cell: (c) => ui.link(campaignPath(c.id), c.name) },
  { key: "hmc.col.artifact", cell: (c) => `${label("artifact_kind", c.kind)} ${c.version}` },
  { key: "hmc.col.state", cell: (c) => stateBadge(c.state) },
  { key: "hmc.col.wave", cell: (c) => (c.state === "draft" ? ui.DASH : waveText(c)) },
  { key: "hmc.col.targets", cell: (c) => ui.num(c.targets), num: true },
  { key: "hmc.col.progress", cell: (c) => targetStates(c.target_states), wide: true },
  { key: "hmc.col.updated", cell: (c) => ui.ago(c.updated_at) },
];

export async function renderCampaigns(root, params, ctx) {
  clear(root);
  const list = el("div");
  const artifacts = el("div");
  root.append(
    el("p", { class: "muted" }, t("hmc.rollouts.intro")),
    el(
      "div",
      { class: "hmc-actions" },
      ui.button("hmc.action.new_campaign", () => create(ctx), "button-primary"),
      ui.button("hmc.action.register_artifact", () => registerArtifact(ctx, () => renderCampaigns(root, params, ctx)), "button"),
    ),
    list,
    ui.section("hmc.rollouts.artifacts", artifacts),
  );
  await Promise.all([
    ui.fill(list, async () => ui.table(LIST, await api("/api/v1/ota/campaigns"), "hmc.rollouts.empty")),
    ui.fill(artifacts, async () =>
      ui.table(
        [
          { key: "hmc.col.artifact", cell: (a) => label("artifact_kind", a.kind) },
          { key: "hmc.col.version", cell: (a) => a.version },
          { key: "hmc.col.target_name", cell: (a) => a.target },
          { key: "hmc.col.notes", cell: (a) => a.notes, wide: true },
          { key: "hmc.col.registered", cell: (a) => ui.when(a.created_at) },
        ],
        await api("/api/v1/ota/artifacts"),
        "hmc.rollouts.no_artifacts",
      ),
    ),
  ]);
}

async function registerArtifact(ctx, after) {
  let products;
  try {
    products = (await api("/api/v1/products")).filter((p) => p.kind !== "hub");
  } catch (error) {
    ctx.notify("hmc.error.action_failed", { reason: ui.errorText(error) }, "error");
    return;
  }
  await ui.act(
    ctx,
    {
      titleKey: "hmc.dialog.register_artifact.title",
      questionKey: "hmc.dialog.register_artifact.question",
      fields: [
        {
          name: "kind",
          key: "hmc.field.artifact_kind",
          type: "select",
          options: ui.codeOptions("artifact_kind", ["hub_software", "device_firmware"]),
        },
        { name: "version", key: "hmc.field.version", required: true, placeholder: "2.5.0" },
        { name: "target", key: "hmc.field.target_name", required: true, hintKey: "hmc.field.target_name_hint" },
        {
          name: "product_id",
          key: "hmc.field.firmware_product",
          type: "select",
          options: [["", t("hmc.field.none")], ...products.map((p) => [p.id, `${p.manufacturer} ${p.model}`])],
          hintKey: "hmc.field.firmware_product_hint",
        },
        { name: "sha256", key: "hmc.field.sha256" },
        { name: "notes", key: "hmc.field.notes", type: "textarea" },
      ],
      confirmKey: "hmc.action.register",
    },
    (v) => ["/api/v1/ota/artifacts", { method: "POST", body: ui.compact(v) }],
    "hmc.done.artifact_registered",
    after,
  );
}

async function create(ctx) {
  let artifacts;
  try {
    artifacts = await api("/api/v1/ota/artifacts");
  } catch (error) {
    ctx.notify("hmc.error.action_failed", { reason: ui.errorText(error) }, "error");
    return;
  }
  if (!artifacts.length) {
    ctx.notify("hmc.rollouts.no_artifacts", {}, "error");
    return;
  }
  await ui.act(
    ctx,
    {
      titleKey: "hmc.dialog.new_campaign.title",
      questionKey: "hmc.dialog.new_campaign.question",
      fields: [
        { name: "name", key: "hmc.field.name", required: true },
        {
          name: "artifact_id",
          key: "hmc.field.artifact",
          type: "select",
          options: artifacts.map((a) => [a.id, `${label("artifact_kind", a.kind)} ${a.version}`]),
        },
        { name: "waves", key: "hmc.field.waves", value: "1, 10, 50, 100", hintKey: "hmc.field.waves_hint" },
        { name: "margin_failed_sessions", key: "hmc.field.margin_failed_sessions", type: "number", value: "2" },
        { name: "margin_error_readings", key: "hmc.field.margin_error_readings", type: "number", value: "0" },
      ],
      confirmKey: "hmc.action.create",
    },
    (v) => [
      "/api/v1/ota/campaigns",
      {
        method: "POST",
        body: {
          name: v.name,
          artifact_id: v.artifact_id,
          waves: v.waves.split(/[\s,;]+/).filter(Boolean).map(Number),
          margin_failed_sessions: Number(v.margin_failed_sessions),
          margin_error_readings: Number(v.margin_error_readings),
        },
      },
    ],
    "hmc.done.campaign_created",
    (campaign) => ctx.navigate(campaignPath(campaign.id)),
  );
}

// --- one campaign ------------------------------------------------------------------------

function wavesList(c) {
  // Each wave: the share of the targets it reaches (cumulative), and where the campaign is.
  return el(
    "ol",
    { class: "hmc-waves" },
    ...c.waves.map((percent, i) => {
      const where = c.state === "draft" || i > c.wave ? "next" : i === c.wave ? "current" : "done";
      return el(
        "li",
        { class: `hmc-wave hmc-wave-${where}`, "aria-current": where === "current" ? "step" : null },
        t("hmc.rollouts.wave", { n: i + 1, percent }),
        " ",
        el("span", { class: "muted" }, t(`hmc.rollouts.wave_${where}`)),
      );
    }),
  );
}

function gates(c) {
  const window =
    c.window_start && c.window_end
      ? t("hmc.rollouts.window", { start: c.window_start.slice(0, 5), end: c.window_end.slice(0, 5), zone: c.time_zone })
      : t("hmc.rollouts.any_time");
  return ui.facts([
    ["hmc.rollouts.gate_failed_sessions", t("hmc.rollouts.at_most", { n: c.margin_failed_sessions })],
    ["hmc.rollouts.gate_error_readings", t("hmc.rollouts.at_most", { n: c.margin_error_readings })],
    ["hmc.rollouts.gate_confirm", t("hmc.minutes", { n: ui.num(c.confirm_timeout_s / 60) })],
    ["hmc.rollouts.gate_online", t("hmc.rollouts.gate_online_text")],
    ["hmc.rollouts.max_parallel", ui.num(c.max_parallel)],
    ["hmc.rollouts.window_label", window],
  ]);
}

function targetsTable(targets) {
  return ui.table(
    [
      { key: "hmc.col.hub", cell: (x) => ui.link(`/fleet/hubs/${encodeURIComponent(x.hub_id)}`, x.hub_id) },
      { key: "hmc.col.address", cell: (x) => x.address || ui.DASH },
      { key: "hmc.col.wave", cell: (x) => ui.num(x.wave + 1), num: true },
      { key: "hmc.col.state", cell: (x) => ui.badge("target_state", x.state, TARGET_TONE[x.state]) },
      { key: "hmc.col.from_version", cell: (x) => x.from_version },
      { key: "hmc.col.running", cell: (x) => x.running },
      {
        key: "hmc.col.connection",
        cell: (x) => (x.online === null ? ui.DASH : label("hub_connection", x.online ? "online" : "offline")),
      },
      { key: "hmc.col.progress", cell: (x) => (x.progress && x.progress.state ? label("update_progress", x.progress.state) : ui.DASH), wide: true },
      { key: "hmc.col.reason", cell: (x) => x.reason, wide: true },
    ],
    targets,
    "hmc.rollouts.no_targets",
  );
}

function eventsTable(events) {
  return ui.table(
    [
      { key: "hmc.col.at", cell: (e) => ui.when(e.at) },
      { key: "hmc.col.what", cell: (e) => label("campaign_event", e.kind), wide: true },
      { key: "hmc.col.by", cell: (e) => (e.by_subject === "engine" ? t("hmc.rollouts.engine") : e.by_subject) },
      {
        key: "hmc.col.detail",
        cell: (e) => {
          if (!e.detail) return ui.DASH;
          if (e.detail.reason) return e.detail.reason;
          if (e.detail.wave !== undefined) return t("hmc.rollouts.wave_n", { n: e.detail.wave + 1 });
          if (Array.isArray(e.detail.targets)) return e.detail.targets.join(", ");
          if (e.detail.targets !== undefined) return t("hmc.rollouts.targets_n", { n: e.detail.targets });
          return JSON.stringify(e.detail);
        },
        wide: true,
      },
    ],
    events,
    "hmc.history.empty",
  );
}

function actions(ctx, c, rerender) {
  const base = `/api/v1/ota/campaigns/${c.id}`;
  const vars = { name: c.name };
  const reason = (required) => [{ name: "reason", key: "hmc.field.reason", type: "textarea", required }];
  const step = (verb, { fields = [], danger = false, cls = "button" } = {}) =>
    ui.button(
      `hmc.action.campaign.${verb}`,
      () =>
        ui.act(
          ctx,
          {
            titleKey: `hmc.dialog.campaign.${verb}.title`,
            vars,
            questionKey: `hmc.dialog.campaign.${verb}.question`,
            fields,
            confirmKey: `hmc.action.campaign.${verb}`,
            danger,
          },
          (v) => [`${base}/${verb}`, { method: "POST", body: verb === "start" || verb === "resume" ? undefined : ui.compact(v) }],
          `hmc.done.campaign.${verb}`,
          rerender,
        ),
      cls,
    );
  // Which steps a state allows (ingest/campaigns.py); the API judges each request.
  const offered = {
    draft: [step("start", { cls: "button-primary" }), step("cancel", { fields: reason(false), danger: true, cls: "button-danger" })],
    running: [
      step("pause", { fields: reason(true), cls: "button-primary" }),
      step("cancel", { fields: reason(false), danger: true, cls: "button-danger" }),
      step("rollback", { fields: reason(false), danger: true, cls: "button-danger" }),
    ],
    paused: [
      step("resume", { cls: "button-primary" }),
      step("cancel", { fields: reason(false), danger: true, cls: "button-danger" }),
      step("rollback", { fields: reason(false), danger: true, cls: "button-danger" }),
    ],
    completed: [step("rollback", { fields: reason(false), danger: true, cls: "button-danger" })],
    cancelled: [step("rollback", { fields: reason(false), danger: true, cls: "button-danger" })],
  };
  return offered[c.state] || [];
}

export async function renderCampaign(root, params, ctx) {
  const id = params.id;
  const render = () =>
    ui.fill(root, async () => {
      const [c, targets, events] = await Promise.all([
        api(`/api/v1/ota/campaigns/${id}`),
        api(`/api/v1/ota/campaigns/${id}/targets`),
        api(`/api/v1/ota/campaigns/${id}/events`),
      ]);
      const buttons = actions(ctx, c, render);
      ctx.setTitle(t("hmc.rollouts.title_of", { name: c.name }));
      return [
        el("p", {}, ui.link("/rollouts", t("hmc.rollouts.back"))),
        el("div", { class: "hmc-state-line" }, stateBadge(c.state)),
        c.paused_reason
          ? el("p", { class: "hmc-paused", role: "status" }, t("hmc.rollouts.paused_because", { reason: c.paused_reason }))
          : null,
        buttons.length ? el("div", { class: "hmc-actions", role: "group", "aria-label": t("hmc.actions") }, ...buttons) : null,
        ui.section(
          "hmc.rollouts.facts",
          ui.facts([
            ["hmc.col.artifact", `${label("artifact_kind", c.kind)} ${c.version}`],
            ["hmc.col.target_name", c.target],
            ["hmc.col.targets", ui.num(c.targets)],
            ["hmc.col.progress", targetStates(c.target_states)],
            ["hmc.col.created", `${ui.when(c.created_at)} (${c.created_by})`],
            ["hmc.col.updated", ui.when(c.updated_at)],
          ]),
        ),
        ui.section("hmc.rollouts.waves", wavesList(c)),
        ui.section("hmc.rollouts.gates", el("p", { class: "muted" }, t("hmc.rollouts.gates_intro")), gates(c)),
        ui.section("hmc.rollouts.targets", targetsTable(targets)),
        ui.section("hmc.rollouts.events", eventsTable(events)),
      ].filter(Boolean);
    });
  await render();
}
