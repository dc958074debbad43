// One hub: its health and the devices its status reports, its life (credentials, place,
// return, quarantine, stock, repair, retire), its wipe and other commands, the
// configurations issued to it and its history.
import { el } from "../../core/dom.js";
import { t, label } from "../../core/i18n.js";
import { api } from "../../core/api.js";
import * as ui from "./ui.js";
import * as life from "./life.js";
import { connectionBadge, batteryText } from "./fleet.js";
import { devicePath, residentIds, residentsById, residentsOf, WIPE_TONE } from "./devices.js";

function deviceCell(d) {
  const name = [d.manufacturer, d.model].filter(Boolean).join(" ") || d.address;
  return d.device_id ? ui.link(devicePath(d.device_id), name) : name;
}

function devicesTable(devices) {
  return ui.table(
    [
      { key: "hmc.col.device", cell: deviceCell },
      { key: "hmc.col.profile", cell: (d) => label("device_profile", d.profile) },
      { key: "hmc.col.address", cell: (d) => d.address },
      { key: "hmc.col.last_seen", cell: (d) => ui.ago(d.last_seen_at) },
      { key: "hmc.col.last_reading", cell: (d) => ui.ago(d.last_reading_at) },
      { key: "hmc.col.battery", cell: (d) => batteryText(d.battery_level), num: true },
      { key: "hmc.col.rssi", cell: (d) => (d.rssi === null ? ui.DASH : `${d.rssi} dBm`), num: true },
      { key: "hmc.col.firmware", cell: (d) => d.firmware },
      { key: "hmc.col.failures", cell: (d) => ui.num(d.consecutive_failures), num: true },
      { key: "hmc.col.last_error", cell: (d) => d.last_error, wide: true },
      { key: "hmc.col.error_readings_30d", cell: (d) => ui.num(d.error_readings_30d), num: true },
    ],
    devices,
    "hmc.hub.no_devices",
  );
}

function commandsTable(commands) {
  return ui.table(
    [
      { key: "hmc.col.requested", cell: (c) => ui.when(c.requested_at) },
      { key: "hmc.col.command", cell: (c) => label("hub_command", c.kind) },
      { key: "hmc.col.device", cell: (c) => (c.device_id ? ui.link(devicePath(c.device_id), c.address || c.device_id) : ui.DASH) },
      { key: "hmc.col.status", cell: (c) => ui.badge("wipe_status", c.status, WIPE_TONE[c.status]) },
      { key: "hmc.col.sent", cell: (c) => (c.published_at ? ui.when(c.published_at) : t("hmc.wipe.not_sent")) },
      { key: "hmc.col.finished", cell: (c) => ui.when(c.finished_at) },
      { key: "hmc.col.reason", cell: (c) => c.reason, wide: true },
      { key: "hmc.col.by", cell: (c) => c.requested_by },
    ],
    commands,
    "hmc.hub.no_commands",
  );
}

function healthHistoryTable(entries) {
  return ui.table(
    [
      { key: "hmc.col.at", cell: (e) => ui.when(e.at) },
      { key: "hmc.col.what", cell: (e) => e.reasons.map((r) => label("health_reason", r)).join(", "), wide: true },
      { key: "hmc.col.address", cell: (e) => e.address },
      { key: "hmc.col.software", cell: (e) => e.snapshot.software_version },
      { key: "hmc.col.outbox", cell: (e) => ui.text(e.snapshot.outbox_depth), num: true },
    ],
    entries,
    "hmc.health.history_empty",
  );
}

function configsTable(configs) {
  return ui.table(
    [
      { key: "hmc.col.version", cell: (c) => ui.num(c.version), num: true },
      { key: "hmc.col.issued", cell: (c) => ui.when(c.issued_at) },
      { key: "hmc.col.by", cell: (c) => c.issued_by },
      {
        key: "hmc.col.devices",
        cell: (c) => ui.num(Array.isArray(c.payload.devices) ? c.payload.devices.length : 0),
        num: true,
      },
    ],
    configs,
    "hmc.hub.no_configs",
  );
}

