// The notice of a new critical alert: a short tone and a blinking tab title until the
// nurse looks at the tab. Can be turned off; the choice is remembered in this browser.

import { t } from "../../core/i18n.js";

const STORAGE_KEY = "hemhub.nurse.criticalNotice";
let titleTimer = null;
let restoreTitle = null;

export function noticeEnabled() {
  return localStorage.getItem(STORAGE_KEY) !== "off";
}

export function setNoticeEnabled(on) {
  localStorage.setItem(STORAGE_KEY, on ? "on" : "off");
  if (!on) stopTitle();
}

function tone() {
  // Generated, not a file: two short beeps (no asset to fetch, nothing to license).
  const Context = window.AudioContext || window.webkitAudioContext;
  if (!Context) return;
  try {
    const ctx = new Context();
    const gain = ctx.createGain();
    gain.gain.value = 0.15;
    gain.connect(ctx.destination);
    [0, 0.3].forEach((start) => {
      const osc = ctx.createOscillator();
      osc.frequency.value = 880;
      osc.connect(gain);
      osc.start(ctx.currentTime + start);
      osc.stop(ctx.currentTime + start + 0.18);
    });
    setTimeout(() => ctx.close(), 1000);
  } catch {
    // A browser that refuses audio before any click still gets the title notice.
  }
}

function stopTitle() {
  if (titleTimer !== null) clearInterval(titleTimer);
  titleTimer = null;
  if (restoreTitle !== null) document.title = restoreTitle;
  restoreTitle = null;
  document.documentElement.dataset.criticalNotice = "";
}

/** Announce a new critical alert (if the notice is on): tone and tab title. */
export function announceCritical(residentName) {
  if (!noticeEnabled()) return;
  tone();
  stopTitle();
  restoreTitle = document.title;
  const notice = t("nurse.notice.title", { name: residentName });
  document.documentElement.dataset.criticalNotice = notice;
  let shown = false;
  document.title = notice;
  titleTimer = setInterval(() => {
    shown = !shown;
    document.title = shown ? restoreTitle : notice;
  }, 1000);
  const seen = () => {
    if (document.visibilityState === "visible" && document.hasFocus()) {
      // Keep it for a moment so a nurse glancing at the tab strip still sees it.
      setTimeout(stopTitle, 5000);
      window.removeEventListener("focus", seen);
      document.removeEventListener("visibilitychange", seen);
    }
  };
  window.addEventListener("focus", seen);
  document.addEventListener("visibilitychange", seen);
  seen();
}

export function cancelNotice() {
  stopTitle();
}
