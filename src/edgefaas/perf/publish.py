"""Hand the finished report.html to the EdgeFaaS gateway, so its web console shows it.

Optional by design: the perf run's verdict is the report and its exit code, so a gateway
that cannot be found or refuses the upload is reported in one line and changes neither.
The gateway is the inventory's ``k3s_server`` host, verified by the blueprint's CA when it
serves HTTPS (edgefaas.perf.site_gateway: its URL and CA). The admin password is, in order:
EDGEFAAS_ADMIN_PASSWORD, the inventory's ``edgefaas_admin_password``, or the gateway's own
``<data dir>/admin-password`` read over SSH with the inventory's key, as the tests do.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx

from edgefaas.perf.site_gateway import (
    GatewayAccessError,
    GatewayTarget,
    gateway_target,
    gateway_verify,
    read_over_ssh,
)

GATEWAY_DATA_DIR = "/var/lib/edgefaas/gateway"
UPLOAD_PATH = "/system/perf-report"
CONSOLE_PATH = "/#/performance"


class PublishError(Exception):
    """Why the report was not published (shown to the user; the perf run goes on)."""


def admin_password(target: GatewayTarget, environ: Mapping[str, str] = os.environ) -> str:
    given = environ.get("EDGEFAAS_ADMIN_PASSWORD") or target.data.get("edgefaas_admin_password")
    if given:
        return str(given)
    return read_over_ssh(target, f"{GATEWAY_DATA_DIR}/admin-password", "the admin password")


def upload(
    report: Path,
    url: str,
    password: str,
    transport: httpx.BaseTransport | None = None,
    verify: ssl.SSLContext | bool = True,
) -> str:
    """PUT the report to the gateway at ``url`` (its HTTPS checked by ``verify``); the console address."""
    try:
        with httpx.Client(timeout=30, trust_env=False, transport=transport, verify=verify) as client:
            answer = client.put(
                url + UPLOAD_PATH,
                content=report.read_bytes(),
                headers={"Content-Type": "text/html; charset=utf-8"},
                auth=("admin", password),
            )
    except httpx.HTTPError as exc:
        raise PublishError(f"the gateway at {url} did not take the report: {exc!r}") from None
    if answer.status_code != 201:
        raise PublishError(
            f"the gateway at {url} refused the report: HTTP {answer.status_code} {answer.text[:200]}"
        )
    return url + CONSOLE_PATH


def publish(
    report: Path, inventory: str, log: Callable[[str], None] = print, ca_file: Path | None = None
) -> bool:
    """Upload report.html to the inventory's gateway; print where to look, or why not. Never raises."""
    try:
        from edgefaas.deploy.inventory import load_inventory

        target = gateway_target(load_inventory(inventory, cwd=os.getcwd()))
        verify = gateway_verify(target, ca_file)
        where = upload(report, target.url, admin_password(target), verify=verify)
    except (PublishError, GatewayAccessError) as exc:
        log(f"perf: report not published to the console: {exc}")
        return False
    except Exception as exc:  # never let publishing fail a measured run
        log(f"perf: report not published to the console: {type(exc).__name__}: {exc}")
        return False
    log(f"perf: report published; see it in the console: {where}")
    return True
