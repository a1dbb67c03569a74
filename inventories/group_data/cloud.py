"""Cloud servers: the cloud site of Scenario 3.3 (plain x86 servers, edgefaas.deploy.sites).

A host in this group is in site `cloud` unless its host data `edgefaas_site` names another. The
cloud site is a K3S cluster of its own, with its own gateway (the K3S server's, on SQLite when it
is the only one), Parsec (which holds the catalogue's signing key) and Triton; it publishes
functions to the edge sites and serves the calls they send on (docs/edgefaas.md, Cloud and edge
sites).
"""

device_profile = "cloud"
mgmt_interface = "eth0"
sonic_config_db = False
# The gateway signs catalogue entries and license tokens with keys held in this Parsec service.
parsec_service = True
edgefaas_license_signer = "parsec"

# What the cloud's gateway keeps deployed itself: functions of its own (the edge sites' functions
# are theirs). An edge's licensed caller reaches these through its own gateway, which sends the
# call on (`not_deployed`). Functions published to the edges come from the cloud's API instead
# (annotation edgefaas.io/sites), not from here.
edgefaas_functions = {
    "cloud_info": {"file": "system_info.py", "limits": {"memory": "128Mi"}},
}
# Public at the cloud: a WAN client that reaches the cloud (no edge announcing) calls it without a
# license of the cloud's; an edge still bills its own licensed callers for it.
edgefaas_public_functions = ["cloud_info"]
# SoW Task 1.3's two pods on one SONiC device belong to the edge site's switches.
k3s_two_pods = False

# The cloud's BGP towards the SD-WAN provider edges (edgefaas.deploy.collaboration): its AS, and the
# PEs it peers with ([{"name", "address", "asn"}], as a switch's; empty: it announces nothing). It
# announces the edge switches' anycast and function addresses it serves, its AS prepended
# edgefaas_wan_cloud_prepend times, so a WAN client reaches it only when no edge announces them.
bgp_asn = 65200
sdwan_peers: list[dict] = []

# Triton in the cloud (deploys/triton.py): the larger facial-expression model that joint inference
# sends the edge's unsure faces to (docs/triton.md, Joint inference).
triton_models = {"face_expression_large": {"instances": 1}}
