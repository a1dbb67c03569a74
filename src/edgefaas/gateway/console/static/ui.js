// Small DOM helpers shared by the pages.

export const $ = (selector, root = document) => root.querySelector(selector);

/** An element with attributes and children; strings become text (never HTML). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function escapeXml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

export function bytes(n) {
  if (!Number.isFinite(n) || n <= 0) return "-";
  const gib = n / 2 ** 30;
  return gib >= 1 ? `${gib.toFixed(1)} GiB` : `${(n / 2 ** 20).toFixed(0)} MiB`;
}

export function showError(node, message) {
  node.textContent = message || "";
  node.hidden = !message;
}

/** Run `task` now and every `ms` while `active()` holds; returns a stop function. */
export function poll(task, ms, active = () => true) {
  let stopped = false;
  let timer = null;
  async function tick() {
    if (stopped) return;
    if (active() && !document.hidden) {
      try { await task(); } catch (error) { console.debug("poll:", error); }
    }
    if (!stopped) timer = setTimeout(tick, ms);
  }
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

/** A JSON value from a JSON schema, to start a "try it" body from. */
export function exampleFor(schema) {
  if (!schema || typeof schema !== "object") return {};
  if ("example" in schema) return schema.example;
  if ("default" in schema) return schema.default;
  if ("const" in schema) return schema.const;
  switch (schema.type) {
    case "object": {
      const out = {};
      for (const [key, sub] of Object.entries(schema.properties || {})) out[key] = exampleFor(sub);
      return out;
    }
    case "array": return [];
    case "string": return sub(schema);
    case "integer": case "number": return schema.minimum ?? 0;
    case "boolean": return false;
    default: return {};
  }
  function sub(s) { return s.enum ? s.enum[0] : (s.description ? "" : "text"); }
}
