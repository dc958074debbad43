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

// The alerts on screen, by id; the live stream updates it in place.
let shownAlerts = new Map();

async function loadAlerts() {
  const status = $("alert-status").value;
  const query = status ? `?status=${encodeURIComponent(status)}` : "";
  const alerts = await api(`/api/v1/alerts${query}`);
  shownAlerts = new Map(alerts.map((a) => [a.id, a]));
  renderAlerts();
}

// One alert from the stream: shown if it matches the status filter, else taken away.
function applyAlert(alert) {
  const status = $("alert-status").value;
  if (!status || alert.status === status) shownAlerts.set(alert.id, alert);
  else shownAlerts.delete(alert.id);
  renderAlerts();
}

function renderAlerts() {
  const alerts = [...shownAlerts.values()].sort(
    (x, y) => (x.last_at < y.last_at ? 1 : x.last_at > y.last_at ? -1 : x.id < y.id ? -1 : 1),
  );
  const body = $("alerts");
  body.replaceChildren();
  if (alerts.length === 0) {
    const tr = row(["No alerts."]);
    tr.firstChild.colSpan = 8;
    body.append(tr);
  }
  for (const a of alerts) {
    let action = "";
    if (a.principal !== myTenant) {
      // A resident another principal shares: seen, not acted on (its own nurses do).
      action = el("span", `shared by ${a.principal}`, "muted");
    } else if (a.status === "open") {
      action = el("button", "Acknowledge");
      action.type = "button";
      action.addEventListener("click", () => acknowledge(a.id, action));
    } else if (a.status === "acknowledged") {
      action = el("span", `by ${a.acknowledged_by}`, "muted");
    } else {
      action = el("span", `by ${a.resolved_by}`, "muted");
    }
    const late = a.late ? " (late)" : "";
    // The latest repetition's reason matches the values shown (its reading's); the
    // reason that opened the alert stays at hand on hover.
    const reason = el("span", (a.last_reason || a.reason) + late);
    if (a.last_reason && a.last_reason !== a.reason) reason.title = `opened: ${a.reason}`;
    body.append(row([
      when(a.last_at),
      patientLink(a.patient_id, a.patient_display_name),
      el("span", a.severity, `sev-${a.severity}`),
      reason,
      formatValues(a.values),
      a.count || "–", // 0: a condition (hub, schedule), not readings
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
    if (p.principal !== myTenant) item.append(el("span", ` · shared by ${p.principal}`, "muted"));
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

// --- live alerts: GET /api/v1/alerts/stream (Server-Sent Events) ---------------------------
// Read with fetch, not EventSource: EventSource cannot send the Authorization header, and
// a token in the URL would end up in access logs.

let live = null; // {controller} of the running stream
let patientsTimer = null;

function setLive(text) {
  $("live").textContent = text;
}

function refreshPatientsSoon() {
  // Open-alert counts: at most one roster reload per 5 s, however many events arrive.
  if (patientsTimer) return;
  patientsTimer = setTimeout(() => {
    patientsTimer = null;
    loadPatients().catch((e) => say(e.message));
  }, 5000);
}

function handleEvent(name, data) {
  if (name === "ready" || name === "resync") {
    // Subscribed (or events may have been missed): the list is loaded after this point,
    // so nothing between the two is lost.
    loadAlerts().catch((e) => say(e.message));
    if (name === "resync") refreshPatientsSoon();
    setLive("live");
  } else if (name === "alert") {
    applyAlert(data.alert);
    refreshPatientsSoon();
  } else if (name === "expired") {
    if (live) live.ended = "token expired: sign in again";
  }
}

async function readStream(session) {
  const response = await fetch("/api/v1/alerts/stream", {
    headers: { Authorization: `Bearer ${token()}`, Accept: "text/event-stream" },
    signal: session.controller.signal,
  });
  if (response.status === 401 || response.status === 403) {
    session.ended = `live alerts: ${response.status}`; // retrying cannot help
    return;
  }
  if (!response.ok || !response.body) throw new Error(`live alerts: ${response.status}`);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let name = "message";
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline).replace(/\r$/, "");
      buffer = buffer.slice(newline + 1);
      if (line === "") {
        if (data.length) handleEvent(name, JSON.parse(data.join("\n")));
        name = "message";
        data = [];
      } else if (line.startsWith("event:")) {
        name = line.slice(6).trim();
      } else if (line.startsWith("data:")) {
        data.push(line.slice(5).trim());
      } // ":" comments are heartbeats; "retry:" is ours to decide
    }
  }
}

function stopLive() {
  if (live) live.controller.abort();
  live = null;
  setLive("");
}

async function startLive() {
  stopLive();
  const session = { controller: new AbortController(), ended: null };
  live = session;
  let delay = 1000;
  while (live === session && token()) {
    setLive("connecting…");
    try {
      await readStream(session);
      delay = 1000; // a stream that ended normally (server restart)
    } catch (error) {
      if (session.controller.signal.aborted) return;
      say(error.message);
    }
    if (live !== session) return;
    if (session.ended) {
      setLive(session.ended);
      return;
    }
    setLive("reconnecting…");
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 30000);
  }
}

/** The caller's principal: residents and alerts of another are shared with it. */
let myTenant = null;

async function start() {
  stopLive();
  if (!token()) {
    $("workspace").hidden = true;
    $("who").textContent = "not signed in";
    return;
  }
  try {
    const me = await api("/api/v1/me");
    myTenant = me.tenant;
    const units = me.care_units ? ` · ${me.care_units.length} care unit(s)` : "";
    $("who").textContent = `${me.sub} · ${me.role} · ${me.tenant}${units}`;
    $("workspace").hidden = false;
    await Promise.all([loadAlerts(), loadPatients()]);
    say("");
    startLive();
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
  // Tabs in the background keep their stream: alerts are current when the nurse returns.
  $("refresh").addEventListener("click", () => loadAlerts().catch((e) => say(e.message)));
  start();
});
