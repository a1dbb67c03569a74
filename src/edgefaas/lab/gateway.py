"""Where the lab's EdgeFaaS gateway answers (`edgefaas lab gateway-url`), and the CA its
services are certified by (`edgefaas lab ca`).

deploys/edgefaas.py runs the gateway on the K3S server and opens its port in the
switch's control-plane ACL, so the lab machine (and a browser on it) reaches it at the
server's management address.
"""

from __future__ import annotations

from edgefaas.lab.spec import SpecError
from edgefaas.lab.state import LabState

# Where deploys/nodeauth.py publishes the blueprint's CA certificate on every device.
CA_PEM = "/etc/edgefaas/ca.pem"
# deploys/edgefaas.py's default (host data edgefaas_gateway_port moves it).
DEFAULT_PORT = 8080


def k3s_server(state: LabState, cloud: bool = False) -> str:
    """The name of the lab's K3S server (where the gateway and the blueprint's CA are): the edge
    site's, or with `cloud` the cloud site's (its `cloud` device), each a cluster of its own."""
    servers = [
        device
        for device in state.spec.devices
        if "k3s_server" in device.roles and (device.profile == "cloud") == cloud
    ]
    if not servers:
        site = "cloud" if cloud else "edge"
        raise SpecError(
            f"lab {state.spec.name!r} has no k3s_server device in its {site} site, so no EdgeFaaS gateway"
        )
    return servers[0].name


def gateway_url(state: LabState, port: int = DEFAULT_PORT, cloud: bool = False) -> str:
    """The gateway's base URL, e.g. ``https://10.77.0.11:8080`` (HTTPS only, by a certificate from the
    blueprint's CA: `edgefaas lab ca`); SpecError if the lab (or its cloud) has no K3S server."""
    return f"https://{state.spec.device(k3s_server(state, cloud)).address}:{port}"


def fetch_ca(state: LabState, path: str = CA_PEM, cloud: bool = False) -> str:
    """The site's CA certificate (PEM) as its K3S server publishes it; LabError if it has none."""
    import subprocess

    from edgefaas.lab.lifecycle import LabError, ssh_command

    server = k3s_server(state, cloud)
    done = subprocess.run(
        ssh_command(state, server, "cat", path), capture_output=True, text=True, timeout=30, check=False
    )
    if done.returncode != 0 or "BEGIN CERTIFICATE" not in done.stdout:
        reason = done.stderr.strip() or "not a PEM certificate"
        raise LabError(f"no CA certificate at {server}:{path} (run deploys/nodeauth.py): {reason}")
    return done.stdout