function credentialsBox(credentials) {
  // Shown once: the API keeps only the hash. The technician copies it to the hub.
  const pass = el("code", { class: "hmc-secret" }, credentials.password);
  return el(
    "div",
    { class: "card hmc-once", role: "alert" },
    el("h2", {}, t("hmc.hub.credentials_once")),
    ui.facts([
      ["hmc.field.username", el("code", {}, credentials.username)],
      ["hmc.field.password", pass],
    ]),
    el("p", { class: "muted" }, t("hmc.hub.credentials_note")),
  );
}

function actions(ctx, hub, rerender, showOnce) {
  const base = `/api/v1/hubs/${encodeURIComponent(hub.id)}`;
  const name = hub.id;
  const vars = { name };
  const buttons = [];
  if (hub.next_states.includes("assigned")) {
    buttons.push(
      ui.button(
        "hmc.action.place",
        async () => {
          let residents;
          try {
            residents = await residentsById();
          } catch (error) {
            ctx.notify("hmc.error.action_failed", { reason: ui.errorText(error) }, "error");
            return;
          }
          const active = [...residents.values()].filter((r) => !r.deactivated_at);
          if (!active.length) {
            ctx.notify("hmc.assign.no_residents", {}, "error");
            return;
          }
          return ui.act(
            ctx,
            {
              titleKey: "hmc.dialog.place.title",
              vars,
              questionKey: "hmc.dialog.place.question",
              fields: [
                { name: "patient_id", key: "hmc.field.resident", type: "select", options: life.residentOptions(active) },
                { name: "from", key: "hmc.field.from", type: "datetime-local", hintKey: "hmc.field.now_hint" },
                { name: "reason", key: "hmc.field.reason", type: "textarea" },
              ],
              confirmKey: "hmc.action.place",
            },
            (v) => [
              `${base}/place`,
              {
                method: "POST",
                body: ui.compact({ patient_id: v.patient_id, from: ui.isoFromLocal(v.from), reason: v.reason }),
              },
            ],
            "hmc.done.placed",
            rerender,
          );
        },
        "button-primary",
      ),
    );
  }
  if (hub.next_states.includes("returned")) {
    buttons.push(life.returnButton(ctx, base, name, "hmc.dialog.return.hub_question", rerender));
  }
  buttons.push(...life.stateButtons(ctx, base, hub, name, rerender));
  if (hub.credentials_issued_at) {
    buttons.push(
      ui.button(
        "hmc.action.revoke_credentials",
        () =>
          ui.act(
            ctx,
            {
              titleKey: "hmc.dialog.revoke.title",
              vars,
              questionKey: "hmc.dialog.revoke.question",
              fields: [{ name: "reason", key: "hmc.field.reason", type: "text" }],
              confirmKey: "hmc.action.revoke_credentials",
              danger: true,
            },
            (v) => [`${base}/credentials`, { method: "DELETE", query: ui.compact({ reason: v.reason }) }],
            "hmc.done.revoked",
            rerender,
          ),
        "button-danger",
      ),
    );
  } else if (hub.state !== "retired") {
    buttons.push(
      ui.button(
        "hmc.action.issue_credentials",
        () =>
          ui.act(
            ctx,
            {
              titleKey: "hmc.dialog.credentials.title",
              vars,
              questionKey: "hmc.dialog.credentials.question",
              confirmKey: "hmc.action.issue_credentials",
            },
            () => [`${base}/credentials`, { method: "POST" }],
            "hmc.done.credentials",
            async (credentials) => {
              await rerender();
              showOnce(credentialsBox(credentials));
            },
          ),
        "button",
      ),
    );
  }
  buttons.push(
    ui.button(
      "hmc.action.wipe_hub",
      () =>
        ui.act(
          ctx,
          {
            titleKey: "hmc.dialog.wipe_hub.title",
            vars,
            questionKey: "hmc.dialog.wipe_hub.question",
            confirmKey: "hmc.action.wipe_hub",
            danger: true,
          },
          () => [`${base}/wipe`, { method: "POST" }],
          "hmc.done.wipe_requested",
          rerender,
        ),
      "button-danger",
    ),
    ui.button(
      "hmc.action.time_zone",
      () =>
        ui.act(
          ctx,
          {
            titleKey: "hmc.dialog.time_zone.title",
            vars,
            questionKey: "hmc.dialog.time_zone.question",
            fields: [
              { name: "time_zone", key: "hmc.field.time_zone", placeholder: "Europe/Stockholm", hintKey: "hmc.field.time_zone_hint" },
            ],
            confirmKey: "hmc.action.save",
          },
          (v) => [`${base}/time-zone`, { method: "PUT", body: { time_zone: v.time_zone || null } }],
          "hmc.done.time_zone",
          rerender,
        ),
      "button",
    ),
  );
  return buttons;
}

