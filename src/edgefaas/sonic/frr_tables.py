"""The announcer's tables where no SONiC runs: a cloud server that peers with the WAN in FRR itself.

On a switch the announcer writes STATE_DB ADVERTISE_NETWORK_TABLE and APPL_DB BGP_PROFILE_TABLE,
and SONiC's bgpcfgd turns them into FRR configuration. A cloud server has no bgpcfgd, so this
plays its part directly, writing what bgpcfgd would write, through vtysh:

    router bgp <asn>
     address-family ipv4 unicast
      network <prefix> route-map <profile>_RM        (an ADVERTISE_NETWORK_TABLE entry)
    route-map <profile>_RM permit 100
     set community <community>                       (the profile's BGP_PROFILE_TABLE community)
     set as-path prepend <asn> <asn> <asn>           (`prepend` times: the cloud as fallback)

The prepended path makes every route through the cloud longer than an edge switch's, so a WAN
client reaches the cloud only while no edge announces (Scenario 3.3). FRR keeps these in memory;
the announcer compares them with its wishes every round and puts back what a restart lost.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from edgefaas.sonic.announce import Frr, WanPlan, ours

# bgpcfgd's own sequence for a profile's community entry (EdgeFaaS's hook is 10, before it).
PROFILE_SEQUENCE = 100
_NETWORK = re.compile(r"^\s+network (\S+)(?: route-map (\S+)_RM)?\s*$")


class FrrTables:
    """ADVERTISE_NETWORK_TABLE and BGP_PROFILE_TABLE kept as FRR configuration (see the module)."""

    def __init__(self, asn: int, prepend: int = 0, frr: Frr | None = None) -> None:
        if not 1 <= asn <= 4294967295:
            raise ValueError(f"AS number {asn} is out of range")
        if not 0 <= prepend <= 10:
            raise ValueError(f"prepend {prepend}: 0 to 10 times")
        self.asn, self.prepend = asn, prepend
        self.frr = frr or Frr()

    def _running(self) -> str:
        return self.frr.running_config()

    def _configure(self, commands: Sequence[str]) -> None:
        self.frr.configure(commands)

    def _in_bgp(self, commands: Sequence[str]) -> list[str]:
        inside = ["address-family ipv4 unicast", *commands, "exit-address-family"]
        return [f"router bgp {self.asn}", *inside, "exit"]

    def advertised(self, plan: WanPlan) -> dict[str, str]:
        """The announcer's prefixes FRR announces, each with its profile."""
        found: dict[str, str] = {}
        inside = False
        for line in self._running().splitlines():
            if not line.startswith(" "):
                inside = line.strip() == f"router bgp {self.asn}"
                continue
            match = _NETWORK.match(line) if inside else None
            if match and ours(plan, match.group(1)):
                found[match.group(1)] = match.group(2) or ""
        return found

    def advertise(self, prefix: str, profile: str) -> None:
        self._configure(self._in_bgp([f"network {prefix} route-map {profile}_RM"]))

    def withdraw(self, prefix: str) -> None:
        self._configure(self._in_bgp([f"no network {prefix}"]))

    def profile(self, profile: str) -> str | None:
        """The profile's community, or None when its entry is missing or lacks the prepend."""
        head = f"route-map {profile}_RM permit {PROFILE_SEQUENCE}"
        body: list[str] = []
        inside = False
        for line in self._running().splitlines():
            if not line.startswith(" "):
                inside = line.strip() == head
                continue
            if inside:
                body.append(line.strip())
        community = next((b.split(" ", 2)[2] for b in body if b.startswith("set community ")), None)
        if community is None or (self.prepend and self._prepend_line() not in body):
            return None
        return community

    def _prepend_line(self) -> str:
        return "set as-path prepend " + " ".join([str(self.asn)] * self.prepend)

    def set_profile(self, profile: str, community: str) -> None:
        lines = [f"route-map {profile}_RM permit {PROFILE_SEQUENCE}", f"set community {community}"]
        if self.prepend:
            lines.append(self._prepend_line())
        self._configure([*lines, "exit"])
