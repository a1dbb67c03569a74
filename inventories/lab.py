"""Inventory of the virtual device lab (`edgefaas lab up`).

Addresses, keys and host keys are read from the running lab's state file, never written
by hand. EDGEFAAS_LAB selects a lab other than the default one.

    pyinfra -y inventories/lab.py deploys/site.py
"""

import os

from edgefaas.deploy.inventory import check_groups, lab_groups
from edgefaas.lab import wan as _wan
from edgefaas.lab.state import DEFAULT_LAB, load_state

_groups = lab_groups()
check_groups(_groups, source="inventories/lab.py")

sonic = _groups["sonic"]
jetson = _groups["jetson"]
# The cloud site (edgefaas.deploy.sites): a server of its own cluster, behind the WAN stand-in.
cloud = _groups["cloud"]
k3s_server = _groups["k3s_server"]
k3s_agent = _groups["k3s_agent"]

# The switches peer with the lab's SD-WAN provider edge stand-in (edgefaas.lab.wan), which
# is in no group here: no deploy configures it, as none would configure an operator's PE.
_spec = load_state(os.environ.get("EDGEFAAS_LAB", DEFAULT_LAB)).spec
_sdwan_peers = _wan.sdwan_peers(_spec)
if _sdwan_peers:
    for _name, _data in sonic:
        _data["sdwan_peers"] = _sdwan_peers
# The cloud site's server peers with the same PE, at its address on the cloud segment.
for _name, _data in cloud:
    _data["sdwan_peers"] = _wan.cloud_sdwan_peers(_spec)

# The lab runs Triton both ways: a systemd service on the other devices, a K3S workload
# (host data triton_as_k3s_workload) on the second switch and the first Jetson, so the
# Triton suite covers both, and a pod of the `nvidia` RuntimeClass on the Jetson (its
# profile has a stand-in nvidia-container-runtime) next to one run by runc on the switch.
for _name, _data in k3s_agent:
    if _name in ("sonic-2", "jetson-1"):
        _data["triton_as_k3s_workload"] = True

# Monitoring (deploys/monitoring.py): a quick scrape and a short, low alert rule, so that the
# monitoring suite's load spike fires APIHighInvocationRate (and resolves) within seconds. The
# edge's server only: the cloud's Prometheus keeps the defaults (the suites look at the edge's).
for _name, _data in k3s_server:
    if _name in dict(cloud):
        continue
    _data["monitoring_scrape_interval"] = "5s"
    _data["monitoring_alert_threshold"] = 3
    _data["monitoring_alert_window"] = "20s"
    _data["monitoring_alert_hold"] = "5s"
    _data["monitoring_alert_group_wait"] = "2s"
    _data["monitoring_alert_group_interval"] = "5s"
    _data["monitoring_alert_repeat_interval"] = "10s"

# Cloud-edge collaboration (tests/integration/test_sites.py): past two calls at once of the
# function the suite publishes from the cloud, an edge gateway sends the rest to the cloud.
for _name, _data in sonic:
    _data["edgefaas_site_objectives"] = {"cloud-near": {"max_inflight": 2}}
