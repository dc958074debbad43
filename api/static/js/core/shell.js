// The application shell: sign-in screen, header (navigation for the user's role,
// language switch, live indicator, who is signed in), message area, and the page.

import { api, ApiError } from "./api.js";
import {
  completeSignIn,
  loadConfig,
  onExpired,
  SignInError,
  signIn,
  signOut,
  user,
} from "./auth.js";
import { clear, el } from "./dom.js";
import {
  LANGUAGES,
  lang,
  loadLanguage,
  onLanguage,
  preferredLanguage,
  setLanguage,
  setTimeZone,
  t,
} from "./i18n.js";
import { liveStatus, onLive, startLive, stopLive } from "./live.js";
import { currentPath, matchRoute, navigate } from "./router.js";

const PAGE_AREAS = ["/static/js/pages/nurse/index.js", "/static/js/pages/hmc/index.js"];

const root = () => document.getElementById("app");
let pages = [];
let me = null;
let current = null; // {page, params, cleanup, path}
let expiryTimer = null;
let rendered = false; // a page has been shown since this load

async function loadPages() {
  const loaded = await Promise.all(
    PAGE_AREAS.map((url) =>
      import(url).then(
        (m) => m.pages || [],
        (error) => {
          console.error(`pages ${url}:`, error);
          return [];
        },
      ),
    ),
  );
  return loaded.flat();
}

function pagesFor(role) {
  return pages.filter((p) => p.roles.includes(role));
}

// --- messages ----------------------------------------------------------------------------

/** Show a message: `level` "info" | "success" (polite) or "warning" | "error" (assertive). */
function notify(textKey, vars = {}, level = "info") {
  const urgent = level === "error" || level === "warning";
  const area = document.getElementById(urgent ? "messages-alert" : "messages-status");
  if (!area) return;
  const item = el(
    "p",
    { class: `message message-${level}`, dataset: { key: textKey, level } },
    el("span", {}, t(textKey, vars)),
    el(
      "button",
      {
        type: "button",
        class: "message-close",
        "aria-label": t("core.message.close"),
        onclick: () => item.remove(),
      },
      "×",
    ),
  );
  area.append(item);
  if (!urgent) setTimeout(() => item.remove(), 8000);
}

/** An error from api() (or anything else) as a message in the user's language. */
function fail(error) {
  if (error instanceof ApiError) notify(error.key, { detail: error.detail || "" }, "error");
  else {
    console.error(error);
    notify("core.error.unexpected", {}, "error");
  }
}

function clearMessages(levels = ["error", "warning", "info", "success"]) {
  for (const item of document.querySelectorAll(".message")) {
    if (levels.includes(item.dataset.level)) item.remove();
  }
}

// --- the header --------------------------------------------------------------------------

function languageSwitch() {
  return el(
    "div",
    { class: "language-switch", role: "group", "aria-label": t("core.language.label") },
    LANGUAGES.map((code) =>
      el(
        "button",
        {
          type: "button",
          class: "button-quiet",
          lang: code,
          dataset: { lang: code },
          "aria-pressed": code === lang() ? "true" : "false",
          onclick: () => setLanguage(code).catch(fail),
        },
        t(`core.language.${code}`),
      ),
    ),
  );
}

function liveIndicator() {
  const state = liveStatus() || "connecting";
  return el(
    "span",
    {
      id: "live-status",
      class: `live live-${state}`,
      role: "status",
      dataset: { liveStatus: state },
      title: t(`core.live.${state}.hint`),
    },
    el("span", { class: "live-dot", "aria-hidden": "true" }),
    t(`core.live.${state}`),
  );
}

function renderLive() {
  const old = document.getElementById("live-status");
  if (old) old.replaceWith(liveIndicator());
}

function header(u) {
  const nav = pagesFor(u.role).filter((p) => p.nav);
  return el(
    "header",
    { class: "shell-header" },
    el("a", { class: "brand", href: "#/" }, "hemhub"),
    el(
      "nav",
      { "aria-label": t("core.nav.label") },
      el(
        "ul",
        {},
        nav.map((p) =>
          el("li", {}, el("a", { href: `#${p.path}`, dataset: { path: p.path } }, t(p.titleKey))),
        ),
      ),
    ),
    el(
      "div",
      { class: "shell-tools" },
      liveIndicator(),
      languageSwitch(),
      el(
        "span",
        { class: "who", dataset: { role: u.role } },
        el("span", { class: "who-name" }, u.name),
        el("span", { class: "who-role" }, t(`core.role.${u.role}`)),
      ),
      el(
        "button",
        { type: "button", class: "button-quiet", id: "sign-out", onclick: () => signOut() },
        t("core.signout"),
      ),
    ),
  );
}

