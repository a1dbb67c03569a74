"""Everything, in order: the whole blueprint onto every device of the inventory.

    pyinfra -y inventories/lab.py deploys/site.py

Each task file also runs alone (`pyinfra -y inventories/lab.py deploys/parsec.py`).
One include per line, not a loop: pyinfra orders operations by the lines that made them,
so includes from one line of a loop would interleave their files' operations.
"""

from pathlib import Path

from pyinfra import local

DEPLOYS = Path(__file__).resolve().parent

local.include(str(DEPLOYS / "platform.py"))
local.include(str(DEPLOYS / "parsec.py"))
local.include(str(DEPLOYS / "k3s.py"))
local.include(str(DEPLOYS / "triton.py"))
local.include(str(DEPLOYS / "edgefaas.py"))
