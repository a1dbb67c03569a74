"""Opening ports in a SONiC switch's control-plane ACL, from inside a pyinfra deploy.

SONiC's caclmgrd drops inbound traffic to ports it was not told about. deploys/platform.py
installs an opener (/usr/local/sbin/edgefaas-cacl) that accepts the ports listed in
/etc/edgefaas/cacl.d/*.ports; each task deploy writes its own file, so removing a task
removes its openings and nothing else. Devices whose host data has no
`manage_control_plane_acl` (Jetsons, plain Linux) are left alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from io import StringIO
from typing import Any

from pyinfra import host
from pyinfra.operations import files, server

PORTS_DIR = "/etc/edgefaas/cacl.d"
OPENER = "/usr/local/sbin/edgefaas-cacl"


def open_ports(owner: str, lines: Sequence[str], what: str) -> Any:
    """Keep `lines` ("6443/tcp K3S API") open for `owner` (the .ports file's name); None if not SONiC."""
    if not host.data.get("manage_control_plane_acl"):
        return None
    ports = files.put(
        name=f"Open {what} in the control-plane ACL",
        src=StringIO("".join(f"{line}\n" for line in lines)),
        dest=f"{PORTS_DIR}/{owner}.ports",
        mode="644",
    )
    server.shell(name="Apply the ACL openings", commands=[OPENER], _if=ports.did_change)
    return ports


def close_ports(owner: str, what: str) -> Any:
    """Remove `owner`'s openings (an uninstall), applying the ACL on SONiC."""
    ports = files.file(
        name=f"Close {what} in the control-plane ACL", path=f"{PORTS_DIR}/{owner}.ports", present=False
    )
    if host.data.get("manage_control_plane_acl"):
        server.shell(name="Apply the ACL", commands=[OPENER], _if=ports.did_change)
    return ports
