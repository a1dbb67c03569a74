// Devices: every K3S node the gateway sees, refreshed every 2.5 s, with its certification.
// A device that leaves the cluster (refused certification removes it) stays listed, struck
// through, with the last reason seen, so the operator sees why it went.

import { admin } from "./api.js";
import { $, bytes, el, poll } from "./ui.js";

const REFRESH_MS = 2500;
const CERTIFIED_LABEL = "edgefaas.io/certified";
const ROLE_LABELS = ["node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master"];

/** {state, reason, at}: the gateway's own field when it has one, else the nodeauth label. */
export function certification(node) {
  const given = node.certification;
  if (given && typeof given === "object" && given.state) {
    return { state: String(given.state), reason: given.reason ?? null, at: given.at ?? null };
  }
  const label = (node.labels || {})[CERTIFIED_LABEL];
  if (label === "true") return { state: "certified", reason: null, at: null };
  if (label) return { state: "refused", reason: `label ${CERTIFIED_LABEL}=${label}`, at: null };
  return { state: "none", reason: "no certification recorded", at: null };
}

export function k3sRole(node) {
  if (node.role) return node.role;
  const labels = node.labels || {};
  return ROLE_LABELS.some((key) => labels[key] === "true" || labels[key] === "") ? "server" : "agent";
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
    el("td", { "data-test": "device-role" }, k3sRole(node)),
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

  let removalsKnown = true;

  async function removals() {
    // Older gateways have no /system/node-removals: then what this page saw vanish is all there is.
    if (!removalsKnown) return [];
    try {
      return await admin("/system/node-removals");
    } catch (error) {
      if (error.status === 404 || error.status === 405) removalsKnown = false;
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
    // The moment the page became usable, for tests/perf/console_bench.py (ms from navigation start).
    if (!section.dataset.loaded && rows.length) performance.mark("console:devices-filled");
    section.dataset.loaded = "true";
    updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
  }

  return {
    enter() { stop ??= poll(refresh, REFRESH_MS); },
    leave() { stop?.(); stop = null; },
  };
}
