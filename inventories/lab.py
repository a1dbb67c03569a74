"""Inventory of the virtual device lab (`edgefaas lab up`).

Addresses, keys and host keys are read from the running lab's state file, never written
by hand. EDGEFAAS_LAB selects a lab other than the default one.

    pyinfra -y inventories/lab.py deploys/site.py
"""

from edgefaas.inventory import check_groups, lab_groups

_groups = lab_groups()
check_groups(_groups, source="inventories/lab.py")

sonic = _groups["sonic"]
jetson = _groups["jetson"]
k3s_server = _groups["k3s_server"]
k3s_agent = _groups["k3s_agent"]

# The lab runs Triton both ways: a systemd service on most devices, a K3S workload on the
# second switch (host data triton_as_k3s_workload), so the Triton suite covers both.
for _name, _data in k3s_agent:
    if _name == "sonic-2":
        _data["triton_as_k3s_workload"] = True
