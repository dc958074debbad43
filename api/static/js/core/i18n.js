// Words, dates, numbers and units in the user's language and the principal's time zone.
// Texts live in /static/i18n/<area>.<lang>.json (flat {"key": "text"}); every area's
// file is loaded, so pages use t("nurse.triage.title") without importing anything else.

const AREAS = ["core", "nurse", "hmc"];
export const LANGUAGES = ["sv", "en"];
const STORAGE_KEY = "hemhub.language";
const LOCALES = { sv: "sv-SE", en: "en-GB" };

let current = "sv";
let fallbackLanguage = "sv";
let messages = {};
let timeZone = "Europe/Stockholm";
const listeners = new Set();

/** The language set before: remembered choice, else the server's default (ui-config). */
export function preferredLanguage(serverDefault) {
  if (LANGUAGES.includes(serverDefault)) fallbackLanguage = serverDefault;
  const stored = localStorage.getItem(STORAGE_KEY);
  return LANGUAGES.includes(stored) ? stored : fallbackLanguage;
}

async function loadArea(area, language) {
  const response = await fetch(`/static/i18n/${area}.${language}.json`, { cache: "no-cache" });
  if (response.status === 404) return {}; // an area not installed yet has no texts
  if (!response.ok) throw new Error(`i18n ${area}.${language}: ${response.status}`);
  return response.json();
}

/** Load `language`'s texts (all areas) and make it current; listeners re-render. */
export async function loadLanguage(language) {
  const chosen = LANGUAGES.includes(language) ? language : fallbackLanguage;
  const parts = await Promise.all(AREAS.map((area) => loadArea(area, chosen)));
  messages = Object.assign({}, ...parts);
  current = chosen;
  document.documentElement.lang = chosen;
}

/** Switch language, remember the choice, and tell the listeners (the shell re-renders). */
export async function setLanguage(language) {
  if (!LANGUAGES.includes(language)) throw new Error(`unknown language ${language}`);
  localStorage.setItem(STORAGE_KEY, language);
  await loadLanguage(language);
  for (const fn of listeners) fn(language);
}

/** Call `fn(language)` after every language switch; returns the unsubscribe function. */
export function onLanguage(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function lang() {
  return current;
}

export function locale() {
  return LOCALES[current];
}

/** Whether `key` has a text in the current language. */
export function has(key) {
  return Object.hasOwn(messages, key);
}

/** The text of `key` with `{name}` replaced by vars.name; a missing key shows itself. */
export function t(key, vars = {}) {
  const text = has(key) ? messages[key] : key;
  if (!has(key)) console.warn(`i18n: no text for ${key} in ${current}`);
  return text.replace(/\{(\w+)\}/g, (whole, name) =>
    Object.hasOwn(vars, name) && vars[name] !== null && vars[name] !== undefined
      ? String(vars[name])
      : whole,
  );
}

/** Words for a code: `code.<kind>.<code>`; an unknown code reads as itself, spaced. */
export function label(kind, code) {
  if (code === null || code === undefined || code === "") return "";
  const key = `code.${kind}.${code}`;
  if (has(key)) return messages[key];
  console.warn(`i18n: no words for ${key} in ${current}`);
  return String(code).replaceAll("_", " ");
}

// --- time --------------------------------------------------------------------------------

/** The principal's IANA time zone (from /api/v1/me); an unknown one keeps the default. */
export function setTimeZone(tz) {
  try {
    new Intl.DateTimeFormat("en", { timeZone: tz });
    timeZone = tz;
  } catch {
    console.warn(`unknown time zone ${tz}; keeping ${timeZone}`);
  }
}

export function getTimeZone() {
  return timeZone;
}

function format(iso, options) {
  if (!iso) return "";
  const date = iso instanceof Date ? iso : new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return new Intl.DateTimeFormat(locale(), { timeZone, ...options }).format(date);
}

export function formatDateTime(iso) {
  return format(iso, { dateStyle: "medium", timeStyle: "short" });
}

export function formatDate(iso) {
  return format(iso, { dateStyle: "medium" });
}

export function formatTime(iso) {
  return format(iso, { timeStyle: "short" });
}

const RELATIVE_STEPS = [
  ["year", 365 * 24 * 3600],
  ["month", 30 * 24 * 3600],
  ["week", 7 * 24 * 3600],
  ["day", 24 * 3600],
  ["hour", 3600],
  ["minute", 60],
];

/** "5 minutes ago" / "för 5 minuter sedan" (relative to now). */
export function formatRelative(iso, now = Date.now()) {
  if (!iso) return "";
  const seconds = (new Date(iso).getTime() - now) / 1000;
  if (Number.isNaN(seconds)) return "";
  const rtf = new Intl.RelativeTimeFormat(locale(), { numeric: "auto" });
  for (const [unitName, size] of RELATIVE_STEPS) {
    if (Math.abs(seconds) >= size) return rtf.format(Math.round(seconds / size), unitName);
  }
  return rtf.format(0, "minute");
}

// --- numbers and units -------------------------------------------------------------------

export function formatNumber(n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(Number(n))) return "–";
  return new Intl.NumberFormat(locale(), {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  }).format(Number(n));
}

// UCUM codes as a nurse writes them.
const UNITS = {
  "mm[Hg]": "mmHg",
  "mmol/L": "mmol/L",
  "mg/dL": "mg/dL",
  kg: "kg",
  "[lb_av]": "lb",
  "%": "%",
  "/min": "/min",
  "{beats}/min": "/min",
  "{breaths}/min": "/min",
  Cel: "°C",
  cm: "cm",
  "kg/m2": "kg/m²",
  h: "h",
  min: "min",
  s: "s",
  d: "d",
};

export function unit(ucum) {
  if (!ucum) return "";
  return Object.hasOwn(UNITS, ucum) ? UNITS[ucum] : ucum.replace(/[[\]{}]/g, "");
}
