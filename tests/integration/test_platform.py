"""Platform checklist (deploys/platform.py): what an operator checks on each device.

pytest -m lab tests/integration/test_platform.py [--inventory inventories/mylab.py]
"""

from __future__ import annotations

import json
import re
import shlex
import uuid

import pytest

from edgefaas.deploy.control_plane_acl import acl_entries, table_name
from tests.integration.conftest import connect, run_deploy
from tests.integration.support import wait_for

PROBE_PORT = 18087


@pytest.mark.devices("sonic")
def test_sonic_device_identifies_itself_as_sonic(device):
    version = device.host.file("/etc/sonic/sonic_version.yml")
    assert version.exists
    assert re.search(r"^build_version:", version.content_string, re.M)
    config_db = json.loads(device.host.file("/etc/sonic/config_db.json").content_string)
    assert config_db["DEVICE_METADATA"]["localhost"]["hostname"] == device.host.check_output("hostname")
    mgmt = [key for key in config_db["MGMT_INTERFACE"] if key.startswith(device.data.mgmt_interface + "|")]
    assert mgmt, f"config_db has no MGMT_INTERFACE entry for {device.data.mgmt_interface}"


@pytest.mark.devices("jetson")
def test_jetson_device_identifies_itself_as_jetson(device):
    release = device.host.file("/etc/nv_tegra_release").content_string
    assert re.match(r"# R\d+ \(release\), REVISION: [\d.]+", release), release


def test_management_interface_carries_the_address_we_reach_it_on(device):
    iface = device.host.interface(device.data.mgmt_interface)
    assert iface.exists
    assert device.address in iface.addresses


@pytest.mark.devices("sonic")
def test_config_db_management_address_matches_the_interface(device):
    config_db = json.loads(device.host.file("/etc/sonic/config_db.json").content_string)
    prefixes = [key.split("|", 1)[1] for key in config_db["MGMT_INTERFACE"]]
    assert any(p.split("/")[0] == device.address for p in prefixes)


def test_packages_later_tasks_need_are_installed(device):
    missing = [p for p in device.data.platform_packages if not device.host.package(p).is_installed]
    assert not missing, f"not installed: {missing}"


def test_k3s_kernel_settings_are_live_and_persisted(device):
    persisted = device.host.file("/etc/sysctl.d/90-edgefaas.conf").content_string
    checked = 0
    for key, value in device.data.platform_sysctls.items():
        if f"{key} = {value}" not in persisted:
            continue  # read-only on this device (a container's global setting): left to the kernel
        assert device.host.sysctl(key) == value, key
        checked += 1
    assert checked, "no kernel setting could be set at all"
    assert device.host.sysctl("net.ipv4.ip_forward") == 1


def test_time_zone(device):
    zone = device.host.file("/etc/localtime").linked_to
    assert zone.endswith("/" + device.data.timezone), f"/etc/localtime is {zone}, not {device.data.timezone}"


def test_edgefaas_service_account(device):
    user = device.host.user(device.data.edgefaas_user)
    assert user.exists
    assert user.uid < 1000, "a system account"
    assert user.shell == "/usr/sbin/nologin"


def test_edgefaas_runs_on_its_own_python_whatever_the_device_has(device):
    """The bundle's interpreter and C library, not the device's (JetPack's differ)."""
    venv = device.data.edgefaas_venv
    probe = (
        "import json, platform, sys; "
        "print(json.dumps({'python': sys.version.split()[0], 'libc': platform.libc_ver()[1], "
        "'executable': sys.executable, 'prefix': sys.prefix, 'base': sys.base_prefix}))"
    )
    ours = json.loads(device.host.check_output(f'{venv}/bin/python -c "{probe}"'))
    assert ours["executable"] == f"{venv}/bin/python" and ours["prefix"] == venv, ours
    assert ours["base"].startswith("/opt/edgefaas/python/"), ours
    device_libc = device.host.check_output("getconf GNU_LIBC_VERSION").split()[-1]
    bundle_libc = device.host.check_output("ls /opt/edgefaas/python/usr/lib/*-linux-gnu/libc.so.6")
    assert bundle_libc, "the bundle carries its own C library"
    if device_libc != ours["libc"]:
        # Running at all on another glibc than the bundle's is the point of the loader.
        imported = device.host.run(f"{venv}/bin/python -c 'import ssl, sqlite3, numpy'")
        assert imported.rc == 0, f"the bundle's Python on glibc {device_libc}: {imported.stderr}"
    # Children of sys.executable come back through the launcher, and the CLI answers as a user.
    child = "import subprocess, sys; subprocess.run([sys.executable, '-V'], check=True)"
    version = device.host.check_output(f'{venv}/bin/python -c "{child}"')
    assert version.startswith("Python "), f"a child of sys.executable answered {version!r}"
    user = device.data.edgefaas_user
    with device.host.sudo(user):
        answer = device.host.run("edgefaas --version")
    assert answer.rc == 0, f"edgefaas --version as {user}: {answer.stderr or answer.stdout}"


