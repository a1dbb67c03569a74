"""Host preparation for every device, by profile (SONiC switch or Jetson board).

    pyinfra -y inventories/lab.py deploys/platform.py

Checks that each host really is what its profile group says, installs the packages the
task deploys rely on, sets the kernel settings K3S needs, the time zone and NTP, the
`edgefaas` service account, and on SONiC the `edgefaas config-db` tool (the sonic extra)
through which later deploys write CONFIG_DB. Safe to re-run: a second run changes nothing.
"""

from io import StringIO
from pathlib import Path

from pyinfra import host, inventory
from pyinfra.api.exceptions import DeployError
from pyinfra.facts.files import Directory, File, FileContents, Link
from pyinfra.facts.server import KernelVersion
from pyinfra.operations import apt, files, server, systemd

from edgefaas.deploy import control_plane_acl, python_bundle, userland
from edgefaas.deploy.artifacts import device_arch, install, require, unpack
from edgefaas.deploy.facts import Userland, WritableSysctls
from edgefaas.deploy.gateways import is_gateway
from edgefaas.deploy.sites import site_inventory

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "platform"
# A cloud server is any Debian-family server (Ubuntu included): nothing marks it but its OS.
PROFILE_MARKERS = {
    "sonic": "/etc/sonic/sonic_version.yml",
    "jetson": "/etc/nv_tegra_release",
    "cloud": "/etc/debian_version",
}


profile = host.data.get("device_profile")
if profile not in PROFILE_MARKERS:
    raise DeployError(f"{host.name}: no device_profile (put the host in group 'sonic', 'jetson' or 'cloud')")
if not host.get_fact(File, path=PROFILE_MARKERS[profile]):
    raise DeployError(
        f"{host.name}: in group '{profile}' but {PROFILE_MARKERS[profile]} is missing: "
        f"this does not look like a {profile} device; fix the inventory"
    )
# Refuse a device older than anything the blueprint supports, and one of an architecture
# with no bundle or wheelhouse, before any operation runs.
refused = userland.refusal(host.name, userland.from_fact(host.get_fact(Userland)))
if refused:
    raise DeployError(refused)
bundle, wheelhouse = require("python-bundle", "edgefaas-wheelhouse").values()

apt.packages(
    name="Install the packages later tasks need",
    packages=host.data.platform_packages,
    # Lab devices have every package already and no route to a mirror: update only when needed.
    update=False,
)

# Set what this host may set: bridge-nf-call-* exist only once br_netfilter is present,
# and global settings are read-only inside a container (the lab's devices).
writable = host.get_fact(WritableSysctls, keys=list(host.data.platform_sysctls))
sysctls = {key: value for key, value in host.data.platform_sysctls.items() if key in writable}
for key, value in sysctls.items():
    server.sysctl(name=f"Set {key} = {value}", key=key, value=value)
files.template(
    name="Persist the kernel settings K3S needs",
    src=str(TEMPLATES / "90-edgefaas.conf.j2"),
    dest="/etc/sysctl.d/90-edgefaas.conf",
    sysctls=sysctls,
    mode="644",
)
files.template(
    name="Load the kernel modules K3S networking needs at boot",
    src=str(TEMPLATES / "modules-load.conf.j2"),
    dest="/etc/modules-load.d/edgefaas.conf",
    modules=host.data.platform_modules,
    mode="644",
)
# Kernels without loadable modules (the lab's, some vendor images) have them built in.
if host.get_fact(Directory, path=f"/lib/modules/{host.get_fact(KernelVersion)}"):
    for module in host.data.platform_modules:
        server.modprobe(name=f"Load kernel module {module}", module=module)

server.timezone(name=f"Set the time zone to {host.data.timezone}", timezone=host.data.timezone)
if host.data.ntp_servers:
    ntp = files.template(
        name="Point time sync at the site's NTP servers",
        src=str(TEMPLATES / "timesyncd.conf.j2"),
        dest="/etc/systemd/timesyncd.conf.d/edgefaas.conf",
        servers=host.data.ntp_servers,
        create_remote_dir=True,
    )
    systemd.service(
        name="Restart time sync after an NTP change",
        service="systemd-timesyncd.service",
        running=True,
        restarted=True,
        _if=ntp.did_change,
    )

server.group(name="Create the edgefaas group", group=host.data.edgefaas_user, system=True)
server.user(
    name="Create the edgefaas service account",
    user=host.data.edgefaas_user,
    group=host.data.edgefaas_user,
    system=True,
    shell="/usr/sbin/nologin",
    home="/var/lib/edgefaas",
    ensure_home=True,
)
files.directory(name="Create /etc/edgefaas", path="/etc/edgefaas", mode="755")

