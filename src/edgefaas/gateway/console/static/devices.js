// Devices: every K3S node the gateway sees, refreshed every 2.5 s, with its certification.
// A device that leaves the cluster (refused certification removes it) stays listed, struck
// through, with the last reason seen, so the operator sees why it went.

import { admin } from "./api.js";
import { $, bytes, el, poll } from "./ui.js";

const REFRESH_MS = 2500;

/** {state, reason, at} as the gateway reports it; "none" where no node is certified at all. */
export function certification(node) {
  return node.certification ?? { state: "none", reason: "no certification recorded", at: null };
}

function cpuText(cpu = {}) {
  if (cpu.count === undefined) return "-";
  const alloc = cpu.allocatable !== undefined && cpu.allocatable !== cpu.count ? ` (${cpu.allocatable} allocatable)` : "";
  return `${cpu.count} cores${alloc}`;
}

function memoryText(memory = {}) {
  const total = bytes(memory.total_bytes);
  const spare = memory.allocatable_bytes ?? memory.available_bytes;
  return spare !== undefined ? `${total} (${bytes(spare)} allocatable)` : total;
}

function certCell(cert) {
  return el("td", { class: "cert", "data-test": "device-cert", "data-state": cert.state },
    el("span", { class: `pill ${cert.state}` }, cert.state),
    cert.reason ? el("span", { class: "reason", "data-test": "device-cert-reason" }, cert.reason) : null,
    cert.at ? el("span", { class: "reason" }, `at ${cert.at}`) : null);
}

function row(node, removed) {
  const cert = removed ? { state: "refused", reason: removed.reason ?? "no longer in the cluster", at: removed.at ?? null }
    : certification(node);
  return el("tr", { "data-test": "device-row", "data-name": node.name, "data-removed": removed ? "true" : "false",
    class: removed ? "removed" : "" },
    el("td", { "data-test": "device-name" }, node.name, removed ? el("span", { class: "reason" }, "removed from the cluster") : null),
    el("td", { "data-test": "device-profile" }, node.profile),
    el("td", { "data-test": "device-role" }, node.role || "-"),
    el("td", {}, node.arch),
    el("td", {}, el("span", { class: `pill ${node.ready && !removed ? "yes" : "no"}` }, node.ready && !removed ? "ready" : "not ready")),
    el("td", {}, cpuText(node.cpu)),
    el("td", {}, memoryText(node.memory)),
    certCell(cert),
    el("td", { "data-test": "device-functions" }, (node.functions || []).join(", ") || "-"));
}

export function create(section) {
  const body = $("#devices-body", section);
  const updated = $("#devices-updated", section);
  const removalsBody = $("#removals-body", section);
  const seen = new Map();
  let stop = null;

  async function removals() {
    // Secondary to the node list: without it the page still shows what vanished, with no reason.
    try {
      return await admin("/system/node-removals");
    } catch {
      return [];
    }
  }

  async function refresh() {
    const [nodes, removed] = await Promise.all([admin("/system/nodes"), removals()]);
    const present = new Set(nodes.map((n) => n.name));
    for (const node of nodes) seen.set(node.name, node);
    const rows = nodes.map((n) => row(n, null));
    const why = new Map();
    for (const r of removed) if (!why.has(r.node)) why.set(r.node, r);
    for (const [name, r] of why) if (!present.has(name) && !seen.has(name)) seen.set(name, { name, labels: {}, profile: "-" });
    for (const [name, node] of seen) {
      if (!present.has(name)) rows.push(row(node, why.get(name) ?? { reason: "no longer in the cluster" }));
    }
    body.replaceChildren(...rows);
    const history = removed.slice(0, 10).map((r) => el("tr", { "data-test": "removal-row", "data-name": r.node },
      el("td", {}, r.at ? new Date(r.at).toLocaleString() : "-"),
      el("td", {}, r.node),
      el("td", { class: "muted small" }, r.reason)));
    removalsBody.replaceChildren(
      ...(history.length ? history : [el("tr", {}, el("td", { colspan: "3", class: "muted" }, "none"))]));
    // The moment the page became usable, for edgefaas.perf.console (ms from navigation start).
    if (!section.dataset.loaded && rows.length) performance.mark("console:devices-filled");
    section.dataset.loaded = "true";
    updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
  }

  return {
    enter() { stop ??= poll(refresh, REFRESH_MS); },
    leave() { stop?.(); stop = null; },
  };
}
