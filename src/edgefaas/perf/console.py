"""The web console's figures on a lab: time to a usable page, and the camera view's refresh rate.

    .venv/bin/python -m edgefaas.perf.console [--inventory inventories/lab.py] [--loads 15]
        [--camera-seconds 20] [--gateway-url URL] [--ca-file PEM] [--out DIR] [--strict]

(--gateway-url with EDGEFAAS_ADMIN_PASSWORD set needs no inventory; an https:// one then needs
--ca-file or EDGEFAAS_CA_FILE.)

What runs: headless Chromium (Debian's, /usr/bin/chromium or EDGEFAAS_CHROMIUM) driven by
Playwright against the gateway of the inventory's k3s_server host; the admin password as
`edgefaas perf` finds it (EDGEFAAS_ADMIN_PASSWORD, the inventory, or over SSH). An HTTPS gateway
is verified by the blueprint's CA as `edgefaas perf` finds it (--ca-file, EDGEFAAS_CA_FILE, or
the K3S server's /etc/edgefaas/ca.pem over SSH): the monitor's calls by an SSL context of that
CA, and Chromium, which takes no CA file, by the gateway's key pinned after a connection that
CA verified (--ignore-certificate-errors-spki-list).

Time to a usable page: from navigation start to the Devices table filled with the gateway's
nodes (the page marks that moment itself: performance.mark "console:devices-filled"), already
signed in (the password in sessionStorage, as after a sign-in). Cold: each load in a fresh
browser context (empty cache); warm: reloads in one context (files revalidated, 304s). p50
and max over --loads loads each. Target: cold p50 <= 1 s.

Camera: the Camera page runs for --camera-seconds; frames shown per second are counted from
the page's own frame counter over the window (and the page's own 10 s figure is read too).
Side by side, in the same run, the smart monitor's own rate measured directly over HTTP: its
frame counter (GET /function/face-expression/monitor) at the start and end of the window.
The ratio page frames/s : monitor frames/s is 1.0 when the page keeps up with the monitor.
(Frames carry no id, so a frame fetched twice counts twice; the page paces its fetches at the
monitor's reported rate, so that is rare.) Figures also go to
DIR/console_bench.json (default: a new folder under the checkout's tests/perf/out/, which git
ignores).
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from edgefaas.deploy.inventory import load_inventory
from edgefaas.perf.bench import out_root, repo_root
from edgefaas.perf.publish import admin_password
from edgefaas.perf.site_gateway import GatewayTarget, gateway_target, gateway_verify, pinned_key
from edgefaas.perf.stats import percentile

CHROMIUM = os.environ.get("EDGEFAAS_CHROMIUM", "/usr/bin/chromium")
USABLE_TARGET_MS = 1000.0
MONITOR = "/function/face-expression/monitor"
PASSWORD_KEY = "edgefaas.console.password"  # what the console's api.js keeps in sessionStorage


def usable_ms(page: Any, timeout_ms: float = 15_000) -> float:
    """Ms from navigation start to the Devices table filled, as the page marked it."""
    # Polled from here (page.evaluate is not subject to the page's CSP; wait_for_function's string
    # predicates are). The figure is the page's own mark, so the polling adds nothing to it.
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        mark = page.evaluate("performance.getEntriesByName('console:devices-filled')[0]?.startTime ?? null")
        if mark is not None:
            return float(mark)
        if time.monotonic() > deadline:
            raise TimeoutError("the devices table was not filled in time")
        page.wait_for_timeout(20)


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 50), "max": max(values), "min": min(values), "n": len(values)}


def measure_loads(browser: Any, url: str, password: str, loads: int) -> dict[str, dict[str, float]]:
    signed_in = f"sessionStorage.setItem({json.dumps(PASSWORD_KEY)}, {json.dumps(password)});"
    cold: list[float] = []
    for _ in range(loads):
        context = browser.new_context(base_url=url)
        context.add_init_script(signed_in)
        page = context.new_page()
        page.goto("/#/devices")
        cold.append(usable_ms(page))
        context.close()
    warm: list[float] = []
    context = browser.new_context(base_url=url)
    context.add_init_script(signed_in)
    page = context.new_page()
    page.goto("/#/devices")
    usable_ms(page)
    for _ in range(loads):
        page.reload()
        warm.append(usable_ms(page))
    context.close()
    return {"cold": summary(cold), "warm": summary(warm)}


def monitor_status(client: httpx.Client) -> dict[str, Any]:
    answer = client.get(MONITOR)
    answer.raise_for_status()
    return answer.json()


def measure_camera(
    browser: Any, url: str, password: str, seconds: float, verify: ssl.SSLContext | bool = True
) -> dict[str, Any]:
    with httpx.Client(base_url=url, timeout=30, trust_env=False, verify=verify) as client:
        first = monitor_status(client)  # also starts the monitor when nothing has yet
        deadline = time.monotonic() + 60
        while not first.get("frames") and time.monotonic() < deadline:
            time.sleep(1)
            first = monitor_status(client)
        context = browser.new_context(base_url=url)
        context.add_init_script(
            f"sessionStorage.setItem({json.dumps(PASSWORD_KEY)}, {json.dumps(password)});"
        )
        page = context.new_page()
        page.goto("/#/camera")
        frames = "Number(document.querySelector('#page-camera').dataset.frames || 0)"
        shown_by = time.monotonic() + 60
        while page.evaluate(frames) < 2:
            if time.monotonic() > shown_by:
                raise TimeoutError("the camera page showed no frame within 60 s")
            page.wait_for_timeout(100)
        started = time.monotonic()
        before = monitor_status(client)
        shown_before = int(page.evaluate("document.querySelector('#page-camera').dataset.frames"))
        time.sleep(seconds)
        after = monitor_status(client)
        elapsed = time.monotonic() - started
        shown = int(page.evaluate("document.querySelector('#page-camera').dataset.frames")) - shown_before

        def value(test_id: str) -> float:
            raw = page.get_attribute(f"[data-test={test_id}]", "data-value") or "0"
            return float(raw) if raw else 0.0

        page_refresh = value("camera-refresh-rate")
        context.close()
    monitor_fps = (after["frames"] - before["frames"]) / elapsed
    return {
        "seconds": round(elapsed, 2),
        "page_refreshes_per_s": round(shown / elapsed, 3),
        "page_reported_refresh_per_s": round(page_refresh, 3),
        "monitor_frames_per_s": round(monitor_fps, 3),
        "monitor_reported_rate_fps": after.get("rate_fps"),
        "monitor_errors": after.get("errors", 0) - before.get("errors", 0),
        "ratio_refreshes_to_monitor": round((shown / elapsed) / monitor_fps, 3) if monitor_fps else None,
    }


def report(result: dict[str, Any]) -> str:
    loads, camera = result["loads"], result["camera"]
    verdict = "PASS" if loads["cold"]["p50"] <= USABLE_TARGET_MS else "FAIL"
    lines = [
        f"console at {result['gateway']} ({result['browser']})",
        "",
        f"time to a usable page (navigation start -> devices table filled), {loads['cold']['n']} loads each:",
        f"  cold (fresh context)   p50 {loads['cold']['p50']:7.1f} ms   max {loads['cold']['max']:7.1f} ms"
        f"   [{verdict}: target p50 <= {USABLE_TARGET_MS:.0f} ms]",
        f"  warm (reload)          p50 {loads['warm']['p50']:7.1f} ms   max {loads['warm']['max']:7.1f} ms",
        "",
        f"camera view over {camera['seconds']} s, side by side with the smart monitor (HTTP, same run):",
        f"  {'':28}{'page':>10}{'monitor':>10}{'ratio':>8}",
        f"  {'frames / s':28}{camera['page_refreshes_per_s']:>10.2f}"
        f"{camera['monitor_frames_per_s']:>10.2f}{_ratio(camera['ratio_refreshes_to_monitor']):>8}",
        f"  the page's own figure (last 10 s): {camera['page_reported_refresh_per_s']:.2f} frames/s",
        f"  monitor's own rate_fps (since it started): {camera['monitor_reported_rate_fps']};"
        f" monitor errors in the window: {camera['monitor_errors']}",
    ]
    return "\n".join(lines)


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inventory", default="inventories/lab.py")
    parser.add_argument("--loads", type=int, default=15, help="page loads per kind (default 15)")
    parser.add_argument("--camera-seconds", type=float, default=20.0, help="camera window (default 20)")
    parser.add_argument("--gateway-url", help="the gateway (default: from the inventory)")
    parser.add_argument(
        "--ca-file",
        type=Path,
        help="PEM of the CA an https:// gateway is verified by (default: env EDGEFAAS_CA_FILE, else "
        "the K3S server's /etc/edgefaas/ca.pem over SSH)",
    )
    parser.add_argument("--out", type=Path, help="output folder (default: a new one under tests/perf/out/)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the page takes over 1 s (p50)")
    args = parser.parse_args(argv)
    if args.loads < 1 or args.camera_seconds <= 0:
        parser.error("--loads must be >= 1 and --camera-seconds > 0")
    if not Path(CHROMIUM).exists():
        print(f"console_bench: no Chromium at {CHROMIUM} (Debian's chromium package)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    try:
        if args.gateway_url and os.environ.get("EDGEFAAS_ADMIN_PASSWORD"):
            target = GatewayTarget(args.gateway_url.rstrip("/"), None, {})
            password = os.environ["EDGEFAAS_ADMIN_PASSWORD"]
        else:
            target = gateway_target(load_inventory(args.inventory, cwd=str(repo_root())))
            if args.gateway_url:
                # Another address of the same site: its CA is still the one the K3S server publishes.
                target = GatewayTarget(args.gateway_url.rstrip("/"), target.host, target.data)
            password = admin_password(target)
        url = target.url
        verify = gateway_verify(target, args.ca_file)
        browser_args = ["--no-sandbox"]
        if isinstance(verify, ssl.SSLContext):
            browser_args.append(f"--ignore-certificate-errors-spki-list={pinned_key(url, verify)}")
    except Exception as exc:  # GatewayAccessError, an inventory that does not load, SSH
        print(f"console_bench: cannot find the lab's gateway, its password or its CA: {exc}", file=sys.stderr)
        return 2
    out = args.out or out_root() / time.strftime("console-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=browser_args)
        try:
            result = {
                "gateway": url,
                "browser": f"chromium {browser.version}",
                "machine": f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}",
                "loads": measure_loads(browser, url, password, args.loads),
                "camera": measure_camera(browser, url, password, args.camera_seconds, verify),
            }
        finally:
            browser.close()
    result["usable_target_ms"] = USABLE_TARGET_MS
    result["usable_pass"] = result["loads"]["cold"]["p50"] <= USABLE_TARGET_MS
    (out / "console_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    print(report(result))
    print(f"\nfigures: {out / 'console_bench.json'}")
    return 1 if args.strict and not result["usable_pass"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