export async function renderHub(root, params, ctx) {
  const id = params.id;
  const path = encodeURIComponent(id);
  const once = el("div");
  const render = () =>
    ui.fill(root, async () => {
      const [hub, health, commands, history, healthHistory, configs] = await Promise.all([
        api(`/api/v1/hubs/${path}`),
        api(`/api/v1/fleet/hubs/${path}`),
        api(`/api/v1/hubs/${path}/commands`, { query: { limit: 20 } }),
        api(`/api/v1/hubs/${path}/history`),
        api(`/api/v1/fleet/hubs/${path}/history`, { query: { limit: 50 } }),
        api(`/api/v1/hubs/${path}/configs`, { query: { limit: 10 } }),
      ]);
      const residents = await residentsOf([hub.patient_id, ...residentIds(history)]);
      const h = health.hub;
      ctx.setTitle(t("hmc.hub.title", { id: hub.id }));
      const resident = hub.patient_id ? residents.get(hub.patient_id) : null;
      return [
        el("p", {}, ui.link("/fleet", t("hmc.fleet.back"))),
        el("div", { class: "hmc-state-line" }, connectionBadge(h.state), ui.lifeBadge(hub.state)),
        once,
        el(
          "div",
          { class: "hmc-actions", role: "group", "aria-label": t("hmc.actions") },
          ...actions(ctx, hub, render, (node) => once.replaceChildren(node)),
        ),
        ui.section(
          "hmc.hub.health",
          ui.facts([
            ["hmc.col.connection", el("span", {}, connectionBadge(h.state), " ", ui.ago(h.state_since))],
            ["hmc.col.last_seen", ui.when(h.last_seen_at)],
            ["hmc.col.last_status", ui.when(h.last_status_at)],
            ["hmc.col.software", h.software_version],
            [
              "hmc.col.config",
              t(hub.config_in_force ? "hmc.hub.config_in_force" : "hmc.hub.config_waiting", {
                wanted: hub.config_version_wanted,
                confirmed: ui.text(hub.config_version_confirmed),
              }),
            ],
            ["hmc.col.outbox", ui.num(h.outbox_depth)],
            ["hmc.col.outbox_age", h.outbox_oldest_age_s ? t("hmc.minutes", { n: ui.num(h.outbox_oldest_age_s / 60) }) : ui.DASH],
            ["hmc.col.disk_free", h.disk_free_bytes === null ? ui.DASH : `${ui.num(h.disk_free_bytes / 1e6)} MB`],
            ["hmc.col.alarms", h.alarms.length ? h.alarms.map((a) => label("hub_alarm", a)).join(", ") : ui.DASH],
          ]),
        ),
        ui.section(
          "hmc.hub.life",
          ui.facts([
            ["hmc.col.state", ui.lifeBadge(hub.state)],
            ["hmc.col.serial", hub.serial],
            ["hmc.col.resident", resident ? resident.display_name : hub.patient_id ? t("hmc.resident.unknown") : ui.DASH],
            ["hmc.col.placed_from", ui.when(hub.placed_from)],
            [
              "hmc.col.credentials",
              hub.credentials_issued_at
                ? t("hmc.hub.credentials_live", { at: ui.when(hub.credentials_issued_at), by: hub.credentials_issued_by })
                : t("hmc.hub.credentials_none"),
            ],
            ["hmc.col.allowed_devices", ui.num(hub.devices)],
            ["hmc.col.registered", ui.when(hub.created_at)],
          ]),
        ),
        ui.section("hmc.hub.devices", devicesTable(health.device_health)),
        ui.section("hmc.hub.commands", commandsTable(commands)),
        ui.section("hmc.hub.history", life.historyTable(history, residents)),
        ui.section("hmc.hub.health_history", healthHistoryTable(healthHistory.entries)),
        ui.section("hmc.hub.configs", configsTable(configs)),
      ];
    });
  await render();
}
