// Camera: the smart monitor's latest analysed frame with its faces drawn over it, fetched at
// the monitor's own rate; the page measures the rate it actually achieves and shows both.
// (Frames carry no id, and the lab's camera replays still photos, so identical images in a
// row are normal: the achieved rate counts frames shown, not distinct pictures.)

import { invoke, raw } from "./api.js";
import { $, el, escapeXml } from "./ui.js";

const FUNCTION = "face-expression";
const MONITOR = `/function/${FUNCTION}/monitor`;
const FRAME = `/function/${FUNCTION}/monitor/frame`;
const WINDOW_MS = 10000;
const DEFAULT_FPS = 2;

/** Events per second over the recent window: (n - 1) intervals over the time they span. */
export function rate(times) {
  if (times.length < 2) return 0;
  return (times.length - 1) / ((times[times.length - 1] - times[0]) / 1000);
}

function overlay(faces, width, height) {
  const boxes = faces.map((face) => {
    const [x, y, w, h] = face.box || [0, 0, 0, 0];
    const label = `${face.expression ?? "?"}${face.score !== undefined ? ` ${Number(face.score).toFixed(2)}` : ""}`;
    const size = Math.max(12, Math.round(height / 28));
    return `<g class="face-box" data-test="face-box"><rect x="${x}" y="${y}" width="${w}" height="${h}" fill="none"
      stroke="#22c55e" stroke-width="${Math.max(2, width / 240)}"/><text x="${x}" y="${Math.max(size, y - 4)}"
      fill="#22c55e" font-size="${size}" font-family="sans-serif" font-weight="700">${escapeXml(label)}</text></g>`;
  }).join("");
  // Parsed as HTML, the <svg> element lands in the SVG namespace on its own.
  return `<svg viewBox="0 0 ${width} ${height}" preserveAspectRatio="none">${boxes}</svg>`;
}

export function create(section) {
  const img = $("#camera-frame", section);
  const layer = $("#camera-overlay", section);
  const list = $("#camera-faces", section);
  const note = $("#camera-note", section);
  const shown = [];
  let monitorFps = 0;
  let running = false;
  let url = null;
  let faces = [];
  let lastMonitorAt = -Infinity;
  let lastErrors = null;

  function setText(id, value) {
    const node = $(`#${id}`, section);
    node.textContent = Number.isFinite(value) && value > 0 ? value.toFixed(2) : "-";
    node.dataset.value = Number.isFinite(value) ? String(value) : "";
  }

  async function readMonitor() {
    lastMonitorAt = performance.now();
    const answer = await invoke(MONITOR, { method: "GET", token: "" });
    if (answer.status !== 200) { note.textContent = `monitor: HTTP ${answer.status}`; return; }
    const status = JSON.parse(answer.text);
    monitorFps = Number(status.rate_fps) || 0;
    setText("camera-monitor-rate", monitorFps);
    // Only errors since the last look: the monitor's count covers its whole life.
    const fresh = lastErrors === null ? 0 : status.errors - lastErrors;
    lastErrors = status.errors;
    note.textContent = fresh > 0 ? `(monitor: ${fresh} failed frames lately; last: ${status.last_error})` : "";
  }

  async function fetchFrame() {
    const answer = await raw(FRAME, { cache: "no-store" });
    if (answer.status !== 200) { note.textContent = `frame: HTTP ${answer.status} (${(await answer.text()).slice(0, 120)})`; return; }
    const buffer = await answer.arrayBuffer();
    try { faces = JSON.parse(answer.headers.get("X-Faces") || "[]"); } catch { faces = []; }
    const now = performance.now();
    const next = URL.createObjectURL(new Blob([buffer], { type: "image/jpeg" }));
    const loaded = await new Promise((resolve) => {
      img.onload = () => resolve(true);
      img.onerror = () => resolve(false);
      img.src = next;
    });
    if (url) URL.revokeObjectURL(url);
    url = next;
    if (!loaded) { note.textContent = "the frame is not an image the browser can show"; return; }
    // A frame arrived: an earlier frame error (the monitor's first seconds) no longer holds.
    if (note.textContent.startsWith("frame:") || note.textContent.startsWith("the frame")) note.textContent = "";
    // Kept on the element: while the next frame loads, naturalWidth may read 0.
    img.dataset.width = String(img.naturalWidth);
    img.dataset.height = String(img.naturalHeight);
    shown.push(now);
    while (shown.length && now - shown[0] > WINDOW_MS) shown.shift();
    layer.innerHTML = overlay(faces, img.naturalWidth || 640, img.naturalHeight || 480);
    list.replaceChildren(...(faces.length ? faces.map((f, i) => el("li", { "data-test": "camera-face" },
      `face ${i + 1}: ${f.expression ?? "?"} (score ${Number(f.score ?? 0).toFixed(2)}) at ${(f.box || []).join(", ")}`))
      : [el("li", { class: "muted" }, "no face in this frame")]));
    section.dataset.frames = String(Number(section.dataset.frames || 0) + 1);
    setText("camera-refresh-rate", rate(shown));
  }

  async function loop() {
    while (running) {
      const began = performance.now();
      try {
        if (began - lastMonitorAt > 5000) await readMonitor();
        await fetchFrame();
      } catch (error) {
        note.textContent = error.message;
      }
      // The monitor analyses at its own rate: asking faster would only fetch the same frame again.
      const period = 1000 / (monitorFps > 0 ? monitorFps : DEFAULT_FPS);
      await new Promise((r) => setTimeout(r, Math.max(0, period - (performance.now() - began))));
    }
  }

  return {
    enter() { if (!running) { running = true; lastMonitorAt = -Infinity; loop(); } },
    leave() { running = false; },
  };
}
