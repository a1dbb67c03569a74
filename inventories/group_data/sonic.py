"""SONiC switches: the K3S server, the Parsec service, the EdgeFaaS gateway."""

device_profile = "sonic"
# SONiC's management port; K3S binds to it, leaving the front-panel ports to SONiC.
mgmt_interface = "eth0"
# Switch configuration goes through SONiC's CONFIG_DB (`edgefaas config-db`, edgefaas.deploy.
# config_db): deploys open their ports as CTRLPLANE ACL tables there, which caclmgrd applies.
sonic_config_db = True
# Extras of the EdgeFaaS package: "sonic" is the Redis client `edgefaas config-db` uses. The
# K3S server's group lists its own; deploys/platform.py adds "sonic" to any switch's list.
edgefaas_extras = ["vision", "nodeauth", "sonic"]

# Parsec (SoW Task 2): the platform security service runs directly on the switch.
parsec_service = True

# The gateway signs license tokens with a key held in this Parsec service (deploys/edgefaas.py).
edgefaas_license_signer = "parsec"

# The switch's routing (deploys/sonic.py), written to CONFIG_DB for SONiC's bgpcfgd.
# Unset per host: the AS number is bgp_asn_base + the switch's position (1, 2, ...) among the
# inventory's sonic hosts (eBGP between distinct private ASNs), the loopback (FRR's router id)
# that position's address in loopback_pool, and the neighbours every other sonic host, reached
# at its bgp_address (unset: its ssh_hostname). A real inventory names its own (bgp_asn,
# loopback_address, bgp_neighbors: [{"address", "asn", "name"}]); see real_lab_example.py.
bgp_asn = None
bgp_asn_base = 65100
loopback_interface = "Loopback0"
loopback_address = None
loopback_pool = "10.1.0.0/24"
bgp_neighbors = None
bgp_address = None
# Dynamic peers (SONiC's BGP_PEER_RANGE): [{"name", "ip_range": [...], "peer_asn"}].
bgp_peer_ranges: list[dict] = []
# The SD-WAN provider edges every switch peers with (eBGP, BFD as bgp_bfd): [{"name",
# "address", "asn"}], each one more BGP_NEIGHBOR (edgefaas.deploy.sdwan_peers). The PE is the
# operator's and announces the WAN's client subnets; the lab's inventory fills this from its
# `wan` stand-in device. Empty: no WAN peering.
sdwan_peers: list[dict] = []
# BFD on every neighbour, and BGP timers short enough that a lost peer shows in seconds.
bgp_bfd = True
bgp_keepalive = 3
bgp_holdtime = 9

# The function API declared into the SD-WAN (deploys/edgefaas.py, edgefaas.deploy.wan): every
# switch whose gateway is healthy announces the API's anycast address, and one address per
# public function from the pool (stable: a function's name picks its slot; pin one with
# edgefaas_wan_addresses = {"camera": "10.255.1.7"}), through STATE_DB ADVERTISE_NETWORK_TABLE.
# Both unset: nothing is announced. Communities (AA:NN) go into APPL_DB BGP_PROFILE_TABLE;
# a function's own is the large community <switch ASN>:<slot>:<version>.
edgefaas_wan_anycast = "10.255.0.1"
edgefaas_wan_function_pool = "10.255.1.0/24"
edgefaas_wan_api_community = "65100:100"
edgefaas_wan_function_community = "65100:200"
# Functions answer at https://<their address>/ (no path prefix), on this port (HTTPS only, as the
# gateway's API: edgefaas_gateway_tls; set 80 with it off).
edgefaas_wan_service_port = 443
