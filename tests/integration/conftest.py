"""Devices for the integration suites, reached only through a pyinfra inventory.

`pytest -m lab tests/integration --inventory inventories/mylab.py` runs the very same
checks against a real lab. A test asks for `device` and says which inventory group it
applies to with `@pytest.mark.devices("sonic")`; it then runs once per device in it.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
import pytest
import testinfra

from edgefaas.deploy import results as deploy_results
from edgefaas.deploy.gateways import gateway_tls, gateway_url
from edgefaas.deploy.inventory import Inventory, load_inventory
from edgefaas.deploy.sites import site_name

# Where the gateway keeps its state on the K3S server (deploys/edgefaas.py).
GATEWAY_DATA_DIR = "/var/lib/edgefaas/gateway"
# Where deploys/nodeauth.py publishes the blueprint's CA certificate on every K3S node.
CA_PEM = "/etc/edgefaas/ca.pem"

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class DeployRun:
    """One `pyinfra -y --json INVENTORY DEPLOY` run: exit status, output, time, and pyinfra's
    own results; those are None where it stopped before it had any (e.g. no host was left)."""

    returncode: int
    output: str  # pyinfra's JSON (standard output), then its log (standard error)
    seconds: float
    # pyinfra's totals over every operation on every host: hosts, success, error, no_change.
    totals: dict[str, int] | None = None
    results: deploy_results.RunResults | None = None  # which operation changed or failed where

    @property
    def operations(self) -> int | None:
        """Operations run, counted once per host they ran on."""
        return self.totals["hosts"] if self.totals is not None else None

    @property
    def changed(self) -> int | None:
        return self.totals["success"] if self.totals is not None else None

    @property
    def errors(self) -> int | None:
        return self.totals["error"] if self.totals is not None else None

    @property
    def unchanged(self) -> int | None:
        return self.totals["no_change"] if self.totals is not None else None

    @property
    def changed_nothing(self) -> bool:
        return self.totals is not None and self.changed == 0 and self.errors == 0

    def summary(self) -> str:
        return f"{self.changed} of {self.operations} operations changed" if self.operations else "?"

    def describe(self) -> str:
        """Which operations changed or failed where, then the end of pyinfra's log."""
        found = self.results.describe() if self.results is not None else "pyinfra printed no results"
        return f"{found}\n{self.output[-3000:]}"


def run_deploy(
    inventory: str, deploy: str, *args: str, env: dict[str, str] | None = None, timeout: float | None = 900
) -> DeployRun:
    """Run a deploy file of this repository the way a lab engineer does, and read its results."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", "--json", inventory, deploy, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    seconds = time.monotonic() - started
    output = proc.stdout + proc.stderr
    try:
        payload = json.loads(proc.stdout)
        parsed = deploy_results.parse(payload)
    except ValueError:  # no JSON, or JSON without results: pyinfra stopped before the end
        return DeployRun(proc.returncode, output, seconds)
    return DeployRun(proc.returncode, output, seconds, dict(payload["results"]["totals"]), parsed)


def pytest_configure(config):
    config.addinivalue_line("markers", "devices(group): run the test on every device of an inventory group")


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(item.fspath).is_relative_to(REPO / "tests/integration"):
            item.add_marker(pytest.mark.lab)


@dataclass
class Device:
    """One inventory host: its name, its inventory data, and a testinfra handle on it."""

    name: str
    data: Any
    groups: set[str]
    host: testinfra.host.Host

    @property
    def address(self) -> str:
        return self.data.get("ssh_hostname") or self.name


def _inventory_path(config) -> str:
    path = Path(config.getoption("--inventory"))
    return str(path if path.is_absolute() else REPO / path)


_loaded: dict[str, Any] = {}


def _whole_inventory(config):
    path = _inventory_path(config)
    if path not in _loaded:
        try:
            _loaded[path] = load_inventory(path, cwd=str(REPO))
        except Exception as exc:  # the error is reported by every test that needs a device
            _loaded[path] = exc
    return _loaded[path]


def _inventory(config):
    """The hosts of the site under test (--site): each site is a cluster of its own, so a suite
    asking for "the K3S server" or "every node" means its own site's (edgefaas.deploy.sites)."""
    whole = _whole_inventory(config)
    if isinstance(whole, Exception):
        return whole
    site = config.getoption("--site")
    chosen = site_hosts(whole, site)
    if site is not None and not list(chosen):
        known = sorted({site_name(h.name, h.data, h.groups) for h in whole})
        return ValueError(f"--site {site}: no host of the inventory is in it (its sites: {', '.join(known)})")
    return chosen