# EdgeFaaS's own Python (edgefaas.deploy.python_bundle): the host services and operator
# tools (`edgefaas parsec`, the authentication agent, the gateway) never use the device's
# Python, which differs from board to board (JetPack 4: 3.6, JetPack 5: 3.8).
files.directory(name="Create /opt/edgefaas", path="/opt/edgefaas", mode="755")
bundle_upload = install(bundle, "/opt/edgefaas/python-bundle.tar.gz", "EdgeFaaS's Python bundle", mode="644")
unpack(
    "/opt/edgefaas/python-bundle.tar.gz",
    python_bundle.BUNDLE_DIR,
    bundle,
    "EdgeFaaS's Python bundle",
    bundle_upload,
    binary=python_bundle.INTERPRETER,
)

files.directory(name=f"Create {python_bundle.EMBED_LIB_DIR}", path=python_bundle.EMBED_LIB_DIR, mode="755")
files.link(
    name="Offer the bundle's libpython to programs that embed Python",
    path=f"{python_bundle.EMBED_LIB_DIR}/{Path(python_bundle.libpython(device_arch())).name}",
    target=python_bundle.libpython(device_arch()),
)

# The EdgeFaaS package in a venv of that Python, from the wheelhouse (no package index).
venv = host.data.edgefaas_venv
# A venv made with the device's own Python has a link for bin/python (to /usr/bin/python3):
# it is replaced whole, so the launcher below is never written through that link.
replaced = bool(host.get_fact(Link, path=f"{venv}/bin/python"))
if replaced:
    server.shell(name="Remove the venv made with the device's own Python", commands=[f"rm -rf {venv}"])
files.directory(name=f"Create the venv {venv}", path=f"{venv}/bin", mode="755")
launcher = python_bundle.launcher_context(device_arch(), venv)
files.template(
    name="Write the venv's python: the bundle's interpreter through the bundle's loader",
    src=str(TEMPLATES / "python-launcher.sh.j2"),
    dest=f"{venv}/bin/python",
    mode="755",
    **launcher,
)
files.link(name="Link python3 to the venv's python", path=f"{venv}/bin/python3", target="python")
files.template(
    name="Point the venv at the bundle's Python",
    src=str(TEMPLATES / "pyvenv.cfg.j2"),
    dest=f"{venv}/pyvenv.cfg",
    mode="644",
    **launcher,
)
wheels = install(wheelhouse, "/opt/edgefaas/wheelhouse.tar", "the EdgeFaaS wheelhouse", mode="644")
extras = list(host.data.edgefaas_extras)
# Whichever group's edgefaas_extras wins on a switch, it needs the config-db tool's extra.
if host.data.get("sonic_config_db") and "sonic" not in extras:
    extras.append("sonic")
# And every gateway host (deploys/edgefaas.py) the gateway's own.
if is_gateway(host, site_inventory(host, inventory)) and "gateway" not in extras:
    extras.append("gateway")
requirement = f"edgefaas[{','.join(extras)}]" if extras else "edgefaas"
files.put(
    name=f"Record what this device runs: {requirement}",
    src=StringIO(requirement + "\n"),
    dest="/opt/edgefaas/requirement.txt",
    mode="644",
)
# Written only after a complete install: a run cut short (or a failed pip) leaves the old
# stamp, so the next run installs again instead of trusting a half-installed venv. A new
# bundle reinstalls too: compiled modules belong to one interpreter.
stamp = f"{venv}/.edgefaas-installed"
expected = f"{wheelhouse.sha256} {bundle.sha256} {requirement}"
installed = host.get_fact(FileContents, path=stamp) or []
pip = f"{python_bundle.pip_command(venv)} install -q --disable-pip-version-check --no-index"
pip += " --find-links /opt/edgefaas/wheels"
server.shell(
    name=f"Install {requirement} from the wheelhouse",
    commands=[
        f"rm -f {stamp}",
        "rm -rf /opt/edgefaas/wheels && mkdir -p /opt/edgefaas/wheels",
        "tar -xf /opt/edgefaas/wheelhouse.tar -C /opt/edgefaas/wheels",
        # Same version number, new code: replace the project itself first, so that the next
        # line resolves the new release's dependencies (pip judges an installed edgefaas 0.1.0
        # by its old metadata otherwise, and would miss a dependency the new code added).
        f"{pip} --no-deps --force-reinstall edgefaas",
        f"{pip} '{requirement}'",
        f"{venv}/bin/edgefaas --version",
        f"echo '{expected}' > {stamp}",
    ],
    _if=lambda: replaced or wheels.did_change() or [line.strip() for line in installed] != [expected],
)
files.link(name="Put edgefaas on PATH", path="/usr/local/bin/edgefaas", target=f"{venv}/bin/edgefaas")

# Deploys open ports through CONFIG_DB (edgefaas.deploy.control_plane_acl), where SONiC's
# caclmgrd reads them; switches deployed with the iptables opener that preceded it lose it.
if host.data.get("sonic_config_db") and host.get_fact(control_plane_acl.RetiredOpener):
    server.shell(
        name="Remove the retired ACL opener: edgefaas-cacl, its 30 s timer and its EDGEFAAS-ALLOW chain",
        commands=control_plane_acl.retired_opener_removal(),
    )
