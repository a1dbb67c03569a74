// The console's shell: sign-in, the tabs (hash routes), the header's token, and the banner.

import { Unauthorized, Unreachable, admin, onLinkChange, session } from "./api.js";
import { $, showError } from "./ui.js";

// Devices is the landing page: loaded with the shell; the others when first opened.
import * as devices from "./devices.js";

const PAGES = {
  devices: async () => devices,
  functions: () => import("./functions.js"),
  camera: () => import("./camera.js"),
  apis: () => import("./apis.js"),
  billing: () => import("./billing.js"),
  monitoring: () => import("./monitoring.js"),
  performance: () => import("./performance.js"),
};
const started = {};
let current = null;

function pageName() {
  const name = location.hash.replace(/^#\/?/, "").split("/")[0];
  return name in PAGES ? name : "devices";
}

async function route() {
  const name = pageName();
  if (current && current.name !== name) current.page.leave?.();
  for (const section of document.querySelectorAll("main > .page")) section.hidden = section.id !== `page-${name}`;
  for (const tab of document.querySelectorAll("#tabs a")) tab.classList.toggle("active", tab.dataset.page === name);
  const module = await PAGES[name]();
  started[name] ??= module.create($(`#page-${name}`));
  current = { name, page: started[name] };
  started[name].enter?.();
}

// -- sign-in -----------------------------------------------------------------------------------

async function check(password) {
  const info = await admin("/system/info", { password });
  return info;
}

function showApp(info) {
  if (info) $("#version").textContent = `gateway ${info.version?.release ?? ""} · ${info.provider?.orchestration ?? ""}`;
  if (!$("#app").hidden) return;
  $("#login").hidden = true;
  $("#app").hidden = false;
  route();
}

function showLogin(message) {
  if (current) current.page.leave?.();
  current = null;
  $("#app").hidden = true;
  $("#login").hidden = false;
  showError($("#login-error"), message);
  $("#login-password").focus();
}

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const password = $("#login-password").value;
  const button = $("#login-submit");
  button.disabled = true;
  try {
    const info = await check(password);
    session.password = password;
    $("#login-password").value = "";
    showError($("#login-error"), "");
    showApp(info);
  } catch (error) {
    // A refusal changes nothing: no password is stored and the app stays hidden.
    const message = error instanceof Unauthorized ? "Wrong password: the gateway refused it."
      : error instanceof Unreachable ? "The gateway cannot be reached: try again when the banner clears."
      : `Sign-in failed: ${error.message}`;
    showError($("#login-error"), message);
  } finally {
    button.disabled = false;
  }
});

$("#logout").addEventListener("click", () => {
  session.password = null;
  showLogin("");
});

function signedOut() {
  session.password = null;
  showLogin("The gateway no longer accepts the stored password: sign in again.");
}
// Any admin call refused later (the password was changed on the gateway) ends the session.
window.addEventListener("console:unauthorized", () => { if (!$("#app").hidden) signedOut(); });

// -- token and banner --------------------------------------------------------------------------

const token = $("#token");
token.value = session.token;
token.addEventListener("input", () => { session.token = token.value.trim(); });

let countdown = null;
onLinkChange((link) => {
  const banner = $("#banner");
  clearInterval(countdown);
  if (!link.down) { banner.hidden = true; banner.textContent = ""; return; }
  const render = () => {
    const seconds = Math.max(0, Math.ceil((link.nextRetryAt - Date.now()) / 1000));
    banner.textContent = `The gateway is unreachable. Retrying in ${seconds} s (attempt ${link.attempt}).`;
  };
  render();
  banner.hidden = false;
  countdown = setInterval(render, 500);
});

window.addEventListener("hashchange", () => { if (!$("#app").hidden) route(); });

// -- start -------------------------------------------------------------------------------------

(async () => {
  if (!session.password) { showLogin(""); return; }
  // Show the app at once from the stored password; a refusal sends the user back to sign-in.
  showApp(null);
  try {
    showApp(await check(session.password));
  } catch (error) {
    if (error instanceof Unauthorized) signedOut();
  }
})();
