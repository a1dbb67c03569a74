"""The web console in a real browser (headless Chromium) against the gateway on a lab.

    pytest -m lab tests/integration/test_console.py [--inventory inventories/mylab.py]

Playwright drives Debian's chromium (/usr/bin/chromium, or EDGEFAAS_CHROMIUM), never a
browser of its own download. The gateway is the inventory's k3s_server host, as in
test_edgefaas.py; the admin password is read over SSH from its data directory, and a fresh
license is issued for the calls. Every test saves a screenshot of its page into
reports/console/ (the README's pictures; Jenkins archives them).
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

# Not importorskip: without the [browser] extra (scripts/setup installs it) this suite must
# fail, not pass by skipping.
from playwright.sync_api import Browser, Page, expect, sync_playwright

from edgefaas.perf.site_gateway import pinned_key
from tests.integration.conftest import REPO, admin_password, gateway_base, gateway_verify
from tests.integration.support import wait_for

CHROMIUM = os.environ.get("EDGEFAAS_CHROMIUM", "/usr/bin/chromium")
SHOTS = REPO / "reports" / "console"
ROLLOUT_TIMEOUT_MS = 300_000
CERT_STATES = re.compile(r"^(certified|pending|authority|refused|none)$")
# What a function's status restates of its deployment (the console's update sends the same).
SPEC_FIELDS = ("envProcess", "envVars", "labels", "annotations", "constraints", "limits", "requests",
               "secrets", "readOnlyRootFilesystem", "public")  # fmt: skip


# -- the lab's gateway -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway_url(server) -> str:
    port = int(server.data.get("edgefaas_gateway_port") or 8080)
    return (server.data.get("edgefaas_gateway_url") or gateway_base(server, server.address, port)).rstrip("/")


@pytest.fixture(scope="module")
def verify(server):
    return gateway_verify(server)


@pytest.fixture(scope="module")
def password(server) -> str:
    given = server.data.get("edgefaas_admin_password")
    return str(given) if given else admin_password(server)


@pytest.fixture(scope="module")
def admin(gateway_url, password, verify) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=gateway_url, auth=("admin", password), timeout=120, trust_env=False, verify=verify
    ) as client:
        yield client


@pytest.fixture(scope="module")
def license(admin) -> Iterator[dict]:
    answer = admin.post(
        "/system/licenses", json={"name": f"console-{uuid.uuid4().hex[:8]}", "plan": "standard"}
    )
    assert answer.status_code == 201, answer.text
    issued = answer.json()
    yield issued
    admin.delete(f"/system/licenses/{issued['id']}")


# -- the browser --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(gateway_url, verify) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's chromium package (scripts/setup does)")
    args = ["--no-sandbox"]
    if gateway_url.startswith("https:"):
        # The browser checks the gateway as the test runner did: by the key the CA certified.
        args.append(f"--ignore-certificate-errors-spki-list={pinned_key(gateway_url, verify)}")
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=args)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, gateway_url) -> Iterator[Page]:
    # A fresh context per test: its own sessionStorage, so every test signs in on its own.
    context = browser.new_context(base_url=gateway_url, viewport={"width": 1440, "height": 900})
    context.set_default_timeout(30_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert not errors, f"the page raised: {errors}"


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def wait_until(page: Page, expression: str, seconds: float) -> None:
    """Poll a page expression from here: wait_for_function evaluates strings in the page, which the
    console's Content-Security-Policy (no eval) rightly refuses."""
    wait_for(lambda: page.evaluate(expression), seconds, f"{expression} to be true", interval=0.2)


def sign_in(page: Page, password: str) -> None:
    page.goto("/")
    page.fill("[data-test=login-password]", password)
    page.click("[data-test=login-submit]")
    expect(page.locator("[data-test=app]")).to_be_visible()


def open_tab(page: Page, name: str) -> None:
    page.click(f"[data-test=tab-{name}]")
    expect(page.locator(f"[data-test=page-{name}]")).to_be_visible()


def invoke_in_console(page: Page, function: str, body: str) -> dict:
    """Select the function, send the body; the answer the page shows (status, latency, JSON)."""
    open_tab(page, "functions")
    page.click(f"[data-test=function-row][data-name='{function}'] [data-test=function-open]")
    expect(page.locator("[data-test=function-detail]")).to_have_attribute("data-function", function)
    page.select_option("[data-test=invoke-content-type]", "application/json")
    page.fill("[data-test=invoke-body]", body)
    page.locator("[data-test=invoke-result]").evaluate("node => { node.hidden = true; }")
    page.click("[data-test=invoke-send]")
    expect(page.locator("[data-test=invoke-result]")).to_be_visible()
    return {
        "status": page.text_content("[data-test=invoke-status]") or "",
        "latency": page.text_content("[data-test=invoke-latency]") or "",
        "body": page.text_content("[data-test=invoke-response]") or "",
    }


