// Hash routes ("#/alerts/42"): patterns with ":name" parts, matched in registration order.

/** The current route's path ("/alerts/42"); "" when the hash names none. */
export function currentPath() {
  const hash = location.hash.replace(/^#/, "");
  return hash.startsWith("/") ? hash.split("?")[0] : "";
}

/** The query part of the hash ("#/triage?unit=3" -> URLSearchParams unit=3). */
export function currentQuery() {
  const hash = location.hash.replace(/^#/, "");
  const at = hash.indexOf("?");
  return new URLSearchParams(at >= 0 ? hash.slice(at + 1) : "");
}

/** {page, params} of the first page whose pattern matches `path`, else null. */
export function matchRoute(pages, path) {
  const parts = path.split("/").filter(Boolean);
  for (const page of pages) {
    const pattern = page.path.split("/").filter(Boolean);
    if (pattern.length !== parts.length) continue;
    const params = {};
    let ok = true;
    for (let i = 0; i < pattern.length; i += 1) {
      if (pattern[i].startsWith(":")) {
        try {
          params[pattern[i].slice(1)] = decodeURIComponent(parts[i]);
        } catch {
          ok = false;
        }
      } else if (pattern[i] !== parts[i]) ok = false;
      if (!ok) break;
    }
    if (ok) return { page, params };
  }
  return null;
}

/** Go to `path` (pushes a history entry; the shell renders on hashchange). */
export function navigate(path) {
  const target = `#${path.startsWith("/") ? path : `/${path}`}`;
  if (location.hash === target) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else location.hash = target;
}
