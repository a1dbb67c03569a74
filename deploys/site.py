"""Everything, in order: the whole blueprint onto every device of the inventory.

    pyinfra -y inventories/lab.py deploys/site.py

Each task file also runs alone (`pyinfra -y inventories/lab.py deploys/platform.py`).
"""

from pathlib import Path

from pyinfra import local

DEPLOYS = Path(__file__).resolve().parent

for task in ("platform.py", "parsec.py", "k3s.py"):
    local.include(str(DEPLOYS / task))