def site_hosts(whole: Inventory, site: str | None) -> Inventory:
    sites = {h.name: site_name(h.name, h.data, h.groups) for h in whole}
    if site is None:
        servers = whole.get_group("k3s_server")
        site = sites[servers[0].name] if servers else None
    if site is None:
        return whole
    return Inventory(tuple(h for h in whole if sites[h.name] == site))


GATEWAY_UNIT = "edgefaas-gateway.service"
JOURNALS = REPO / "reports" / "journals"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    item.stash[_STARTED] = time.time()
    return (yield)


_STARTED = pytest.StashKey[float]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed lab test keeps what every gateway logged while it ran (reports/journals/), and
    shows its warnings and errors: a 500 from a gateway is explained only there."""
    report = yield
    if report.when != "call" or not report.failed or _STARTED not in item.stash:
        return report
    inventory = _inventory(item.config)
    if isinstance(inventory, Exception):
        return report
    since = int(item.stash[_STARTED]) - 5
    JOURNALS.mkdir(parents=True, exist_ok=True)
    for inv_host in inventory:
        if "k3s_server" not in inv_host.groups and "sonic" not in inv_host.groups:
            continue
        try:
            device = connect(inv_host.name, inv_host.data, inv_host.groups)
            text = device.host.run(
                f"sudo journalctl -u {GATEWAY_UNIT} --since @{since} --no-pager -o short-iso"
            ).stdout
        except Exception as exc:  # the device may be what the test broke
            text = f"(journal not read: {exc})"
        if not text.strip() or "-- No entries --" in text:
            continue
        name = f"{item.name}-{inv_host.name}.log".replace("/", "_")
        (JOURNALS / name).write_text(text)
        shown = "\n".join(_errors(text)[-40:]) or "(no errors logged)"
        report.sections.append((f"{GATEWAY_UNIT} on {inv_host.name}", f"reports/journals/{name}\n{shown}"))
    return report


def _errors(journal: str) -> list[str]:
    """The ERROR entries of a journal, each with its continuation lines (a traceback's)."""
    kept: list[str] = []
    inside = False
    for line in journal.splitlines():
        if line[:1].isspace():
            if inside:
                kept.append(line)
            continue
        inside = " ERROR " in line
        if inside:
            kept.append(line)
    return kept


def pytest_generate_tests(metafunc):
    if "device" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("devices")
    group = marker.args[0] if marker else "all"
    inventory = _inventory(metafunc.config)
    if isinstance(inventory, Exception):
        names = ["<inventory>"]
    else:
        names = (
            [h.name for h in inventory.get_group(group)] if group != "all" else [h.name for h in inventory]
        )
    metafunc.parametrize("device", names, indirect=True)


_connections: dict[str, Device] = {}


def _testinfra_host(data) -> testinfra.host.Host:
    user = data.get("ssh_user") or os.environ.get("USER", "root")
    address = data.get("ssh_hostname")
    host = testinfra.get_host(
        f"paramiko://{user}@{address}",
        ssh_identity_file=os.path.expanduser(data.get("ssh_key")) if data.get("ssh_key") else None,
        sudo=bool(data.get("_sudo")),
        timeout=10,
    )
    # testinfra's paramiko backend only warns about unknown host keys: verify them against
    # the inventory's known_hosts instead, as pyinfra does.
    client = paramiko.SSHClient()
    if data.get("ssh_known_hosts_file"):
        client.load_host_keys(os.path.expanduser(data.get("ssh_known_hosts_file")))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
    else:
        client.load_system_host_keys()
        client.set_missing_host_key_policy(paramiko.WarningPolicy())
    client.connect(
        address,
        port=int(data.get("ssh_port") or 22),
        username=user,
        key_filename=os.path.expanduser(data.get("ssh_key")) if data.get("ssh_key") else None,
        timeout=10,
        allow_agent=not data.get("ssh_key"),
    )
    host.backend.__dict__["client"] = client
    return host


@pytest.fixture
def device(request) -> Device:
    inventory = _inventory(request.config)
    if isinstance(inventory, Exception):
        pytest.fail(f"cannot load inventory {_inventory_path(request.config)}: {inventory}")
    inv_host = inventory.get_host(request.param)
    return connect(inv_host.name, inv_host.data, inv_host.groups)


def connect(name: str, data: Any, groups) -> Device:
    """One SSH connection per device for the whole session."""
    if name not in _connections:
        _connections[name] = Device(name, data, set(groups), _testinfra_host(data))
    return _connections[name]


def reconnect(name: str, data: Any, groups) -> Device:
    """A new connection to a device that was powered off (its old session died with it)."""
    _connections.pop(name, None)
    return connect(name, data, groups)


@pytest.fixture(scope="session")
def inventory(request):
    loaded = _inventory(request.config)
    if isinstance(loaded, Exception):
        pytest.fail(f"cannot load inventory {_inventory_path(request.config)}: {loaded}")
    return loaded


@pytest.fixture(scope="session")
def whole_inventory(request):
    """Every site's hosts (the sites suite's view)."""
    loaded = _whole_inventory(request.config)
    if isinstance(loaded, Exception):
        pytest.fail(f"cannot load inventory {_inventory_path(request.config)}: {loaded}")
    return loaded


@pytest.fixture(scope="session")
def inventory_path(request) -> str:
    return _inventory_path(request.config)


def server_device(inventory) -> Device:
    host = inventory.get_group("k3s_server")[0]
    return connect(host.name, host.data, host.groups)


@pytest.fixture(scope="module")
def server(inventory) -> Device:
    """The K3S server, where the gateway and the authentication server run."""
    return server_device(inventory)


@pytest.fixture(scope="module")
def port(server) -> int:
    """The gateway's port."""
    return int(server.data.get("edgefaas_gateway_port") or 8080)


def admin_password(server: Device) -> str:
    """The gateway's admin password, from its data directory on the K3S server."""
    return server.host.file(f"{GATEWAY_DATA_DIR}/admin-password").content_string.strip()


_CA_PEM: dict[str, str] = {}


def blueprint_ca(server: Device) -> str:
    """The blueprint's CA certificate (PEM) as the K3S server publishes it: what every client of
    the gateway verifies its HTTPS by (read once per run)."""
    if server.name not in _CA_PEM:
        pem = server.host.file(CA_PEM).content_string
        assert "BEGIN CERTIFICATE" in pem, (
            f"no CA certificate at {server.name}:{CA_PEM} (deploys/nodeauth.py)"
        )
        _CA_PEM[server.name] = pem
    return _CA_PEM[server.name]


def gateway_verify(server: Device) -> ssl.SSLContext | bool:
    """httpx's `verify` for the site's gateways: the blueprint's CA alone (True without HTTPS)."""
    if not gateway_tls(server):
        return True
    return ssl.create_default_context(cadata=blueprint_ca(server))


def gateway_base(server: Device, address: str, port: int) -> str:
    """A gateway's base URL at `address` in the scheme the site serves (edgefaas_gateway_tls)."""
    return gateway_url(server, address, port)


@pytest.fixture(scope="module")
def admin(server, port):
    """An admin client of the gateway, from the test runner (through the ACL), verifying its HTTPS
    by the blueprint's CA."""
    import httpx

    password = admin_password(server)
    verify = gateway_verify(server)
    with httpx.Client(
        base_url=gateway_base(server, server.address, port),
        auth=("admin", password),
        timeout=120,
        trust_env=False,
        verify=verify,
    ) as client:
        # What other clients of the same gateway verify it by (httpx keeps it private).
        client.verify_tls = verify  # type: ignore[attr-defined]
        yield client
