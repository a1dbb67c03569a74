// Functions: the list, invoking one with a body, its code, and updating it while watching
// the rollout (the new version serving on every replica, then answering a call).

import { admin, invoke } from "./api.js";
import { $, el, poll, showError } from "./ui.js";

const REFRESH_MS = 3000;
const DRAIN_MS = 3000;
// The fields of a function's status that are also fields of its deployment (an update restates them).
const SPEC_FIELDS = ["envProcess", "envVars", "labels", "annotations", "constraints", "limits", "requests",
  "secrets", "readOnlyRootFilesystem", "public"];

/** The body for an invoke: null when none; throws SyntaxError for JSON that does not parse. */
export function invokeBody(text, contentType, method) {
  if (method === "GET" || method === "DELETE") return null;
  if (contentType === "application/json") {
    const trimmed = text.trim();
    if (!trimmed) return null;
    JSON.parse(trimmed);
    return trimmed;
  }
  return text;
}

export function deployment(fn, code) {
  const body = { service: fn.name, code };
  for (const key of SPEC_FIELDS) {
    const value = fn[key];
    if (value === null || value === undefined || value === "") continue;
    body[key] = value;
  }
  return body;
}

function pretty(text) {
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return text; }
}

export function showAnswer(root, answer) {
  $("[data-role=status]", root).textContent = `${answer.status} ${answer.statusText || ""}`.trim();
  $("[data-role=latency]", root).textContent = `${answer.latencyMs.toFixed(1)} ms`;
  const headers = $("[data-role=headers]", root);
  if (headers) headers.textContent = answer.headers.map(([k, v]) => `${k}: ${v}`).join("\n");
  $("[data-role=response]", root).textContent = pretty(answer.text);
  root.hidden = false;
}