# -- sign-in ------------------------------------------------------------------------------------


def test_a_wrong_password_shows_a_message_and_changes_nothing(page, password):
    page.goto("/")
    page.fill("[data-test=login-password]", password + "-wrong")
    page.click("[data-test=login-submit]")
    expect(page.locator("[data-test=login-error]")).to_contain_text("Wrong password")
    expect(page.locator("[data-test=app]")).to_be_hidden()
    assert page.evaluate("Object.keys(sessionStorage).length") == 0
    shot(page, "login-refused")
    # The right one then works from the same form.
    page.fill("[data-test=login-password]", password)
    page.click("[data-test=login-submit]")
    expect(page.locator("[data-test=app]")).to_be_visible()
    expect(page.locator("[data-test=login-error]")).to_be_hidden()


# -- devices ------------------------------------------------------------------------------------


def test_the_devices_page_shows_every_lab_device_with_its_profile_role_and_certification(
    page, password, inventory, admin
):
    sign_in(page, password)
    expected = {h.name: h for h in inventory if {"k3s_server", "k3s_agent"} & set(h.groups)}
    rows = page.locator("[data-test=device-row][data-removed=false]")
    expect(rows).to_have_count(len(expected))
    for name, host in expected.items():
        row = page.locator(f"[data-test=device-row][data-name='{name}']")
        profile = "sonic" if "sonic" in host.groups else "jetson"
        expect(row.locator("[data-test=device-profile]")).to_have_text(profile)
        role = "server" if "k3s_server" in host.groups else "agent"
        expect(row.locator("[data-test=device-role]")).to_have_text(role)
        expect(row.locator("[data-test=device-cert]")).to_have_attribute("data-state", CERT_STATES)
        if host.data.get("parsec_service") and role == "agent":  # deploys/nodeauth.py certified it
            expect(row.locator("[data-test=device-cert]")).to_have_attribute("data-state", "certified")
    # Removals the gateway knows of are listed with their reason (the nodeauth suite leaves some).
    removals = admin.get("/system/node-removals").json()
    if removals:
        expect(page.locator("[data-test=removal-row]").first).to_contain_text(removals[0]["reason"])
    shot(page, "devices")
    # It is live: the "updated" stamp moves on without a reload.
    first = page.text_content("[data-test=devices-updated]")
    expect(page.locator("[data-test=devices-updated]")).not_to_have_text(first or "", timeout=10_000)
    # The session survives a reload (sessionStorage), with no second sign-in.
    page.reload()
    expect(page.locator("[data-test=app]")).to_be_visible()
    expect(rows).to_have_count(len(expected))


# -- functions ----------------------------------------------------------------------------------


def test_invoking_funca_shows_funcc_part_of_the_answer(page, password, license):
    sign_in(page, password)
    page.fill("[data-test=token]", license["token"])
    marker = f"console-{uuid.uuid4().hex[:8]}"
    answer = invoke_in_console(page, "FuncA", json.dumps({"message": marker}))
    assert answer["status"].startswith("200"), answer
    assert answer["latency"].endswith("ms")
    chain = json.loads(answer["body"])
    assert chain["function"] == "FuncA"
    assert chain["FuncB"]["FuncC"]["function"] == "FuncC"
    assert chain["FuncB"]["FuncC"]["message"] == marker
    headers = page.text_content("[data-test=invoke-headers]") or ""
    assert "x-call-id" in headers.lower()
    shot(page, "functions")


def test_invalid_json_is_an_inline_error_and_no_request_is_sent(page, password, license):
    sign_in(page, password)
    page.fill("[data-test=token]", license["token"])
    open_tab(page, "functions")
    page.click("[data-test=function-row][data-name='FuncA'] [data-test=function-open]")
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.url) if "/function/" in request.url else None)
    page.select_option("[data-test=invoke-content-type]", "application/json")
    page.fill("[data-test=invoke-body]", '{"message": "no closing brace"')
    page.click("[data-test=invoke-send]")
    expect(page.locator("[data-test=invoke-error]")).to_contain_text("Invalid JSON")
    page.wait_for_timeout(1000)
    assert sent == []
    shot(page, "functions-invalid-json")
    # Fixed, the same form sends it.
    page.fill("[data-test=invoke-body]", '{"message": "fixed"}')
    page.click("[data-test=invoke-send]")
    expect(page.locator("[data-test=invoke-error]")).to_be_hidden()
    expect(page.locator("[data-test=invoke-status]")).to_contain_text("200")
    assert len(sent) == 1


