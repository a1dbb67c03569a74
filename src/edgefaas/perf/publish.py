"""Hand the finished report.html to the EdgeFaaS gateway, so its web console shows it.

Optional by design: the perf run's verdict is the report and its exit code, so a gateway
that cannot be found or refuses the upload is reported in one line and changes neither.
The gateway is the inventory's ``k3s_server`` host (``edgefaas_gateway_url``, or
http://<address>:<edgefaas_gateway_port>), and the admin password is, in order:
EDGEFAAS_ADMIN_PASSWORD, the inventory's ``edgefaas_admin_password``, or the gateway's own
``<data dir>/admin-password`` read over SSH with the inventory's key, as the tests do.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

GATEWAY_DATA_DIR = "/var/lib/edgefaas/gateway"
DEFAULT_GATEWAY_PORT = 8080
UPLOAD_PATH = "/system/perf-report"
CONSOLE_PATH = "/#/performance"


class PublishError(Exception):
    """Why the report was not published (shown to the user; the perf run goes on)."""


@dataclass(frozen=True)
class Target:
    url: str
    host: str | None  # inventory name of the gateway's host (None: the URL came from elsewhere)
    data: Mapping[str, Any]


def gateway_target(hosts: list[tuple[str, tuple[str, ...], Mapping[str, Any]]]) -> Target:
    """The gateway of an inventory: on its (first) k3s_server host."""
    for name, groups, data in hosts:
        if "k3s_server" in groups:
            address = data.get("ssh_hostname") or name
            port = int(data.get("edgefaas_gateway_port") or DEFAULT_GATEWAY_PORT)
            url = (data.get("edgefaas_gateway_url") or f"http://{address}:{port}").rstrip("/")
            return Target(url, name, data)
    raise PublishError("the inventory has no k3s_server host, so no gateway to publish to")


def _password_over_ssh(target: Target) -> str:
    import paramiko

    data = target.data
    client = paramiko.SSHClient()
    known = data.get("ssh_known_hosts_file")
    if known:
        client.load_host_keys(os.path.expanduser(known))
    else:
        client.load_system_host_keys()
    # An unknown host key is refused, never trusted on first use: the password is a secret.
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    key = data.get("ssh_key")
    try:
        client.connect(
            data.get("ssh_hostname") or target.host,
            port=int(data.get("ssh_port") or 22),
            username=data.get("ssh_user") or os.environ.get("USER", "root"),
            key_filename=os.path.expanduser(key) if key else None,
            allow_agent=not key,
            timeout=10,
        )
        path = shlex.quote(f"{GATEWAY_DATA_DIR}/admin-password")
        _, stdout, stderr = client.exec_command(f"sudo -n cat {path}", timeout=20)
        password = stdout.read().decode().strip()
        if stdout.channel.recv_exit_status() != 0 or not password:
            raise PublishError(
                f"could not read the admin password over SSH: {stderr.read().decode().strip()}"
            )
        return password
    except (OSError, paramiko.SSHException) as exc:
        raise PublishError(f"could not read the admin password over SSH: {exc}") from None
    finally:
        client.close()


def admin_password(target: Target, environ: Mapping[str, str] = os.environ) -> str:
    given = environ.get("EDGEFAAS_ADMIN_PASSWORD") or target.data.get("edgefaas_admin_password")
    return str(given) if given else _password_over_ssh(target)


def upload(report: Path, url: str, password: str, transport: httpx.BaseTransport | None = None) -> str:
    """PUT the report to the gateway at ``url``; the console address to look at."""
    try:
        with httpx.Client(timeout=30, trust_env=False, transport=transport) as client:
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


def publish(report: Path, inventory: str, log: Callable[[str], None] = print) -> bool:
    """Upload report.html to the inventory's gateway; print where to look, or why not. Never raises."""
    try:
        from edgefaas.deploy.inventory import load_inventory

        loaded = load_inventory(inventory, cwd=os.getcwd())
        target = gateway_target([(h.name, tuple(h.groups), h.data) for h in loaded])
        where = upload(report, target.url, admin_password(target))
    except PublishError as exc:
        log(f"perf: report not published to the console: {exc}")
        return False
    except Exception as exc:  # never let publishing fail a measured run
        log(f"perf: report not published to the console: {type(exc).__name__}: {exc}")
        return False
    log(f"perf: report published; see it in the console: {where}")
    return True
