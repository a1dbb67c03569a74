// Performance: the last `edgefaas perf` report the gateway holds, in a sandboxed frame.
// Fetched with the admin's credentials (a plain iframe src could not send them) and shown
// from a blob: the frame's sandbox keeps the report's HTML away from the console's session.

import { admin } from "./api.js";
import { $ } from "./ui.js";

export function create(section) {
  const frame = $("#perf-frame", section);
  const message = $("#perf-message", section);
  const open = $("#perf-open", section);
  let url = null;

  async function load() {
    message.hidden = true;
    try {
      const html = await admin("/console/perf-report");
      if (url) URL.revokeObjectURL(url);
      url = URL.createObjectURL(new Blob([html], { type: "text/html" }));
      frame.src = url;
      open.href = url;
      frame.hidden = false;
      open.hidden = false;
      section.dataset.loaded = "report";
    } catch (error) {
      frame.hidden = true;
      open.hidden = true;
      message.textContent = error.status === 404 ? error.message.replace(/^404: /, "") : `The report could not be loaded: ${error.message}`;
      message.hidden = false;
      section.dataset.loaded = "none";
    }
  }

  $("#perf-reload", section).addEventListener("click", load);
  return { enter: load };
}
