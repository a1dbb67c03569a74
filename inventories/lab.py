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
