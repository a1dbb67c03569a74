"""Everything, in order: the whole blueprint onto every device of the inventory.

    pyinfra -y inventories/lab.py deploys/site.py

Each task file also runs alone (`pyinfra -y inventories/lab.py deploys/parsec.py`).
One include per line, not a loop: pyinfra orders operations by the lines that made them,
so includes from one line of a loop would interleave their files' operations. The switches'
routing comes right after host preparation: it needs nothing else, and later tasks (service
prefixes announced into the network) build on it. K3S comes
before Parsec because Parsec's checks include client pods in K3S (SoW 2.4/2.5), node
certification after both (it certifies K3S nodes with keys held in Parsec), EdgeFaaS after
that (its HTTPS certificate comes from the blueprint's CA), the registry for image functions
after EdgeFaaS (its checks deploy an image function through the gateway), then Triton because
its checks call the vision functions through the gateway. Monitoring comes last: it scrapes the
gateways and Triton servers the others deployed.
"""

from pathlib import Path

from pyinfra import local

DEPLOYS = Path(__file__).resolve().parent

local.include(str(DEPLOYS / "platform.py"))
local.include(str(DEPLOYS / "sonic.py"))
local.include(str(DEPLOYS / "k3s.py"))
local.include(str(DEPLOYS / "parsec.py"))
local.include(str(DEPLOYS / "nodeauth.py"))
local.include(str(DEPLOYS / "edgefaas.py"))
local.include(str(DEPLOYS / "registry.py"))
local.include(str(DEPLOYS / "triton.py"))
local.include(str(DEPLOYS / "monitoring.py"))
