// Billing: per license, each function's calls, duration and amount, and calls per minute over
// the last 30 minutes as a small SVG chart built from the per-call ledger (detail=calls).

import { admin } from "./api.js";
import { $, el, escapeXml, poll } from "./ui.js";

const REFRESH_MS = 3000;
const MINUTES = 30;

/** Calls per minute for the `minutes` minutes up to `now` (ms): [{t, calls}], oldest first. */
export function perMinute(calls, now = Date.now(), minutes = MINUTES) {
  const end = Math.floor(now / 60000);
  const buckets = Array.from({ length: minutes }, (_, i) => ({ t: (end - minutes + 1 + i) * 60000, calls: 0 }));
  for (const call of calls) {
    const at = Date.parse(call.started_at);
    if (Number.isNaN(at)) continue;
    const index = Math.floor(at / 60000) - (end - minutes + 1);
    if (index >= 0 && index < minutes) buckets[index].calls += 1;
  }
  return buckets;
}

export function chart(buckets) {
  const width = 900;
  const height = 220;
  const pad = { left: 44, right: 10, top: 12, bottom: 28 };
  const top = Math.max(1, ...buckets.map((b) => b.calls));
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const barW = plotW / buckets.length;
  const y = (v) => pad.top + plotH - (v / top) * plotH;
  const parts = [];
  for (const tick of [0, Math.ceil(top / 2), top]) {
    parts.push(`<line x1="${pad.left}" x2="${width - pad.right}" y1="${y(tick)}" y2="${y(tick)}" stroke="#e4e7ec"/>`,
      `<text x="${pad.left - 6}" y="${y(tick) + 4}" text-anchor="end" font-size="11" fill="#667085">${tick}</text>`);
  }
  buckets.forEach((b, i) => {
    const x = pad.left + i * barW;
    const label = new Date(b.t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    parts.push(`<rect data-test="billing-bar" data-calls="${b.calls}" x="${x + 1}" y="${y(b.calls)}" width="${Math.max(1, barW - 2)}"
      height="${pad.top + plotH - y(b.calls)}" fill="#1f6feb"><title>${escapeXml(label)}: ${b.calls} calls</title></rect>`);
    if (i % 5 === 0 || i === buckets.length - 1) {
      parts.push(`<text x="${x + barW / 2}" y="${height - 8}" text-anchor="middle" font-size="11" fill="#667085">${escapeXml(label)}</text>`);
    }
  });
  return `<svg viewBox="0 0 ${width} ${height}" role="img" aria-label="calls per minute">${parts.join("")}</svg>`;
}

export function create(section) {
  const select = $("#billing-license", section);
  const body = $("#billing-body", section);
  const plot = $("#billing-chart", section);
  let stop = null;
  let listed = false;

  async function listLicenses() {
    const licenses = await admin("/system/licenses");
    const keep = select.value;
    licenses.sort((a, b) => Number(a.revoked) - Number(b.revoked) || b.created_at.localeCompare(a.created_at));
    select.replaceChildren(...licenses.map((l) => el("option", { value: l.id, "data-test": "billing-option" },
      `${l.name} (${l.plan})${l.revoked ? " - revoked" : ""} · ${l.id}`)),
    el("option", { value: "public", "data-test": "billing-option" }, "public functions (no license)"));
    if (keep && [...select.options].some((o) => o.value === keep)) select.value = keep;
    listed = true;
  }

  async function refresh() {
    if (!listed) await listLicenses();
    const license = select.value;
    if (!license) return;
    const query = `license=${encodeURIComponent(license)}`;
    const [bill, calls] = await Promise.all([
      admin(`/system/billing?${query}`),
      admin(`/system/billing?${query}&detail=calls`),
    ]);
    if (select.value !== license) return; // the user chose another meanwhile
    $("#billing-plan", section).textContent = `plan: ${bill.plan ?? "-"}`;
    body.replaceChildren(...bill.functions.map((f) => el("tr", { "data-test": "billing-row", "data-function": f.function },
      el("td", {}, f.function), el("td", { "data-test": "billing-calls" }, f.invocations),
      el("td", {}, f.duration_ms.toFixed(1)), el("td", {}, f.amount.toFixed(6)))));
    const totalCalls = bill.functions.reduce((n, f) => n + f.invocations, 0);
    const totalMs = bill.functions.reduce((n, f) => n + f.duration_ms, 0);
    $("#billing-total-calls", section).textContent = String(totalCalls);
    $("#billing-total-calls", section).dataset.value = String(totalCalls);
    $("#billing-total-duration", section).textContent = totalMs.toFixed(1);
    $("#billing-total", section).textContent = Number(bill.total).toFixed(6);
    plot.innerHTML = chart(perMinute(calls.calls));
    section.dataset.license = license;
  }

  select.addEventListener("change", () => refresh().catch(() => {}));

  return {
    enter() { listed = false; stop ??= poll(refresh, REFRESH_MS); },
    leave() { stop?.(); stop = null; },
  };
}
