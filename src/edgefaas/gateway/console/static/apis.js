// APIs: what /system/apis lists, each with a "try it" that calls the function's route.

import { admin, invoke } from "./api.js";
import { invokeBody, showAnswer } from "./functions.js";
import { $, el, exampleFor, showError } from "./ui.js";

function tryRow(api) {
  const sample = api.input_schema && api.input_schema.type !== "string" ? exampleFor(api.input_schema) : {};
  const textarea = el("textarea", { rows: 4, spellcheck: "false", "data-test": "api-body" }, JSON.stringify(sample, null, 2));
  const error = el("p", { class: "error", "data-test": "api-error", hidden: true });
  const result = el("div", { class: "result", "data-test": "api-result", hidden: true },
    el("p", {}, "Status ", el("b", { "data-role": "status", "data-test": "api-status" }), " in ",
      el("b", { "data-role": "latency", "data-test": "api-latency" })),
    el("pre", { "data-role": "response", "data-test": "api-response" }));
  const send = el("button", { type: "submit", "data-test": "api-send" }, `POST ${api.route}`);
  const form = el("form", { class: "panel", "data-test": "api-try-form" }, textarea, error, send, result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let body;
    try {
      body = invokeBody(textarea.value, "application/json", "POST");
    } catch (e) {
      showError(error, `Invalid JSON: ${e.message}`);
      return;
    }
    showError(error, "");
    send.disabled = true;
    try {
      showAnswer(result, await invoke(api.route, { method: "POST", body, contentType: "application/json",
        token: api.public ? "" : undefined }));
    } catch (e) {
      showError(error, e.message);
    } finally {
      send.disabled = false;
    }
  });
  return el("tr", { class: "try", "data-test": "api-try-row", "data-name": api.name }, el("td", { colspan: 6 }, form));
}

export function create(section) {
  const body = $("#apis-body", section);

  async function load() {
    const apis = await admin("/system/apis");
    apis.sort((a, b) => a.name.localeCompare(b.name));
    const rows = [];
    for (const api of apis) {
      let open = null;
      const schema = el("details", {}, el("summary", {}, "schemas"),
        el("pre", { class: "body" }, JSON.stringify({ input: api.input_schema, output: api.output_schema }, null, 2)));
      const row = el("tr", { "data-test": "api-row", "data-name": api.name },
        el("td", {}, api.name),
        el("td", {}, el("code", {}, api.route)),
        el("td", { "data-test": "api-wan" }, api.wan
          ? [el("code", {}, api.wan.url), el("br"), el("small", {}, `community ${api.wan.community || "-"}`)]
          : "-"),
        el("td", {}, api.public ? "public" : "license"),
        el("td", {}, api.description || "", schema),
        el("td", {}, el("button", { type: "button", class: "secondary", "data-test": "api-try",
          onclick: () => {
            if (open) { open.remove(); open = null; return; }
            open = tryRow(api);
            row.after(open);
          } }, "Try it")));
      rows.push(row);
    }
    body.replaceChildren(...rows);
    const anycast = $("#apis-anycast", section);
    const wan = apis.find((api) => api.wan);
    anycast.hidden = !wan;
    anycast.textContent = wan ? `API anycast address in the WAN: ${wan.wan.anycast}` : "";
    section.dataset.loaded = "true";
  }

  return { enter() { load().catch((e) => body.replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "error" }, e.message)))); } };
}
