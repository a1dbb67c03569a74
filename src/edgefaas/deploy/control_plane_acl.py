"""Opening ports in a SONiC switch's control-plane ACL, from inside a pyinfra deploy.

SONiC's caclmgrd drops inbound traffic to ports no CTRLPLANE ACL table allows. Deploys
write such tables to CONFIG_DB through edgefaas.deploy.config_db, as the owner of their
entries: caclmgrd (the lab's stand-in on the virtual devices) turns them into iptables
rules, and removing a deploy removes its tables and rules and nothing else. Hosts without
`sonic_config_db` (Jetsons, plain Linux) are left alone.

caclmgrd gives an EXTERNAL_CLIENT table one destination port for all its rules (the last
L4_DST_PORT it reads), so an owner gets one table per port, `ACL_TABLE|EDGEFAAS_<OWNER>_<PORT>`,
with one `ACL_RULE` per line naming that port. caclmgrd opens EXTERNAL_CLIENT ports for TCP
only (it never reads IP_PROTOCOL), so a UDP port is refused here rather than written as a rule
that would open the TCP port of the same number; K3S therefore runs flannel's host-gw backend,
which needs no port into the switch.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Any

from pyinfra.api import FactBase

from edgefaas.deploy import config_db

# caclmgrd orders a table's rules by PRIORITY, highest first; SONiC's rules go up to 9999.
FIRST_PRIORITY = 9999
OPEN_TO_ALL = "0.0.0.0/0"
_LINE = re.compile(r"^(?P<port>\d{1,5})/(?P<proto>tcp|udp)(?:\s+from=(?P<src>\S+))?(?:\s+(?P<why>.*))?$")


def table_prefix(owner: str) -> str:
    """`k3s` -> `EDGEFAAS_K3S`: what every one of the owner's CTRLPLANE tables is named after."""
    return "EDGEFAAS_" + config_db.check_owner(owner).upper().replace("-", "_")


def table_name(owner: str, port: int) -> str:
    """The owner's CTRLPLANE table for one port: `EDGEFAAS_K3S_6443`."""
    return f"{table_prefix(owner)}_{port}"


def acl_entries(owner: str, lines: Sequence[str]) -> dict[str, dict[str, Any]]:
    """`["6443/tcp K3S API", "9000/tcp from=10.0.0.5/32 agent"]` -> the owner's ACL_TABLEs and ACL_RULEs.

    One table per port, one rule per line (`RULE_<line number>`), priorities in line order
    from 9999 down; SRC_IP is the `from=` prefix or 0.0.0.0/0. Raises ValueError naming the
    bad line (a UDP port among them).
    """
    entries: dict[str, dict[str, Any]] = {}
    reasons: dict[str, list[str]] = {}
    for number, line in enumerate(lines, start=1):
        found = _LINE.match(line.strip())
        if not found:
            raise ValueError(f"{owner}: port line {line!r}: expected '<port>/<tcp|udp> [from=<cidr>] <why>'")
        port = int(found["port"])
        if found["proto"] == "udp":
            raise ValueError(
                f"{owner}: port line {line!r}: SONiC's control-plane ACL opens TCP ports only "
                "(caclmgrd's EXTERNAL_CLIENT service), so a UDP port cannot be opened on a switch"
            )
        if not 1 <= port <= 65535:
            raise ValueError(f"{owner}: port line {line!r}: port {port} is outside 1-65535")
        source = OPEN_TO_ALL
        if found["src"]:
            try:
                source = str(ipaddress.IPv4Network(found["src"], strict=True))
            except ValueError as exc:
                raise ValueError(f"{owner}: port line {line!r}: from={found['src']}: {exc}") from exc
        rule = {
            "PRIORITY": str(FIRST_PRIORITY - number + 1),
            "PACKET_ACTION": "ACCEPT",
            "L4_DST_PORT": str(port),
            "SRC_IP": source,
        }
        table = table_name(owner, port)
        entries[f"ACL_RULE|{table}|RULE_{number}"] = rule
        reasons.setdefault(table, []).append(f"{port}/{found['proto']} {found['why'] or ''}".strip())
    for table, why in reasons.items():
        entries[f"ACL_TABLE|{table}"] = {
            "type": "CTRLPLANE",
            "stage": "ingress",
            "services": ["EXTERNAL_CLIENT"],
            "policy_desc": f"EdgeFaaS {owner}: " + ", ".join(why),
        }
    return dict(sorted(entries.items()))


def open_ports(owner: str, lines: Sequence[str], what: str) -> Any:
    """Keep `lines` ("6443/tcp K3S API") open for `owner`, and only those; None if not SONiC."""
    return config_db.ensure(
        owner,
        acl_entries(owner, lines),
        {},
        what,
        name=f"Open {what} in the control-plane ACL (CONFIG_DB)",
    )


def close_ports(owner: str, what: str) -> Any:
    """Remove `owner`'s tables and rules (an uninstall); None if not SONiC."""
    return config_db.remove(owner, what, name=f"Close {what} in the control-plane ACL (CONFIG_DB)")


# What the retired opener installed on devices deployed before the ACL moved to CONFIG_DB.
RETIRED_CHAIN = "EDGEFAAS-ALLOW"
RETIRED_FILES = (
    "/usr/local/sbin/edgefaas-cacl",
    "/etc/systemd/system/edgefaas-cacl.service",
    "/etc/systemd/system/edgefaas-cacl.timer",
    "/etc/systemd/system/timers.target.wants/edgefaas-cacl.timer",
    "/etc/systemd/system/multi-user.target.wants/edgefaas-cacl.service",
    "/etc/edgefaas/cacl.d",
)


class RetiredOpener(FactBase[bool]):
    """Whether the device still has the retired iptables opener: its files, units or chain."""

    command = (
        f"ls -d {' '.join(RETIRED_FILES)} 2>/dev/null; "
        f"iptables -w -n -L {RETIRED_CHAIN} >/dev/null 2>&1 && echo chain; true"
    )

    def process(self, output: list[str]) -> bool:
        return any(line.strip() for line in output)


def retired_opener_removal() -> list[str]:
    """Commands that stop and delete the retired opener, its timer and its chain; safe to repeat."""
    return [
        "systemctl disable --now edgefaas-cacl.timer edgefaas-cacl.service 2>/dev/null || true",
        f"rm -rf {' '.join(RETIRED_FILES)}",
        "systemctl daemon-reload",
        f"while iptables -w -D INPUT -j {RETIRED_CHAIN} 2>/dev/null; do :; done",
        f"if iptables -w -n -L {RETIRED_CHAIN} >/dev/null 2>&1; then "
        f"iptables -w -F {RETIRED_CHAIN} && iptables -w -X {RETIRED_CHAIN}; fi",
    ]