export function create(section) {
  const body = $("#functions-body", section);
  const detail = $("#function-detail", section);
  const form = $("#invoke-form", section);
  const codeForm = $("#code-form", section);
  const editor = $("#code-editor", section);
  const rollout = $("#rollout", section);
  const result = $("#invoke-result", section);
  for (const [id, role] of [["invoke-status", "status"], ["invoke-latency", "latency"],
    ["invoke-headers", "headers"], ["invoke-response", "response"]]) $(`#${id}`, section).dataset.role = role;

  let functions = [];
  let selected = null;
  let stop = null;
  let rolling = false;

  function render() {
    body.replaceChildren(...functions.map((fn) => el("tr", {
      "data-test": "function-row", "data-name": fn.name, "data-version": fn.version,
      class: `selectable ${fn.name === selected ? "selected" : ""}`,
      onclick: () => select(fn.name),
    },
    el("td", {}, el("a", { href: "#/functions", "data-test": "function-open", onclick: (e) => { e.preventDefault(); select(fn.name); } }, fn.name),
      fn.description ? el("span", { class: "reason" }, fn.description.split(/(?<=[.!?])\s/)[0]) : null),
    el("td", { "data-test": "function-version" }, fn.version),
    el("td", { "data-test": "function-replicas" }, `${fn.availableReplicas}/${fn.replicas}`),
    el("td", {}, fn.public ? "public" : "license"),
    el("td", {}, (fn.nodes || []).join(", ") || "-"),
    el("td", {}, fn.invocationCount))));
    section.dataset.loaded = "true";
  }

  async function refresh() {
    functions = await admin("/system/functions");
    functions.sort((a, b) => a.name.localeCompare(b.name));
    render();
  }

  async function select(name) {
    selected = name;
    render();
    detail.hidden = false;
    detail.dataset.function = name;
    $("#function-name", section).textContent = name;
    result.hidden = true;
    showError($("#invoke-error", section), "");
    showError($("#code-error", section), "");
    if (!rolling) { rollout.replaceChildren(); rollout.dataset.state = "idle"; }
    editor.value = "";
    editor.dataset.loaded = "false";
    $("#code-meta", section).textContent = "";
    try {
      editor.value = await admin(`/system/function/${encodeURIComponent(name)}/code`);
      editor.dataset.loaded = "true";
      const fn = functions.find((f) => f.name === name);
      $("#code-meta", section).textContent = fn ? `version ${fn.version} · sha256 ${String(fn.codeSha256 || "").slice(0, 12)}` : "";
    } catch (error) {
      editor.placeholder = `No source to show: ${error.message}`;
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!selected) return;
    const method = $("#invoke-method", section).value;
    const contentType = $("#invoke-content-type", section).value;
    let payload;
    try {
      payload = invokeBody($("#invoke-body", section).value, contentType, method);
    } catch (error) {
      // Nothing is sent: the body would reach the function as something else than meant.
      showError($("#invoke-error", section), `Invalid JSON: ${error.message}`);
      return;
    }
    showError($("#invoke-error", section), "");
    const path = $("#invoke-path", section).value.trim();
    const suffix = path && !path.startsWith("/") && !path.startsWith("?") ? `/${path}` : path;
    const button = $("#invoke-send", section);
    button.disabled = true;
    try {
      const answer = await invoke(`/function/${encodeURIComponent(selected)}${suffix}`,
        { method, body: payload, contentType });
      showAnswer(result, answer);
    } catch (error) {
      showError($("#invoke-error", section), error.message);
    } finally {
      button.disabled = false;
    }
  });

  function step(text, state) {
    rollout.append(el("li", { "data-test": "rollout-step" }, `${new Date().toLocaleTimeString()} ${text}`));
    if (state) rollout.dataset.state = state;
  }

  codeForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const fn = functions.find((f) => f.name === selected);
    if (!fn || rolling) return;
    if (!editor.value.trim()) { showError($("#code-error", section), "The code is empty."); return; }
    showError($("#code-error", section), "");
    rolling = true;
    const button = $("#code-update", section);
    button.disabled = true;
    rollout.replaceChildren();
    const name = fn.name;
    step(`updating ${name} from version ${fn.version}`, "running");
    // The PUT answers once the rollout is over; watching meanwhile shows it progress.
    let watching = true;
    const watch = (async () => {
      let last = "";
      while (watching) {
        try {
          const now = await admin(`/system/function/${encodeURIComponent(name)}`);
          const line = `version ${now.version}: ${now.availableReplicas}/${now.replicas} replicas available`;
          if (line !== last) step(line);
          last = line;
        } catch { /* the next look may work */ }
        await new Promise((r) => setTimeout(r, 1000));
      }
    })();
    try {
      const updated = await admin("/system/functions", { method: "PUT", json: deployment(fn, editor.value) });
      watching = false;
      await watch;
      step(`rolled out: version ${updated.version}, ${updated.availableReplicas}/${updated.replicas} available`);
      const deadline = Date.now() + 120000;
      for (;;) {
        const now = await admin(`/system/function/${encodeURIComponent(name)}`);
        if (now.version >= updated.version && now.availableReplicas >= now.replicas) break;
        if (Date.now() > deadline) throw new Error("replicas not ready after 120 s");
        await new Promise((r) => setTimeout(r, 1000));
      }
      // Leaving replicas keep serving the connections they hold for a moment after the rollout
      // (the backend's pre-stop drain), so the first calls may still meet the old code.
      step(`waiting ${DRAIN_MS / 1000} s for the old replicas to drain`);
      await new Promise((r) => setTimeout(r, DRAIN_MS));
      let check = null;
      for (let attempt = 1; attempt <= 10; attempt += 1) {
        check = await invoke(`/function/${encodeURIComponent(name)}`, { method: "POST", body: "{}", contentType: "application/json" });
        if (check.status < 500) break;
        step(`check call ${attempt}: HTTP ${check.status}, trying again`);
        await new Promise((r) => setTimeout(r, 1000));
      }
      step(`version ${updated.version} answers: HTTP ${check.status} in ${check.latencyMs.toFixed(0)} ms`, check.status < 400 ? "done" : "failed");
      rollout.dataset.version = updated.version;
      $("#code-meta", section).textContent =
        `version ${updated.version} · sha256 ${String(updated.codeSha256 || "").slice(0, 12)}`;
      showAnswer(result, check);
    } catch (error) {
      step(`update failed: ${error.message}`, "failed");
    } finally {
      watching = false;
      await watch;
      rolling = false;
      button.disabled = false;
      refresh().catch(() => {});
    }
  });

  return {
    enter() { stop ??= poll(refresh, REFRESH_MS); },
    leave() { stop?.(); stop = null; },
  };
}