def _deployment(admin: httpx.Client, name: str) -> dict:
    status = admin.get(f"/system/function/{name}")
    assert status.status_code == 200, status.text
    code = admin.get(f"/system/function/{name}/code")
    assert code.status_code == 200, code.text
    body = {k: v for k, v in status.json().items() if k in SPEC_FIELDS and v not in (None, "")}
    return {"service": name, "code": code.text, **body}


def test_updating_a_function_rolls_out_and_the_new_version_answers(page, password, admin, license):
    name = "FuncC"
    original = _deployment(admin, name)
    before = admin.get(f"/system/function/{name}").json()["version"]
    marker = f"console-{uuid.uuid4().hex[:8]}"
    changed = original["code"].replace(
        '"message": str(message),', f'"message": str(message), "marker": "{marker}",'
    )
    assert changed != original["code"], "FuncC's code changed shape: update this test's edit"
    try:
        sign_in(page, password)
        page.fill("[data-test=token]", license["token"])
        open_tab(page, "functions")
        page.click(f"[data-test=function-row][data-name='{name}'] [data-test=function-open]")
        editor = page.locator("[data-test=code-editor]")
        expect(editor).to_have_attribute("data-loaded", "true")
        assert editor.input_value() == original["code"]
        editor.fill(changed)
        page.click("[data-test=code-update]")
        rollout = page.locator("[data-test=rollout-status]")
        expect(rollout).to_have_attribute("data-state", "done", timeout=ROLLOUT_TIMEOUT_MS)
        assert int(rollout.get_attribute("data-version") or 0) > before
        # The check call the page made after the rollout is the new code answering.
        steps = rollout.inner_text()
        checked = json.loads(page.text_content("[data-test=invoke-response]") or "{}")
        assert checked.get("marker") == marker, (steps, checked)
        shot(page, "functions-update")
        # And so does a call made by hand.
        answer = invoke_in_console(page, name, json.dumps({"message": "after"}))
        assert json.loads(answer["body"])["marker"] == marker
    finally:
        restored = admin.put("/system/functions", json=original)
        assert restored.status_code == 200, restored.text
    assert "marker" not in admin.post(f"/function/{name}", json={}, headers=_bearer(license)).json()


