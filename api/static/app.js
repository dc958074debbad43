// hemhub nurse view: no framework, no build step. All data is inserted with
// textContent (never innerHTML), so values from devices cannot inject markup.
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "hemhub.token"; // sessionStorage: gone when the tab closes

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function say(text) {
  $("message").textContent = text || "";
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { Authorization: `Bearer ${token()}`, Accept: "application/json" },
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    throw new Error(`${response.status}: ${detail || response.statusText}`);
  }
  return body;
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

function formatValues(values) {
  if (!values) return "–";
  return values
    .map((q) => `${q.name.replaceAll("_", " ")} ${q.value === null ? "n/a" : q.value} ${q.unit}`)
    .join(", ");
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    if (cell instanceof Node) td.append(cell);
    else td.textContent = cell ?? "";
    tr.append(td);
  }
  return tr;
}

function patientLink(id, name) {
  const button = el("button", name, "link");
  button.type = "button";
  button.addEventListener("click", () => showObservations(id, name));
  return button;
}

async function loadAlerts() {
  const status = $("alert-status").value;
  const query = status ? `?status=${encodeURIComponent(status)}` : "";
  const alerts = await api(`/api/v1/alerts${query}`);
  const body = $("alerts");
  body.replaceChildren();
  if (alerts.length === 0) {
    const tr = row(["No alerts."]);
    tr.firstChild.colSpan = 8;
    body.append(tr);
  }
  for (const a of alerts) {
    let action = "";
    if (a.status === "open") {
      action = el("button", "Acknowledge");
      action.type = "button";
      action.addEventListener("click", () => acknowledge(a.id, action));
    } else if (a.status === "acknowledged") {
      action = el("span", `by ${a.acknowledged_by}`, "muted");
    } else {
      action = el("span", `by ${a.resolved_by}`, "muted");
    }
    const late = a.late ? " (late)" : "";
    body.append(row([
      when(a.last_at),
      patientLink(a.patient_id, a.patient_display_name),
      el("span", a.severity, `sev-${a.severity}`),
      a.reason + late,
      formatValues(a.values),
      a.count,
      a.status,
      action,
    ]));
  }
}

async function acknowledge(id, button) {
  button.disabled = true;
  try {
    await api(`/api/v1/alerts/${encodeURIComponent(id)}/ack`, { method: "POST" });
    say("");
    await Promise.all([loadAlerts(), loadPatients()]);
  } catch (error) {
    button.disabled = false;
    say(error.message);
  }
}

async function loadPatients() {
  const patients = await api("/api/v1/patients");
  const list = $("patients");
  list.replaceChildren();
  for (const p of patients) {
    const item = el("li");
    item.append(patientLink(p.id, p.display_name), el("span", ` ${p.programme}`, "muted"));
    if (p.open_alerts > 0) item.append(el("span", p.open_alerts, "badge"));
    list.append(item);
  }
}

async function showObservations(id, name) {
  try {
    const observations = await api(`/api/v1/patients/${encodeURIComponent(id)}/observations`);
    $("obs-patient").textContent = name;
    const body = $("observations");
    body.replaceChildren();
    for (const o of observations) {
      const device = [o.device.model, o.device.serial || o.device.address]
        .filter(Boolean).join(" ");
      const clock = o.clock.source + (o.clock.hub_clock_synced ? "" : " (hub clock unsynced)");
      body.append(row([
        when(o.measured_at),
        o.measurement_type.replaceAll("_", " "),
        formatValues(o.values),
        o.status.join(", "),
        device,
        clock,
        o.late ? "yes" : "",
      ]));
    }
    $("observations-section").hidden = false;
    $("observations-section").scrollIntoView({ behavior: "smooth" });
    say(observations.length ? "" : `No observations for ${name}.`);
  } catch (error) {
    say(error.message);
  }
}

async function start() {
  if (!token()) {
    $("workspace").hidden = true;
    $("who").textContent = "not signed in";
    return;
  }
  try {
    const me = await api("/api/v1/me");
    $("who").textContent = `${me.sub} · ${me.role} · ${me.tenant}`;
    $("workspace").hidden = false;
    await Promise.all([loadAlerts(), loadPatients()]);
    say("");
  } catch (error) {
    $("workspace").hidden = true;
    say(error.message);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    start();
  });
  $("signout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    say("");
    start();
  });
  $("alert-status").addEventListener("change", () => loadAlerts().catch((e) => say(e.message)));
  $("refresh").addEventListener("click", () => loadAlerts().catch((e) => say(e.message)));
  start();
});
