// A month-style calendar of medication doses: one cell per day (weeks from Monday),
// each with the doses due, taken, late and missed, coloured by the worst of them. A
// real <table> (days are cells, weeks are rows), so it reads as one without a picture.

import { el } from "../core/dom.js";

/** The worst outcome of a day: "missed" > "late" > "taken" > "none" (nothing due). */
export function dayState(day) {
  if (day.missed > 0) return "missed";
  if (day.late > 0) return "late";
  if (day.taken > 0 || day.due > 0) return day.taken >= day.due ? "taken" : "partial";
  return "none";
}

/**
 * calendar({days: [{date, due, taken, late, missed}], weekdays: ["mån", ...] (Monday first),
 *           caption, dayLabel(day) -> full words for the cell, dayNumber(date) -> "12"})
 */
export function adherenceCalendar({ days, weekdays, caption, dayLabel, dayNumber }) {
  const weeks = [];
  let week = [];
  if (days.length) {
    const first = new Date(`${days[0].date}T12:00:00Z`);
    const offset = (first.getUTCDay() + 6) % 7; // Monday = 0
    for (let i = 0; i < offset; i += 1) week.push(null);
  }
  for (const day of days) {
    week.push(day);
    if (week.length === 7) {
      weeks.push(week);
      week = [];
    }
  }
  if (week.length) {
    while (week.length < 7) week.push(null);
    weeks.push(week);
  }
  return el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      { class: "calendar" },
      el("caption", {}, caption),
      el("thead", {}, el("tr", {}, weekdays.map((d) => el("th", { scope: "col" }, d)))),
      el(
        "tbody",
        {},
        weeks.map((w) =>
          el(
            "tr",
            {},
            w.map((day) =>
              day === null
                ? el("td", { class: "calendar-blank" })
                : el(
                    "td",
                    {
                      class: `calendar-day day-${dayState(day)}`,
                      title: dayLabel(day),
                      dataset: { date: day.date, state: dayState(day) },
                    },
                    el("span", { class: "calendar-date", "aria-hidden": "true" }, dayNumber(day.date)),
                    el("span", { class: "calendar-text" }, dayLabel(day)),
                  ),
            ),
          ),
        ),
      ),
    ),
  );
}
