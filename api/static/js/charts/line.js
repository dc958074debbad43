// A line chart in SVG, written here (no chart library): one or more series over time,
// the threshold bands behind them (a zone per severity, above and below), and alert
// markers. Accessible: the SVG is an image with a <title> and a <desc> that says what
// it shows in words, and the same data is a table underneath (a <details>).

import { el } from "../core/dom.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 720;
const HEIGHT = 220;
const PAD = { left: 48, right: 12, top: 14, bottom: 28 };
let uid = 0;

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** About `count` round tick values covering [lo, hi]. */
function niceTicks(lo, hi, count = 5) {
  const span = hi - lo || 1;
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(Number(v.toFixed(6)));
  return out;
}

/**
 * lineChart({
 *   id, title, desc, start, end (ISO), unitText,
 *   series: [{key, name, points: [{t, v, lo?, hi?}]}],
 *   bands: [{from, to, above: [{severity, value}], below: [...]}],
 *   markers: [{t, severity, text}],
 *   formatX(date) -> text, formatY(number) -> text, formatTime(iso) -> text,
 *   tableLabels: {summary, time, value, range, count},
 *   bandLabel(side, severity, value) -> text,
 * }) -> <figure>
 */
export function lineChart(options) {
  uid += 1;
  const id = options.id || `chart-${uid}`;
  const start = new Date(options.start).getTime();
  const end = new Date(options.end).getTime();
  const series = options.series.filter((s) => s.points.length);
  const values = series.flatMap((s) => s.points.flatMap((p) => [p.v, p.lo ?? p.v, p.hi ?? p.v]));
  // The y range: the data and the mildest limit on each side (the band that matters first).
  const limits = [];
  for (const b of options.bands || []) {
    if (b.above.length) limits.push(Math.min(...b.above.map((x) => x.value)));
    if (b.below.length) limits.push(Math.max(...b.below.map((x) => x.value)));
  }
  let lo = Math.min(...values, ...limits);
  let hi = Math.max(...values, ...limits);
  if (!Number.isFinite(lo)) {
    lo = 0;
    hi = 1;
  }
  const padY = (hi - lo) * 0.08 || 1;
  lo -= padY;
  hi += padY;
  const x = (time) => PAD.left + ((time - start) / (end - start)) * (WIDTH - PAD.left - PAD.right);
  const y = (v) => PAD.top + (1 - (v - lo) / (hi - lo)) * (HEIGHT - PAD.top - PAD.bottom);
  const clampY = (v) => Math.min(Math.max(v, lo), hi);

  const titleId = `${id}-title`;
  const descId = `${id}-desc`;
  const root = svg(
    "svg",
    {
      viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
      role: "img",
      "aria-labelledby": `${titleId} ${descId}`,
      class: "chart-svg",
      preserveAspectRatio: "xMidYMid meet",
    },
    svg("title", { id: titleId }, options.title),
    svg("desc", { id: descId }, options.desc),
  );

  // Bands: each limit's zone, from it outwards to the next stricter one (or the edge).
  const bandsGroup = svg("g", { class: "chart-bands" });
  for (const b of options.bands || []) {
    const x0 = x(Math.max(start, new Date(b.from).getTime()));
    const x1 = x(Math.min(end, new Date(b.to).getTime()));
    if (x1 <= x0) continue;
    const above = [...b.above].sort((p, q) => p.value - q.value);
    above.forEach((limit, i) => {
      const top = i + 1 < above.length ? above[i + 1].value : hi;
      if (limit.value >= hi) return;
      const y0 = y(clampY(top));
      const y1 = y(clampY(limit.value));
      bandsGroup.append(
        svg(
          "rect",
          { x: x0, y: y0, width: x1 - x0, height: Math.max(0, y1 - y0), class: `band band-${limit.severity}` },
          svg("title", {}, options.bandLabel("above", limit.severity, limit.value)),
        ),
        svg("line", { x1: x0, x2: x1, y1, y2: y1, class: `band-line band-line-${limit.severity}` }),
      );
    });
    const below = [...b.below].sort((p, q) => q.value - p.value);
    below.forEach((limit, i) => {
      const bottom = i + 1 < below.length ? below[i + 1].value : lo;
      if (limit.value <= lo) return;
      const y0 = y(clampY(limit.value));
      const y1 = y(clampY(bottom));
      bandsGroup.append(
        svg(
          "rect",
          { x: x0, y: y0, width: x1 - x0, height: Math.max(0, y1 - y0), class: `band band-${limit.severity}` },
          svg("title", {}, options.bandLabel("below", limit.severity, limit.value)),
        ),
        svg("line", { x1: x0, x2: x1, y1: y0, y2: y0, class: `band-line band-line-${limit.severity}` }),
      );
    });
  }
  root.append(bandsGroup);

  // Axes: y ticks with grid lines, x ticks as dates.
  const axes = svg("g", { class: "chart-axes", "aria-hidden": "true" });
  for (const v of niceTicks(lo, hi)) {
    axes.append(
      svg("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(v), y2: y(v), class: "grid" }),
      svg("text", { x: PAD.left - 6, y: y(v) + 4, class: "tick tick-y" }, options.formatY(v)),
    );
  }
  const xTicks = 6;
  for (let i = 0; i <= xTicks; i += 1) {
    const time = start + ((end - start) * i) / xTicks;
    axes.append(
      svg(
        "text",
        { x: x(time), y: HEIGHT - 8, class: `tick tick-x${i === 0 ? " first" : i === xTicks ? " last" : ""}` },
        options.formatX(new Date(time)),
      ),
    );
  }
  axes.append(
    svg("line", { x1: PAD.left, x2: PAD.left, y1: PAD.top, y2: HEIGHT - PAD.bottom, class: "axis" }),
    svg("line", {
      x1: PAD.left,
      x2: WIDTH - PAD.right,
      y1: HEIGHT - PAD.bottom,
      y2: HEIGHT - PAD.bottom,
      class: "axis",
    }),
  );
  root.append(axes);

  // Markers: a line at each alert's measurement time.
  const markers = svg("g", { class: "chart-markers" });
  for (const m of options.markers || []) {
    const mx = x(new Date(m.t).getTime());
    markers.append(
      svg(
        "g",
        { class: `marker marker-${m.severity}` },
        svg("title", {}, m.text),
        svg("line", { x1: mx, x2: mx, y1: PAD.top, y2: HEIGHT - PAD.bottom }),
        svg("path", { d: `M${mx - 5},${PAD.top - 2} L${mx + 5},${PAD.top - 2} L${mx},${PAD.top + 6} Z` }),
      ),
    );
  }
  root.append(markers);

  // Series: whiskers (bucket min-max) under the line, then the line and the points.
  series.forEach((s, index) => {
    const g = svg("g", { class: `series series-${index} series-${s.key}`, "data-series": s.key });
    for (const p of s.points) {
      if (p.lo !== undefined && p.hi !== undefined && p.hi > p.lo) {
        const px = x(new Date(p.t).getTime());
        g.append(svg("line", { x1: px, x2: px, y1: y(p.lo), y2: y(p.hi), class: "whisker" }));
      }
    }
    const d = s.points
      .map((p, i) => `${i ? "L" : "M"}${x(new Date(p.t).getTime()).toFixed(1)},${y(p.v).toFixed(1)}`)
      .join(" ");
    g.append(svg("path", { d, class: "line" }));
    for (const p of s.points) {
      g.append(
        svg(
          "circle",
          { cx: x(new Date(p.t).getTime()), cy: y(p.v), r: s.points.length > 120 ? 1.6 : 3, class: "point" },
          svg("title", {}, `${options.formatTime(p.t)}: ${s.name} ${options.formatY(p.v)} ${options.unitText}`),
        ),
      );
    }
    root.append(g);
  });

  const legend = el(
    "ul",
    { class: "chart-legend" },
    series.map((s, index) => el("li", { class: `legend-${index}` }, el("span", { class: "swatch", "aria-hidden": "true" }), s.name)),
  );

  const labels = options.tableLabels;
  const downsampled = series.some((s) => s.points.some((p) => p.n !== undefined));
  const rows = [];
  for (const s of series) for (const p of s.points) rows.push({ s, p });
  rows.sort((a, b) => new Date(b.p.t) - new Date(a.p.t));
  const table = el(
    "details",
    { class: "chart-table" },
    el("summary", {}, labels.summary),
    el(
      "div",
      { class: "table-wrap" },
      el(
        "table",
        {},
        el("caption", {}, options.title),
        el(
          "thead",
          {},
          el(
            "tr",
            {},
            el("th", { scope: "col" }, labels.time),
            series.length > 1 ? el("th", { scope: "col" }, labels.series) : null,
            el("th", { scope: "col" }, `${labels.value} (${options.unitText})`),
            downsampled ? el("th", { scope: "col" }, labels.range) : null,
            downsampled ? el("th", { scope: "col" }, labels.count) : null,
            options.extraColumn ? el("th", { scope: "col" }, options.extraColumn.label) : null,
          ),
        ),
        el(
          "tbody",
          {},
          rows.map(({ s, p }) =>
            el(
              "tr",
              {},
              el("td", {}, options.formatTime(p.t)),
              series.length > 1 ? el("td", {}, s.name) : null,
              el("td", {}, options.formatY(p.v)),
              downsampled ? el("td", {}, p.lo === undefined ? "" : `${options.formatY(p.lo)}–${options.formatY(p.hi)}`) : null,
              downsampled ? el("td", {}, p.n === undefined ? "1" : String(p.n)) : null,
              options.extraColumn ? el("td", {}, options.extraColumn.value(p)) : null,
            ),
          ),
        ),
      ),
    ),
  );

  return el(
    "figure",
    { class: "chart", id, dataset: { points: String(rows.length) } },
    el("figcaption", { class: "chart-title" }, options.title),
    el("div", { class: "chart-frame" }, root),
    legend,
    table,
  );
}
