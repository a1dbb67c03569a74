"""Remove the switch's routing: every CONFIG_DB entry deploys/sonic.py recorded for `sonic`.

    pyinfra -y inventories/lab.py deploys/sonic_uninstall.py

Only what the `sonic` owner wrote goes: its BGP neighbours, peer ranges and loopback (SONiC's
bgpcfgd withdraws them from FRR), and DEVICE_METADATA's bgp_asn where the deploy set it and
nobody changed it since. Only hosts with `sonic_config_db`.
"""

from pyinfra import host

from edgefaas.deploy import sonic as routing
from edgefaas.deploy.config_db import remove

if host.data.get("sonic_config_db"):
    remove(routing.OWNER, what="the switch's routing (BGP neighbours, peer ranges, loopback)")
