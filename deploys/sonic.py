"""The switch's routing: BGP with BFD between the SONiC switches, each with its loopback.

    pyinfra -y inventories/lab.py deploys/sonic.py

Writes CONFIG_DB only, as SONiC is configured: `DEVICE_METADATA|localhost` bgp_asn (shared:
set where absent or equal, a different ASN is refused), the loopback (`LOOPBACK_INTERFACE`,
its address FRR's router id), one `BGP_NEIGHBOR` per peer (BFD on) and `BGP_PEER_RANGE` where
given. SONiC's bgpcfgd (the lab: its stand-in) renders FRR from them live. Never `config
reload`, never front-panel ports; the entries are recorded for the `sonic` owner, so
deploys/sonic_uninstall.py removes exactly those. Only hosts with `sonic_config_db`.

Inventory data (inventories/group_data/sonic.py has the defaults): bgp_asn, loopback_address,
bgp_neighbors [{address, asn, name}], bgp_peer_ranges, bgp_bfd, bgp_keepalive, bgp_holdtime, and
sdwan_peers [{name, address, asn}]: the SD-WAN provider edges, each one more BGP_NEIGHBOR
(named edgefaas-sdwan-<name>, BFD as bgp_bfd), through which announced prefixes reach the WAN
(edgefaas.deploy.sdwan_peers).
Bad data is refused before anything is written, naming the host and field
(edgefaas.deploy.sonic).
"""

from pyinfra import host, inventory
from pyinfra.api.exceptions import DeployError

from edgefaas.deploy import sonic as routing
from edgefaas.deploy.config_db import ensure
from edgefaas.deploy.facts import InterfaceAddresses
from edgefaas.deploy.sdwan_peers import with_sdwan_peers

if host.data.get("sonic_config_db"):
    # Every switch, not only those a --limit selects: defaults derive from a switch's position.
    switches = [(h.name, h.data) for h in inventory.get_group("sonic", []) if h.data.get("sonic_config_db")]
    if host.name not in dict(switches):
        raise DeployError(f"{host.name}: sonic_config_db is set but the host is not in group 'sonic'")
    try:
        plan = with_sdwan_peers(routing.plan_routing(switches)[host.name], host.data)
        entries = routing.config_db_entries(plan, host.get_fact(InterfaceAddresses))
    except routing.RoutingError as exc:
        raise DeployError(f"deploys/sonic.py refuses the inventory: {exc}") from None

    ensure(
        routing.OWNER,
        owned=entries.owned,
        shared=entries.shared,
        what="the switch's routing (AS number, loopback, BGP neighbours and SD-WAN peers with BFD)",
    )
