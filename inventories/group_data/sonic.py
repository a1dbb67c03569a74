"""SONiC switches: the K3S server, the Parsec service, the EdgeFaaS gateway."""

device_profile = "sonic"
# SONiC's management port; K3S binds to it, leaving the front-panel ports to SONiC.
mgmt_interface = "eth0"
# SONiC's control-plane ACL (caclmgrd) drops inbound traffic to ports it was not told
# about: deploys open theirs through /etc/edgefaas/cacl.d (see deploys/platform.py).
manage_control_plane_acl = True

# Parsec (SoW Task 2): the platform security service runs directly on the switch.
parsec_service = True

# The gateway signs license tokens with a key held in this Parsec service (deploys/edgefaas.py).
edgefaas_license_signer = "parsec"