def _bearer(license: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {license['token']}"}


# -- camera -------------------------------------------------------------------------------------


def test_the_camera_view_shows_a_frame_with_a_face_box(page, password):
    sign_in(page, password)
    open_tab(page, "camera")
    # The lab's camera replays photos with synthetic frames between them: wait for one with a face.
    expect(page.locator("[data-test=face-box]").first).to_be_attached(timeout=90_000)
    frame = page.locator("[data-test=camera-frame]")
    assert (
        int(frame.get_attribute("data-width") or 0) > 0 and int(frame.get_attribute("data-height") or 0) > 0
    )
    expect(page.locator("[data-test=camera-face]").first).to_be_visible()
    # Wait for a few refreshes so the measured rate has a window to measure over.
    wait_until(page, "Number(document.querySelector('#page-camera').dataset.frames || 0) >= 4", 30)
    rate = float(page.get_attribute("[data-test=camera-refresh-rate]", "data-value") or 0)
    assert rate > 0
    shot(page, "camera")


# -- APIs ---------------------------------------------------------------------------------------


def test_the_apis_page_lists_every_api_and_tries_one(page, password, admin, license):
    listed = {entry["name"] for entry in admin.get("/system/apis").json()}
    sign_in(page, password)
    page.fill("[data-test=token]", license["token"])
    open_tab(page, "apis")
    rows = page.locator("[data-test=api-row]")
    expect(rows).to_have_count(len(listed))
    assert {rows.nth(i).get_attribute("data-name") for i in range(len(listed))} == listed
    page.click("[data-test=api-row][data-name='FuncC'] [data-test=api-try]")
    form = page.locator("[data-test=api-try-row][data-name='FuncC']")
    form.locator("[data-test=api-body]").fill('{"message": "tried"}')
    form.locator("[data-test=api-send]").click()
    expect(form.locator("[data-test=api-status]")).to_contain_text("200")
    assert json.loads(form.locator("[data-test=api-response]").text_content() or "{}")["message"] == "tried"
    shot(page, "apis")


# -- billing ------------------------------------------------------------------------------------


def test_the_billing_count_rises_after_calls(page, password, admin, license):
    sign_in(page, password)
    open_tab(page, "billing")
    page.select_option("[data-test=billing-license]", license["id"])
    expect(page.locator("[data-test=page-billing]")).to_have_attribute("data-license", license["id"])
    total = page.locator("[data-test=billing-total-calls]")
    before = int(total.get_attribute("data-value") or 0)
    for i in range(3):
        answer = admin.post(
            "/function/FuncA", json={"message": f"bill {i}"}, headers=_bearer(license), auth=None
        )
        assert answer.status_code == 200, answer.text
    # Live: the page's own polling brings the new count, no reload.
    wait_until(
        page,
        f"Number(document.querySelector('[data-test=billing-total-calls]').dataset.value) >= {before + 3}",
        30,
    )
    expect(page.locator("[data-test=billing-row][data-function='FuncA']")).to_be_visible()
    bars = page.locator("[data-test=billing-bar]")
    assert sum(int(bars.nth(i).get_attribute("data-calls") or 0) for i in range(bars.count())) >= 3
    shot(page, "billing")


# -- monitoring ---------------------------------------------------------------------------------


def test_the_monitoring_page_plots_every_panel_with_a_line_per_device_and_function(
    page, password, admin, license, inventory
):
    """The plots read from the site's Prometheus (deploys/monitoring.py): a chart per panel the
    gateway lists, a line per device in the CPU plot, and a line for a function just called."""
    panels = [p["panel"] for p in admin.get("/system/plots").json()["panels"]]
    for i in range(5):
        answer = admin.post(
            "/function/FuncA", json={"message": f"plot {i}"}, headers=_bearer(license), auth=None
        )
        assert answer.status_code == 200, answer.text
    sign_in(page, password)
    open_tab(page, "monitoring")
    section = page.locator("[data-test=page-monitoring]")
    expect(section).to_have_attribute("data-loaded", "plots", timeout=30_000)
    shown = page.locator("[data-test=plot]")
    assert [shown.nth(i).get_attribute("data-panel") for i in range(shown.count())] == panels
    nodes = {h.name for h in inventory if "k3s_server" in h.groups or "k3s_agent" in h.groups}
    cpu = page.locator("[data-test=plot][data-panel=cpu] [data-test=plot-line]")
    assert {cpu.nth(i).get_attribute("data-name") for i in range(cpu.count())} == nodes
    # FuncA's calls reach the chart after Prometheus's next scrape; the page redraws every 15 s.
    wait_until(
        page,
        "[...document.querySelectorAll('[data-test=plot][data-panel=calls] [data-test=plot-line]')]"
        ".some((line) => line.dataset.name.startsWith('FuncA.'))",
        60,
    )
    shot(page, "monitoring")


# -- performance --------------------------------------------------------------------------------


def test_the_performance_page_shows_the_stored_report_or_says_there_is_none(page, password, admin):
    stored = admin.get("/console/perf-report")
    assert stored.status_code in (200, 404), stored.text
    sign_in(page, password)
    open_tab(page, "performance")
    section = page.locator("[data-test=page-performance]")
    if stored.status_code == 200:
        expect(section).to_have_attribute("data-loaded", "report")
        expect(page.locator("[data-test=perf-frame]")).to_be_visible()
        # The stored report itself is what the frame shows (its title, from `edgefaas perf`).
        title = page.frame_locator("[data-test=perf-frame]").locator("h1")
        expect(title).to_have_text("EdgeFaaS performance report")
    else:
        expect(section).to_have_attribute("data-loaded", "none")
        expect(page.locator("[data-test=perf-message]")).to_contain_text("edgefaas perf")
    shot(page, "performance")


# -- the gateway going away ------------------------------------------------------------------------


def test_an_unreachable_gateway_shows_a_banner_that_clears_when_it_is_back(page, password, gateway_url):
    sign_in(page, password)
    expect(page.locator("[data-test=device-row]").first).to_be_visible()
    banner = page.locator("[data-test=unreachable-banner]")
    expect(banner).to_be_hidden()
    # As if the gateway went away: every call to it fails at the network level.
    for pattern in (f"{gateway_url}/system/**", f"{gateway_url}/healthz"):
        page.route(pattern, lambda route: route.abort("connectionrefused"))
    expect(banner).to_be_visible(timeout=15_000)
    expect(banner).to_contain_text("unreachable")
    shot(page, "unreachable")
    page.unroute_all()
    started = time.monotonic()
    expect(banner).to_be_hidden(timeout=30_000)
    assert time.monotonic() - started < 30
    stamp = page.text_content("[data-test=devices-updated]")
    expect(page.locator("[data-test=devices-updated]")).not_to_have_text(stamp or "", timeout=10_000)
