"""Where the lab's EdgeFaaS gateway answers (`edgefaas lab gateway-url`).

deploys/edgefaas.py runs the gateway on the K3S server and opens its port in the
switch's control-plane ACL, so the lab machine (and a browser on it) reaches it at the
server's management address.
"""

from __future__ import annotations

from edgefaas.lab.spec import SpecError
from edgefaas.lab.state import LabState

# deploys/edgefaas.py's default (host data edgefaas_gateway_port moves it).
DEFAULT_PORT = 8080


def gateway_url(state: LabState, port: int = DEFAULT_PORT) -> str:
    """The gateway's base URL, e.g. ``http://10.77.0.11:8080``; SpecError if the lab has no K3S server."""
    servers = [device for device in state.spec.devices if "k3s_server" in device.roles]
    if not servers:
        raise SpecError(f"lab {state.spec.name!r} has no k3s_server device, so no EdgeFaaS gateway")
    return f"http://{servers[0].address}:{port}"
