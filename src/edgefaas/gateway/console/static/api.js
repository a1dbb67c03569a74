// The gateway's API as the console uses it: admin basic auth, license tokens for functions, and
// one shared view of whether the gateway can be reached (the banner, and retrying with backoff).

const PASSWORD_KEY = "edgefaas.console.password";
const TOKEN_KEY = "edgefaas.console.token";

export class Unauthorized extends Error {}
export class Unreachable extends Error {}

export const session = {
  get password() { return sessionStorage.getItem(PASSWORD_KEY); },
  set password(value) {
    if (value) sessionStorage.setItem(PASSWORD_KEY, value); else sessionStorage.removeItem(PASSWORD_KEY);
  },
  get token() { return sessionStorage.getItem(TOKEN_KEY) || ""; },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value); else sessionStorage.removeItem(TOKEN_KEY);
  },
};

export function basic(password) {
  // btoa takes Latin-1 only: encode first so that any password can be sent.
  const bytes = new TextEncoder().encode(`admin:${password}`);
  return "Basic " + btoa(String.fromCharCode(...bytes));
}

// -- reachability -------------------------------------------------------------------------------

const listeners = new Set();
const link = { down: false, attempt: 0, nextRetryAt: 0, timer: null };

export function onLinkChange(listener) { listeners.add(listener); listener({ ...link }); }
function emit() { for (const l of listeners) l({ ...link }); }

function markUp() {
  if (!link.down) return;
  clearTimeout(link.timer);
  Object.assign(link, { down: false, attempt: 0, nextRetryAt: 0, timer: null });
  emit();
}

function markDown() {
  if (link.down) return;
  link.down = true;
  link.attempt = 0;
  scheduleProbe();
}

function scheduleProbe() {
  // 1, 2, 4, 8, then every 15 s: quick to notice a restart, light on a gateway that stays away.
  const delay = Math.min(15000, 1000 * 2 ** link.attempt);
  link.attempt += 1;
  link.nextRetryAt = Date.now() + delay;
  emit();
  link.timer = setTimeout(probe, delay);
}

async function probe() {
  try {
    const answer = await fetch("/healthz", { cache: "no-store", credentials: "omit" });
    if (answer.ok) { markUp(); return; }
  } catch { /* still down */ }
  scheduleProbe();
}

export function isDown() { return link.down; }

// -- requests ----------------------------------------------------------------------------------

async function send(path, init) {
  let answer;
  try {
    // credentials "omit": a 401 with WWW-Authenticate would otherwise make the browser prompt for
    // a password itself (and hold the request open); the console sends its own Authorization.
    answer = await fetch(path, { cache: "no-store", credentials: "omit", ...init });
  } catch (error) {
    // fetch rejects only when no answer came at all: the gateway (or the way to it) is down.
    markDown();
    throw new Unreachable(`the gateway did not answer: ${error.message}`);
  }
  markUp();
  return answer;
}

async function errorText(answer) {
  const text = await answer.text();
  try { return JSON.parse(text).error || text; } catch { return text || answer.statusText; }
}

/** An admin call; JSON in and out. 401 -> Unauthorized (the stored password no longer works). */
export async function admin(path, { method = "GET", json, body, headers = {}, password } = {}) {
  const init = { method, headers: { Authorization: basic(password ?? session.password ?? ""), ...headers } };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    init.body = body;
  }
  const answer = await send(path, init);
  if (answer.status === 401) {
    // A password given explicitly is a sign-in attempt: its caller reports it, the session stays.
    if (password === undefined) window.dispatchEvent(new CustomEvent("console:unauthorized"));
    throw new Unauthorized(await errorText(answer));
  }
  if (!answer.ok) {
    const error = new Error(`${answer.status}: ${await errorText(answer)}`);
    error.status = answer.status;
    throw error;
  }
  const type = answer.headers.get("content-type") || "";
  return type.includes("json") ? answer.json() : answer.text();
}

/** Call a function as a user would: its license token (if any), never the admin's password. */
export async function invoke(route, { method = "POST", body, contentType, token = session.token } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined && body !== null && method !== "GET") headers["Content-Type"] = contentType;
  const started = performance.now();
  const answer = await send(route, { method, headers, body: method === "GET" ? undefined : body });
  const text = await answer.text();
  const latencyMs = performance.now() - started;
  return { status: answer.status, statusText: answer.statusText, headers: [...answer.headers], text, latencyMs };
}

/** A raw GET (frames, for instance): the caller reads the answer. */
export function raw(path, init = {}) { return send(path, init); }
