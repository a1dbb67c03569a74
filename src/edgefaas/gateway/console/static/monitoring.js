// Monitoring: live plots from the site's Prometheus, through the gateway's /system/plots (a fixed
// query per panel; the page never sends PromQL). Each panel is a small SVG line chart, a line per
// function or device, redrawn every 15 s while the page is open.

import { admin } from "./api.js";
import { $, el, escapeXml, poll } from "./ui.js";

const REFRESH_MS = 15000;
const MINUTES = 30;
const COLOURS = ["#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0550ae", "#57606a"];

function format(value, unit) {
  if (!Number.isFinite(value)) return "-";
  if (unit === "s") return value < 1 ? `${(value * 1000).toFixed(0)} ms` : `${value.toFixed(2)} s`;
  if (unit === "%") return `${value.toFixed(0)} %`;
  return value >= 10 ? value.toFixed(0) : value.toFixed(2);
}

/** An SVG line chart of `plot.series` (points: [unix seconds, value]) over plot.start..plot.end. */
export function lineChart(plot) {
  const width = 440;
  const height = 180;
  const pad = { left: 52, right: 8, top: 10, bottom: 22 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const values = plot.series.flatMap((s) => s.points.map((p) => p[1]));
  const top = Math.max(plot.unit === "%" ? 100 : 0, ...values, 1e-9);
  const x = (t) => pad.left + ((t - plot.start) / Math.max(1, plot.end - plot.start)) * plotW;
  const y = (v) => pad.top + plotH - (v / top) * plotH;
  const parts = [];
  for (const tick of [0, top / 2, top]) {
    parts.push(`<line x1="${pad.left}" x2="${width - pad.right}" y1="${y(tick)}" y2="${y(tick)}" stroke="#e4e7ec"/>`,
      `<text x="${pad.left - 4}" y="${y(tick) + 4}" text-anchor="end" font-size="10" fill="#667085">${escapeXml(format(tick, plot.unit))}</text>`);
  }
  plot.series.forEach((series, i) => {
    if (!series.points.length) return;
    const path = series.points.map(([t, v], j) => `${j ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join("");
    parts.push(`<path data-test="plot-line" data-name="${escapeXml(series.name)}" d="${path}" fill="none"
      stroke="${COLOURS[i % COLOURS.length]}" stroke-width="1.5"><title>${escapeXml(series.name)}</title></path>`);
  });
  const label = (t) => new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  parts.push(`<text x="${pad.left}" y="${height - 6}" font-size="10" fill="#667085">${escapeXml(label(plot.start))}</text>`,
    `<text x="${width - pad.right}" y="${height - 6}" text-anchor="end" font-size="10" fill="#667085">${escapeXml(label(plot.end))}</text>`);
  return `<svg viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeXml(plot.title)}">${parts.join("")}</svg>`;
}

function legend(plot) {
  return el("ul", { class: "legend" }, plot.series.map((s, i) => {
    const last = s.points.length ? s.points[s.points.length - 1][1] : NaN;
    return el("li", { "data-test": "plot-legend", "data-name": s.name },
      el("span", { class: "swatch", style: `background:${COLOURS[i % COLOURS.length]}` }), `${s.name}: ${format(last, plot.unit)}`);
  }));
}

export function create(section) {
  const grid = $("#plots", section);
  const message = $("#plots-message", section);
  let panels = null;
  let stop = null;

  async function refresh() {
    panels ??= (await admin("/system/plots")).panels;
    const plots = await Promise.all(panels.map(async (p) => {
      try { return await admin(`/system/plots/${encodeURIComponent(p.panel)}?minutes=${MINUTES}`); }
      catch (error) { return { ...p, error: error.message }; }
    }));
    const failed = plots.find((p) => p.error);
    message.textContent = failed ? failed.error.replace(/^\d+: /, "") : "";
    message.hidden = !failed;
    grid.replaceChildren(...plots.filter((p) => !p.error).map((plot) => {
      const box = el("figure", { class: "plot", "data-test": "plot", "data-panel": plot.panel,
        "data-series": String(plot.series.length) });
      box.append(el("figcaption", {}, `${plot.title} (${plot.unit})`));
      const chart = el("div", { class: "chart" });
      chart.innerHTML = lineChart(plot);
      box.append(chart, plot.series.length ? legend(plot) : el("p", { class: "muted small" }, "no data yet"));
      return box;
    }));
    section.dataset.loaded = failed ? "error" : "plots";
  }

  return {
    enter() { stop ??= poll(refresh, REFRESH_MS); },
    leave() { stop?.(); stop = null; },
  };
}
