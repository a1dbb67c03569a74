"""Inventory helpers shared by inventory files, deploys and test suites.

An inventory is checked when it is loaded, before pyinfra connects to anything, so a
wrong inventory fails without touching a host. The same checks apply to the virtual
lab's inventory and to a real lab's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefaas.deploy.sites import SiteError, site_name
from edgefaas.deploy.sonic import check_routing

PROFILE_GROUPS = ("sonic", "jetson", "cloud")
Host = str | tuple[str, dict[str, Any]]


class InventoryError(ValueError):
    """An inventory that the deploys cannot work with; the message says what to fix."""


def _names(hosts: Sequence[Host]) -> list[str]:
    return [h[0] if isinstance(h, tuple) else h for h in hosts]


def _site_of_hosts(groups: Mapping[str, Sequence[Host]]) -> dict[str, str]:
    """Every host's site (edgefaas.deploy.sites), from its host data and its groups."""
    data_of: dict[str, dict[str, Any]] = {}
    groups_of: dict[str, set[str]] = {}
    for group, members in groups.items():
        for member in members:
            name = member[0] if isinstance(member, tuple) else member
            data_of.setdefault(name, {}).update(member[1] if isinstance(member, tuple) else {})
            groups_of.setdefault(name, set()).add(group)
    return {name: site_name(name, data_of[name], groups_of[name]) for name in data_of}


def check_groups(groups: Mapping[str, Sequence[Host]], ha: bool = False, source: str = "inventory") -> None:
    """Check group membership the deploys rely on; raise InventoryError naming the problem.

    Each site (edgefaas.deploy.sites) is a cluster of its own: one K3S server per site."""
    servers = _names(groups.get("k3s_server", []))
    agents = _names(groups.get("k3s_agent", []))
    if not servers:
        raise InventoryError(
            f"{source}: no host in group 'k3s_server'. Name exactly one K3S server "
            "(e.g. the first SONiC switch) before deploying."
        )
    try:
        site_of = _site_of_hosts(groups)
    except SiteError as exc:
        raise InventoryError(f"{source}: {exc}") from None
    for site in sorted({site_of[name] for name in servers + agents}):
        own_servers = [name for name in servers if site_of[name] == site]
        own_agents = [name for name in agents if site_of[name] == site]
        if not own_servers:
            raise InventoryError(
                f"{source}: site '{site}' has K3S agents ({', '.join(own_agents)}) but no host in "
                "group 'k3s_server': each site is a cluster of its own, with its own server"
            )
        if len(own_servers) > 1 and not ha:
            raise InventoryError(
                f"{source}: {len(own_servers)} hosts in 'k3s_server' ({', '.join(own_servers)}) of site "
                f"'{site}' but no HA settings; keep one server per site, or set k3s_ha = True with an "
                "embedded-etcd plan"
            )
    both = sorted(set(servers) & set(agents))
    if both:
        raise InventoryError(f"{source}: {', '.join(both)} in both 'k3s_server' and 'k3s_agent'")
    profile_of: dict[str, str] = {}
    for group in PROFILE_GROUPS:
        for name in _names(groups.get(group, [])):
            if name in profile_of:
                raise InventoryError(f"{source}: {name} is in both '{profile_of[name]}' and '{group}'")
            profile_of[name] = group
    unprofiled = [name for name in servers + agents if name not in profile_of]
    if unprofiled:
        raise InventoryError(
            f"{source}: {', '.join(unprofiled)} in a K3S group but in none of the profile groups "
            f"{', '.join(repr(g) for g in PROFILE_GROUPS)}; every device needs one"
        )
    switches = [h for h in groups.get("sonic", []) if isinstance(h, tuple)]
    routing_problems = check_routing(switches)
    if routing_problems:
        raise InventoryError(f"{source}: the switches' routing: {'; '.join(routing_problems)}")


def lab_groups(lab: str | None = None) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Inventory groups for a running virtual lab, read from its state file."""
    import os

    from edgefaas.lab.lifecycle import SSH_USER
    from edgefaas.lab.state import DEFAULT_LAB, load_state

    state = load_state(lab or os.environ.get("EDGEFAAS_LAB", DEFAULT_LAB))
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {
        "sonic": [],
        "jetson": [],
        "cloud": [],
        "k3s_server": [],
        "k3s_agent": [],
    }
    for dev in state.spec.devices:
        data = {
            "ssh_hostname": dev.address,
            "ssh_user": SSH_USER,
            "ssh_key": str(state.ssh_key),
            "ssh_known_hosts_file": str(state.known_hosts),
            "ssh_strict_host_key_checking": "yes",
            "lab_name": state.spec.name,
            "lab_gateway": state.spec.gateway,
            # One cluster token per lab, kept beside the lab's SSH key.
            "k3s_token_file": str(state.dir / "k3s-token"),
            # And the key every device's enrollment secret derives from (deploys/nodeauth.py).
            "nodeauth_enrollment_key_file": str(state.dir / "nodeauth-enrollment-key"),
            # And the gateways' shared secrets (deploys/edgefaas.py).
            "edgefaas_secrets_dir": str(state.dir),
            # Lab devices are containers on a shared kernel: they cannot lower OOM scores,
            # and nf_conntrack_max is the lab machine's, read-only inside them.
            "k3s_restrict_oom_score_adj": True,
            "k3s_kube_proxy_args": ["conntrack-max-per-core=0"],
        }
        for group in dev.groups:
            groups[group].append((dev.name, data))
    return groups


@dataclass(frozen=True)
class InventoryHost:
    name: str
    groups: tuple[str, ...]
    data: HostData


class HostData(dict):
    """A host's inventory data (group_data merged in), readable as attributes like pyinfra's."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"no inventory data {key!r}") from None


@dataclass(frozen=True)
class Inventory:
    hosts: tuple[InventoryHost, ...]

    def __iter__(self):
        return iter(self.hosts)

    def get_host(self, name: str) -> InventoryHost:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def get_group(self, group: str) -> list[InventoryHost]:
        return [h for h in self.hosts if group in h.groups]


def load_inventory(path: str, cwd: str | None = None) -> Inventory:
    """Load a pyinfra inventory file with its group_data, exactly as `pyinfra` would.

    Test suites use this so that they address devices only through an inventory, and so
    verify the virtual lab and a real lab the same way. pyinfra's Python API has no loader
    for an inventory file and its group_data (its command line has one of its own), so this
    asks the command line: `pyinfra INVENTORY debug-inventory --json` loads and prints the
    inventory without contacting a host. A child process also keeps pyinfra's command line
    from monkey-patching this interpreter with gevent.
    """
    # pyinfra reads a name that is no file as a host name, or a list of them.
    if not (Path(cwd or ".") / path).is_file():
        raise InventoryError(f"{path}: no such inventory file")
    proc = subprocess.run(
        [sys.executable, "-m", "pyinfra", path, "debug-inventory", "--json"],
        capture_output=True,
        text=True,
        cwd=cwd or None,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise InventoryError(f"{path}: {last}")
    return Inventory(
        tuple(
            InventoryHost(h["name"], tuple(h["groups"]), HostData(h["data"])) for h in json.loads(proc.stdout)
        )
    )