function markCurrentNav() {
  for (const link of document.querySelectorAll("nav a[data-path]")) {
    if (current && link.dataset.path === current.page.path) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

// --- pages -------------------------------------------------------------------------------

function homePath(role) {
  const first = pagesFor(role).find((p) => p.nav);
  return first ? first.path : null;
}

async function renderPage() {
  const u = user();
  const main = document.getElementById("page");
  if (!u || !main) return;
  if (current && current.cleanup) {
    try {
      current.cleanup();
    } catch (error) {
      console.error(error);
    }
  }
  current = null;
  const path = currentPath();
  const match = path ? matchRoute(pagesFor(u.role), path) : null;
  if (!match) {
    const home = homePath(u.role);
    if (home && path !== home) {
      navigate(home);
      return;
    }
    clear(main).append(
      el("h1", { id: "page-title", tabindex: "-1" }, "hemhub"),
      el("p", { class: "empty" }, t("core.page.none")),
    );
    document.title = "hemhub";
    return;
  }
  const { page, params } = match;
  current = { page, params, cleanup: null, path };
  clearMessages(["info", "success"]);
  const title = el("h1", { id: "page-title", tabindex: "-1" }, t(page.titleKey));
  const body = el("div", { class: "page-body" });
  clear(main).append(title, body);
  document.title = `${t(page.titleKey)} – hemhub`;
  markCurrentNav();
  const ctx = {
    user: u,
    me,
    notify,
    fail,
    navigate,
    setTitle: (text) => {
      title.textContent = text;
      document.title = `${text} – hemhub`;
    },
  };
  const mine = current;
  try {
    const cleanup = await page.render(body, params, ctx);
    if (current === mine) mine.cleanup = typeof cleanup === "function" ? cleanup : null;
    else if (typeof cleanup === "function") cleanup(); // navigated away while rendering
  } catch (error) {
    fail(error);
  }
  // After navigating, focus goes to the new page's heading (screen readers read it, Tab
  // continues in the page); on the first page of a load it stays at the document's start,
  // so that the first Tab reaches the skip link.
  if (rendered && (document.activeElement === document.body || !document.activeElement)) {
    title.focus();
  }
  rendered = true;
}

function renderSignedIn(u) {
  const app = clear(root());
  app.append(
    el("a", { class: "skip-link", href: "#page" }, t("core.skip")),
    header(u),
    el(
      "div",
      { class: "messages" },
      el("div", { id: "messages-alert", role: "alert" }),
      el("div", { id: "messages-status", role: "status", "aria-live": "polite" }),
    ),
    el("main", { id: "page", tabindex: "-1" }),
  );
  const skip = app.querySelector(".skip-link");
  skip.addEventListener("click", (event) => {
    event.preventDefault(); // "#page" is not a route
    document.getElementById("page").focus();
  });
}

// --- sign-in -----------------------------------------------------------------------------

function renderSignIn(reasonKey = null, detail = "") {
  stopLive();
  const app = clear(root());
  const button = el(
    "button",
    {
      type: "button",
      class: "button-primary",
      id: "sign-in",
      onclick: async () => {
        button.disabled = true;
        try {
          await signIn();
        } catch (error) {
          button.disabled = false;
          const key = error instanceof SignInError ? error.key : "core.signin.error.provider";
          renderSignIn(key, error.detail || "");
        }
      },
    },
    t("core.signin.button"),
  );
  app.append(
    el(
      "main",
      { id: "page", class: "signin" },
      el(
        "div",
        { class: "card signin-card" },
        el("h1", {}, "hemhub"),
        el("p", {}, t("core.signin.intro")),
        reasonKey
          ? el(
              "p",
              { class: "message message-warning", role: "alert", dataset: { key: reasonKey } },
              t(reasonKey, { detail }),
            )
          : null,
        button,
        languageSwitch(),
      ),
    ),
  );
  document.title = `${t("core.signin.title")} – hemhub`;
}

function watchExpiry(u) {
  clearTimeout(expiryTimer);
  if (!u.expiresAt) return;
  // setTimeout takes at most 2^31-1 ms; a longer session is checked again then.
  const wait = Math.min(u.expiresAt.getTime() - Date.now(), 2 ** 31 - 1);
  expiryTimer = setTimeout(() => {
    if (!user()) renderSignIn("core.signin.expired");
    else watchExpiry(user());
  }, Math.max(wait, 0));
}

async function showSignedIn() {
  const u = user();
  if (!u) {
    renderSignIn();
    return;
  }
  try {
    me = await api("/api/v1/me");
  } catch (error) {
    if (!user()) return; // 401: the expiry handler shows sign-in
    me = null;
    renderSignedIn(u);
    fail(error);
    return;
  }
  setTimeZone(me.time_zone || "Europe/Stockholm");
  renderSignedIn(u);
  watchExpiry(u);
  startLive(u);
  await renderPage();
}

// --- start -------------------------------------------------------------------------------

export async function startApp() {
  let config;
  try {
    config = await loadConfig();
  } catch {
    config = {};
  }
  await loadLanguage(preferredLanguage(config.default_language));
  onLanguage(() => {
    const u = user();
    if (!u) renderSignIn();
    else {
      renderSignedIn(u);
      renderPage();
    }
  });
  onLive("status", (state) => {
    renderLive();
    if (state === "live") clearMessages(["error"]); // recovered: no stale failures left
  });
  onExpired(() => renderSignIn("core.signin.expired"));
  window.addEventListener("hashchange", () => {
    if (user()) renderPage();
  });
  try {
    const returnTo = await completeSignIn();
    if (returnTo !== null && returnTo && returnTo !== location.hash) location.hash = returnTo;
  } catch (error) {
    renderSignIn(error instanceof SignInError ? error.key : "core.signin.error.token", error.detail || "");
    return;
  }
  pages = await loadPages();
  await showSignedIn();
}
