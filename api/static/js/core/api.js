// Calls to the hemhub API: JSON in and out, the bearer token added, failures as ApiError
// with a message already in the user's language.

import { accessToken, sessionExpired } from "./auth.js";
import { t } from "./i18n.js";

const MESSAGE_KEYS = {
  0: "core.error.network",
  400: "core.error.invalid",
  401: "core.error.unauthorized",
  403: "core.error.forbidden",
  404: "core.error.notFound",
  409: "core.error.conflict",
  413: "core.error.tooLarge",
  422: "core.error.invalid",
  503: "core.error.unavailable",
};

export class ApiError extends Error {
  constructor(status, detail) {
    const key = MESSAGE_KEYS[status] || (status >= 500 ? "core.error.server" : "core.error.invalid");
    super(t(key, { detail: detail || "", status }));
    this.name = "ApiError";
    this.status = status; // 0: no answer (network, server down, offline)
    this.detail = detail;
    this.key = key;
  }
}

/** The `detail` of a FastAPI error body as one line (422s carry a list). */
function detailText(body) {
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail) && detail.length) {
    const first = detail[0];
    const where = Array.isArray(first.loc) ? first.loc.slice(1).join(".") : "";
    return where ? `${where}: ${first.msg}` : String(first.msg);
  }
  return "";
}

function withQuery(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value === null || value === undefined || value === "") continue;
    if (Array.isArray(value)) value.forEach((v) => params.append(name, String(v)));
    else params.append(name, String(value));
  }
  const text = params.toString();
  return text ? `${path}${path.includes("?") ? "&" : "?"}${text}` : path;
}

/**
 * api("/api/v1/alerts", {query: {status: "open"}}) -> parsed JSON (null for 204).
 * Throws ApiError; a 401 also sends the user to sign in again (the page is kept).
 */
export async function api(path, { method = "GET", body, query, signal } = {}) {
  const headers = { Accept: "application/json" };
  const token = accessToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(withQuery(path, query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, ""); // never the browser's "Failed to fetch"
  }
  if (response.status === 204) return null;
  const parsed = await response.json().catch(() => null);
  if (!response.ok) {
    if (response.status === 401 && token) sessionExpired();
    throw new ApiError(response.status, detailText(parsed));
  }
  return parsed;
}
