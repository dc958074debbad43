// The live connection: the alert stream (Server-Sent Events read with fetch, since
// EventSource cannot send the Authorization header and a token in a URL ends up in logs)
// for nurses and admins, a health check for other roles. It tells subscribers:
//   "status": "live" | "stale" | "offline"   (the shell shows it)
//   "alert":  {event, alert}                   (an alert opened, changed or resolved)
//   "resync": {reason}                         (events may have been missed: reload)
// Reconnects with backoff; after a gap it sends "resync" so pages catch up.

import { accessToken, sessionExpired } from "./auth.js";

const STREAM_URL = "/api/v1/alerts/stream";
const STREAM_ROLES = new Set(["nurse", "admin"]);
//: The server sends a heartbeat every 15 s: silence for longer means the link is stale.
const SILENCE_MS = 35000;
const HEALTH_EVERY_MS = 5000;
const BACKOFF_START_MS = 1000;
const BACKOFF_MAX_MS = 10000;

const listeners = { status: new Set(), alert: new Set(), resync: new Set() };
let status = null; // null until the first answer: "connecting"
let session = null; // {controller, stopped}

/** Subscribe to "status", "alert" or "resync"; returns the unsubscribe function. */
export function onLive(type, fn) {
  if (!listeners[type]) throw new Error(`unknown live event type ${type}`);
  listeners[type].add(fn);
  return () => listeners[type].delete(fn);
}

export function liveStatus() {
  return status;
}

function emit(type, data) {
  for (const fn of [...listeners[type]]) {
    try {
      fn(data);
    } catch (error) {
      console.error(error);
    }
  }
}

function setStatus(next) {
  const shown = navigator.onLine === false ? "offline" : next;
  if (shown === status) return;
  status = shown;
  emit("status", shown);
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** One stream until it ends; resolves "ended" (retry), "denied" (do not) or throws. */
async function readStream(current, onReady) {
  const controller = new AbortController();
  current.controller.signal.addEventListener("abort", () => controller.abort());
  let silence = setTimeout(() => controller.abort(), SILENCE_MS);
  const heard = () => {
    clearTimeout(silence);
    silence = setTimeout(() => controller.abort(), SILENCE_MS);
  };
  try {
    const response = await fetch(STREAM_URL, {
      headers: { Authorization: `Bearer ${accessToken()}`, Accept: "text/event-stream" },
      signal: controller.signal,
      cache: "no-store",
    });
    if (response.status === 401) {
      sessionExpired();
      return "denied";
    }
    if (response.status === 403) return "denied";
    if (!response.ok || !response.body) return "ended";
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let name = "message";
    let data = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return "ended";
      heard();
      buffer += value;
      let newline;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline).replace(/\r$/, "");
        buffer = buffer.slice(newline + 1);
        if (line === "") {
          if (data.length) {
            const payload = JSON.parse(data.join("\n"));
            if (name === "ready") onReady();
            else if (name === "alert") emit("alert", payload);
            else if (name === "resync") emit("resync", payload);
            else if (name === "expired") {
              sessionExpired();
              return "denied";
            } else if (name === "error") return "ended";
          }
          name = "message";
          data = [];
        } else if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trim());
      }
    }
  } finally {
    clearTimeout(silence);
  }
}

async function streamLoop(current) {
  let backoff = BACKOFF_START_MS;
  let connectedBefore = false;
  while (!current.stopped && accessToken()) {
    let outcome;
    try {
      outcome = await readStream(current, () => {
        setStatus("live");
        backoff = BACKOFF_START_MS;
        // The stream is subscribed before "ready": a page reloading now misses nothing.
        emit("resync", { reason: connectedBefore ? "reconnected" : "connected" });
        connectedBefore = true;
      });
    } catch {
      outcome = "ended"; // the server went away, the network dropped, or silence
    }
    if (current.stopped) return;
    if (outcome === "denied") {
      await healthLoop(current); // not a stream role after all: keep the indicator honest
      return;
    }
    setStatus("stale");
    await sleep(backoff, current.controller.signal);
    backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
  }
}

async function healthLoop(current) {
  let reachedBefore = false;
  while (!current.stopped) {
    let ok = false;
    try {
      const response = await fetch("/healthz", { cache: "no-store", signal: current.controller.signal });
      ok = response.ok;
    } catch {
      ok = false;
    }
    if (current.stopped) return;
    if (ok && !reachedBefore) reachedBefore = true;
    else if (ok && status !== "live") emit("resync", { reason: "reconnected" });
    setStatus(ok ? "live" : "stale");
    await sleep(HEALTH_EVERY_MS, current.controller.signal);
  }
}

function onOnline() {
  if (!session) return;
  // Back online: try now rather than at the end of a backoff.
  const role = session.role;
  startLive({ role });
}

function onOffline() {
  setStatus("offline");
}

/** Start (or restart) the live connection for `user` (from auth.user()). */
export function startLive(user) {
  stopLive();
  const current = { controller: new AbortController(), stopped: false, role: user.role };
  session = current;
  window.addEventListener("online", onOnline);
  window.addEventListener("offline", onOffline);
  if (navigator.onLine === false) setStatus("offline");
  if (STREAM_ROLES.has(user.role)) streamLoop(current);
  else healthLoop(current);
}

export function stopLive() {
  window.removeEventListener("online", onOnline);
  window.removeEventListener("offline", onOffline);
  if (session) {
    session.stopped = true;
    session.controller.abort();
  }
  session = null;
  status = null;
}
