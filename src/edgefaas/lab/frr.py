"""FRR on lab devices that route (the SONiC switch stand-ins and the SD-WAN provider edge)."""

from __future__ import annotations

# zebra and staticd always run; bgpd and bfdd are the daemons SONiC's bgp container runs, and
# all a provider edge needs. Every daemon listens on loopback only (vtysh reaches them).
_DAEMONS = """\
bgpd=yes
bfdd=yes
ospfd=no
ospf6d=no
ripd=no
ripngd=no
isisd=no
pimd=no
pim6d=no
ldpd=no
nhrpd=no
eigrpd=no
babeld=no
sharpd=no
pbrd=no
fabricd=no
vrrpd=no
pathd=no
vtysh_enable=yes
zebra_options="  -A 127.0.0.1 -s 90000000"
bgpd_options="   -A 127.0.0.1"
staticd_options="-A 127.0.0.1"
bfdd_options="   -A 127.0.0.1"
"""


def daemons_file(header: str) -> str:
    """/etc/frr/daemons for a lab device, its first line the comment `header` (who it is for)."""
    return f"# {header}\n" + _DAEMONS
