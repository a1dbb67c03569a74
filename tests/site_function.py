"""The function the sites suites publish from a cloud (tests/unit/test_gateway_sites.py on loopback,
tests/integration/test_sites.py on the lab): it says which function and revision answered, and
sleeps as long as a call asks (the overflow tests' slow calls)."""

from __future__ import annotations

CODE = '''"""Says which function answered, and which revision of it."""

import time

REVISION = 1


def handle(event, context):
    data = event.json(default={}) or {}
    time.sleep(float(data.get("sleep", 0)) if isinstance(data, dict) else 0)
    return {"function": context.function_name, "revision": REVISION}
'''


def code(revision: int = 1) -> str:
    """The function's code at `revision` (what its answers carry as "revision")."""
    return CODE.replace("REVISION = 1", f"REVISION = {revision}")