def test_ssh_refuses_passwords(device):
    config = device.host.check_output("sshd -T 2>/dev/null | grep -i '^passwordauthentication'")
    assert config.lower().endswith("no")


def tcp_state_from(other, address: str, port: int) -> str:
    """'open', 'refused' or 'dropped' for a TCP connection from `other` (a device), as tcp_state."""
    probe = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(({address!r}, {port}), timeout=1.5); print('open')\n"
        "except ConnectionRefusedError: print('refused')\n"
        "except TimeoutError: print('dropped')\n"
    )
    return other.host.check_output(f"{other.data.edgefaas_venv}/bin/python -c {shlex.quote(probe)}")


@pytest.mark.devices("sonic")
def test_control_plane_acl_drops_unopened_ports_and_config_db_rules_open_them(device, inventory):
    """SONiC drops inbound traffic to ports nobody opened; an owner's CTRLPLANE rules in CONFIG_DB
    open its port to other devices, and removing the owner closes it again."""
    others = [h for h in inventory.hosts if h.name != device.name]
    assert others, "needs a second device to probe from"
    other = connect(others[0].name, others[0].data, others[0].groups)
    host = device.host
    unit = f"edgefaas-probe-{uuid.uuid4().hex[:8]}"
    owner = unit.removeprefix("edgefaas-")
    table = table_name(owner, PROBE_PORT)
    wanted = json.dumps({"owned": acl_entries(owner, [f"{PROBE_PORT}/tcp platform test probe"])})
    host.run(
        f"systemd-run --unit={unit} --collect --quiet "
        f"socat TCP-LISTEN:{PROBE_PORT},fork,reuseaddr SYSTEM:'echo probe'"
    )
    try:
        wait_for(
            lambda: host.socket(f"tcp://0.0.0.0:{PROBE_PORT}").is_listening,
            5,
            f"the probe ({unit}) to listen on port {PROBE_PORT}",
            interval=0.1,
        )
        state = tcp_state_from(other, device.address, PROBE_PORT)
        assert state == "dropped", f"port {PROBE_PORT}, opened by nobody, is {state} from {other.name}"
        host.run_test(f"printf '%s' {shlex.quote(wanted)} | edgefaas config-db apply --owner {owner} -")
        entries = json.loads(host.check_output(f"edgefaas config-db get 'ACL_*|{table}*'"))
        assert entries[f"ACL_TABLE|{table}"]["type"] == "CTRLPLANE", entries
        assert entries[f"ACL_RULE|{table}|RULE_1"]["L4_DST_PORT"] == str(PROBE_PORT), entries
        wait_for(
            lambda: tcp_state_from(other, device.address, PROBE_PORT) == "open",
            5,
            f"port {PROBE_PORT}, opened in CONFIG_DB ({table}), to be open from {other.name}",
            interval=0.2,
        )
    finally:
        host.run(f"edgefaas config-db remove --owner {owner}; systemctl stop {unit}")
    assert json.loads(host.check_output(f"edgefaas config-db get 'ACL_*|{table}*'")) == {}
    state = tcp_state_from(other, device.address, PROBE_PORT)
    assert state in ("dropped", "refused"), f"port {PROBE_PORT} is still {state} once its rules are removed"


@pytest.mark.devices("sonic")
def test_deploys_own_ctrlplane_tables_and_the_retired_opener_is_gone(device):
    # Right after the platform deploy no task has opened a port yet; after the others, each has.
    tables = json.loads(device.host.check_output("edgefaas config-db get 'ACL_TABLE|EDGEFAAS_*'"))
    owned = set()
    for record in device.host.check_output("ls /etc/edgefaas/config_db/*.json 2>/dev/null || true").split():
        owned |= set(json.loads(device.host.file(record).content_string)["owned"])
    for key, table in tables.items():
        assert table["type"] == "CTRLPLANE" and table["services@"] == "EXTERNAL_CLIENT", (key, table)
        assert key in owned, f"{key} is in no owner's record under /etc/edgefaas/config_db"
    assert not device.host.file("/usr/local/sbin/edgefaas-cacl").exists
    assert device.host.run("iptables -w -n -L EDGEFAAS-ALLOW").rc != 0, "the retired chain is still there"
    timer = "/etc/systemd/system/edgefaas-cacl.timer"
    assert not device.host.file(timer).exists, "the retired timer is still there"


def test_platform_redeploy_changes_nothing(inventory_path):
    """Idempotence: a second run of the deploy reports no change on any host."""
    run = run_deploy(inventory_path, "deploys/platform.py", timeout=300)
    assert run.returncode == 0, run.output[-5000:]
    assert run.operations, f"pyinfra reported no operations:\n{run.describe()}"
    assert (run.changed, run.errors) == (0, 0), f"re-run changed or failed something:\n{run.describe()}"
    assert run.unchanged == run.operations, (
        f"{run.unchanged} of {run.operations} operations unchanged:\n{run.describe()}"
    )
    print(f"platform re-run: {run.operations} operations, no change, {run.seconds:.1f} s")
